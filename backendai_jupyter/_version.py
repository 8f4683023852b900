"""The package version (a module of its own: the client and the kernel read it without importing
the package root, which imports the magics)."""

__version__ = "0.1.0"
