"""runner: declarative runner for scripted assistant conversations."""

__version__ = "0.1.0"
