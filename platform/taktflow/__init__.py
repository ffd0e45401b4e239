"""taktflow: an open low-code process platform for manufacturing."""

__version__ = "0.1.0"
