"""Joins that do not depend on the producer's partitioner: events routed to their partner's partition.

A prediction and its label meet in the worker that owns partition ``murmur2(prediction_id) % n``
(what the SDK's partitioner picks). An event read from another partition of ``predictions`` or
``ground-truth`` (kcat's default ``consistent_random``, an unkeyed producer, another key) is
forwarded, unchanged, to that partition of the internal topic ``<prefix>monitor-repartition``,
which every worker reads beside its inputs, as Kafka Streams does with repartition topics. Headers
say what it is and where it came from, so a copy routed twice (its partition replayed after a crash)
is recognised by the join (:attr:`streams.join.JoinStatus.COPY`) and counted once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from streams.murmur2 import partitions_of

REPARTITION = "monitor-repartition"
KIND_HEADER = "modelmon-kind"
ORIGIN_HEADER = "modelmon-origin"
PREDICTION, LABEL = b"p", b"l"


def repartition_topic(prefix: str) -> str:
    return f"{prefix}{REPARTITION}"


def misplaced(prediction_ids: Sequence[str], partition: int, partitions: int) -> npt.NDArray[np.int64]:
    """For each id, the partition it belongs on, or -1 where it already is there.

    >>> misplaced(["e1", "e2", "e3"], 1, 4).tolist()
    [-1, -1, 0]
    """
    target = partitions_of([pid.encode() for pid in prediction_ids], partitions)
    return np.where(target == partition, -1, target)


def routed_headers(kind: bytes, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    return [(KIND_HEADER, kind), (ORIGIN_HEADER, f"{topic}|{partition}|{offset}".encode())]


def read_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> tuple[bytes, str] | None:
    """(kind, origin) of a routed message; None when the headers are not modelmon's."""
    found = dict(headers or ())
    kind, origin = found.get(KIND_HEADER), found.get(ORIGIN_HEADER)
    if kind not in (PREDICTION, LABEL) or not origin:
        return None
    return kind, origin.decode("utf-8", errors="replace")
