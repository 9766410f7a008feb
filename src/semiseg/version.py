"""The package version, in a module of its own so that any layer can stamp it (checkpoints) without
importing the package root, which sits above every room."""
__version__ = "0.1.0"
