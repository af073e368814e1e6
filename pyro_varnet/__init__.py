"""pyro-varnet: variance networks and their relatives as Pyro models, guides and handlers."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``pyro_varnet.bayesian(net)``: the conversion of any nn.Module (models/convert.py), imported
    # on first use so that ``import pyro_varnet`` stays light
    if name == "bayesian":
        from pyro_varnet.models import bayesian

        return bayesian
    raise AttributeError(f"module 'pyro_varnet' has no attribute {name!r}")
