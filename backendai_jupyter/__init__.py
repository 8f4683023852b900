"""backendai-jupyter: use a Backend.AI GPU cluster from Jupyter."""

__version__ = "0.1.0"
