"""modelmon: the contract every layer stands on (events, specs, settings, topics, the producer SDK).

The application shell (CLI, demo, broker launcher) is the subpackage :mod:`modelmon.app`.
"""

__version__ = "0.1.0"
