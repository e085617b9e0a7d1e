"""Offline use: compare two pandas DataFrames as the stream compares a window with its reference.

    from modelmon.offline import compare

    result = compare(reference_df, current_df, spec, window="1h")
    result.drift, result.performance, result.fidelity
    result.to_html("report.html")

No Kafka and no ClickHouse server: the current rows are folded into the stream's window bundles
and finalised by the stream's own code (:mod:`modelmon.offline.compute`), and the report is
``modelmon report``'s, rendered from an in-memory embedded ClickHouse (:mod:`modelmon.offline.result`).
This package belongs to the application shell: it may import every layer (tests/test_layers.py).
See docs/offline.md.
"""

from modelmon.offline.compute import compare
from modelmon.offline.frames import Columns, OfflineError
from modelmon.offline.result import OfflineResult

__all__ = ["Columns", "OfflineError", "OfflineResult", "compare"]
