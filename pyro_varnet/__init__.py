"""pyro-varnet: variance networks and their relatives as Pyro models, guides and handlers."""

__version__ = "0.1.0"
