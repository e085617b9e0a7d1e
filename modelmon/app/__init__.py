"""The application shell: the CLI, the demo, synthetic traffic and the embedded-broker launcher.

It stands on every other layer (``streams``, ``sinks``, ``dashboards``, ``retrain_trigger``,
``detectors`` and the contract in ``modelmon``); nothing below imports it (tests/test_layers.py).
"""
