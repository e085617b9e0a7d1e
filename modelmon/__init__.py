"""modelmon: the contract, settings, model specs, the CLI and the producer SDK."""

__version__ = "0.1.0"
