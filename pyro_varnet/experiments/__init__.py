"""The papers' experiments outside the core: adversarial robustness (VN §6.3, Fig. 7; torchattacks)
and RL exploration (VN §6.2, Fig. 6; gymnasium). They need the ``experiments`` extra:

    pip install "pyro-varnet[experiments]"

Import the submodules: ``pyro_varnet.experiments.adversarial``, ``pyro_varnet.experiments.rl``,
``pyro_varnet.experiments.plots``.
"""
