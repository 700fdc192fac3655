"""linli-edge: the agent that runs on a community gateway."""

__version__ = "0.1.0"
