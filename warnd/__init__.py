"""warnd — early-warning message dissemination daemon."""

__version__ = "0.1.0"
