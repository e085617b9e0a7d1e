"""Kafka's default partitioner (murmur2 of the key, as the Java client and the SDK use it), for a batch.

The data plane checks, for every event, that it sits on the partition of ``murmur2(prediction_id)``
(where its partner is looked for) and routes it there when another partitioner put it elsewhere.
Keys of one length are hashed together in numpy, four bytes at a time over the whole batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_SEED = 0x9747B28C
_M = np.uint32(0x5BD1E995)
_MASK = 0x7FFFFFFF


def murmur2(keys: Sequence[bytes]) -> npt.NDArray[np.uint32]:
    """The 32-bit murmur2 hash of each key, as Kafka computes it (``Utils.murmur2``).

    >>> [int(h) for h in murmur2([b"21", b"foobar", b""])]
    [3321034988, 3504634814, 275646681]
    """
    out = np.empty(len(keys), dtype=np.uint32)
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        by_length[len(key)].append(i)
    for length, rows in by_length.items():
        block = np.frombuffer(b"".join(keys[i] for i in rows), dtype=np.uint8).reshape(len(rows), length)
        out[rows] = _hash_block(block, length)
    return out


def _hash_block(data: npt.NDArray[np.uint8], length: int) -> npt.NDArray[np.uint32]:
    """murmur2 of ``len(data)`` keys of ``length`` bytes each, one row per key."""
    with np.errstate(over="ignore"):
        h = np.full(data.shape[0], _SEED ^ length, dtype=np.uint32)
        words = length // 4
        if words:
            quads = data[:, : words * 4].reshape(data.shape[0], words, 4).astype(np.uint32)
            k_all = quads[:, :, 0] | (quads[:, :, 1] << 8) | (quads[:, :, 2] << 16) | (quads[:, :, 3] << 24)
            for w in range(words):
                k = k_all[:, w] * _M
                k ^= k >> np.uint32(24)
                k *= _M
                h *= _M
                h ^= k
        tail = data[:, words * 4 :].astype(np.uint32)
        rest = length % 4
        if rest == 3:
            h ^= tail[:, 2] << np.uint32(16)
        if rest >= 2:
            h ^= tail[:, 1] << np.uint32(8)
        if rest >= 1:
            h ^= tail[:, 0]
            h *= _M
        h ^= h >> np.uint32(13)
        h *= _M
        h ^= h >> np.uint32(15)
    return h


def partitions_of(keys: Sequence[bytes], partitions: int) -> npt.NDArray[np.int64]:
    """The partition Kafka's default partitioner gives each key: ``(murmur2(key) & 0x7fffffff) % n``.

    >>> partitions_of([b"e1", b"e2", b"e3"], 4).tolist()
    [1, 1, 0]
    """
    return (murmur2(keys).astype(np.int64) & _MASK) % partitions
