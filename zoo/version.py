"""The version of weightzoo (the distribution's version, read by pyproject.toml)."""

__version__ = "0.1.0"
