"""Stage 1 on the data plane, with doubles: poison events set aside alone, event times far from the clock
refused, misplaced events routed once, commits never past an open chunk, full join state counted.

The same code runs on the real broker in tests/test_e2e_poison.py and tests/test_data_plane.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from modelmon.events import DeadLetter
from modelmon.settings import Settings
from modelmon.spec import parse_spec
from streams.bundle import WindowBundle
from streams.join_state import JoinState
from streams.murmur2 import partitions_of
from streams.partials import Partial
from streams.routing import ORIGIN_HEADER, read_headers
from streams.stage1 import Stage1

NOW_S = 1_767_225_600.0  # 2026-01-01T00:00Z
SPEC = parse_spec(
    {
        "model_id": "m",
        "task": "binary",
        "features": {"amount": {"type": "numerical"}, "country": {"type": "categorical"}},
    }
)


@dataclass
class Message:
    """confluent-kafka's Message, as far as stage 1 reads it."""

    _value: bytes | None
    _offset: int
    _topic: str = "predictions"
    _partition: int = 0
    _key: bytes | None = None
    _headers: list[tuple[str, bytes]] | None = None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, int(NOW_S * 1000))

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers


@dataclass
class Outputs:
    sent: list[Partial] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    routed: list[tuple[int, bytes, bytes | None, list[tuple[str, bytes]]]] = field(default_factory=list)

    def partials(self, messages: list[tuple[bytes, bytes]]) -> None:
        self.sent.extend(Partial.from_json(value) for _, value in messages)

    def dead_letter(self, letter: DeadLetter) -> None:
        self.letters.append(letter)

    def route(
        self, partition: int, key: bytes, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        self.routed.append((partition, key, value, headers))


def local_ids(n: int, partition: int = 0, partitions: int = 1) -> list[str]:
    """Prediction ids that murmur2 puts on ``partition``."""
    ids, i = [], 0
    while len(ids) < n:
        candidate = f"p{i}"
        if partitions_of([candidate.encode()], partitions)[0] == partition:
            ids.append(candidate)
        i += 1
    return ids


def prediction(
    offset: int, pid: str, amount: float, ts: str = "2025-12-31T23:59:00Z", **extra: Any
) -> Message:
    body = {"prediction_id": pid, "model_id": "m", "ts": ts, "prediction": 1, "score": 0.5,
            "features": {"amount": amount, "country": "DE"}}  # fmt: skip
    return Message(orjson.dumps(body), offset, **extra)


def stage1(chunk_size: int = 4, partitions: int = 1, **settings: Any) -> tuple[Stage1, Outputs]:
    config = Settings(_env_file=None, chunk_size=chunk_size, max_partial_bytes=1_000_000, **settings)  # type: ignore[call-arg]
    outputs = Outputs()
    return Stage1(
        config, {"m": SPEC}, lambda m, v: None, outputs, partitions=partitions, clock=lambda: NOW_S
    ), outputs


def test_an_event_whose_fold_raises_is_dead_lettered_and_its_batch_neighbours_count(monkeypatch: Any) -> None:
    real = WindowBundle.add_columns

    def add_columns(self: WindowBundle, batch: Any, spec: Any) -> None:
        if any(f["amount"] == 13.0 for f in batch.features):
            raise OverflowError("cannot convert float infinity to integer")
        real(self, batch, spec)

    monkeypatch.setattr(WindowBundle, "add_columns", add_columns)
    stage, out = stage1()
    ids = local_ids(5)
    amounts = [1.0, 13.0, 2.0, 3.0, 4.0]
    stage.process("predictions", 0, [prediction(i, ids[i], amounts[i]) for i in range(5)])
    assert [(d.offset, d.error_type) for d in out.letters] == [(1, "processing_error")]
    assert "OverflowError: cannot convert float infinity to integer" in out.letters[0].reason
    # Offset 4 opened chunk 1, so chunk 0 (offsets 0-3) was published: three events, the poison one left out.
    (published,) = out.sent
    assert (published.source, published.final, published.bundle.events) == ("predictions|0|0", True, 3)
    assert stage.commit_offsets() == {("predictions", 0): 4}  # chunk 1 is open: nothing past it


@pytest.mark.parametrize("ts", ["9999-12-31T23:59:00Z", "2100-01-01T00:00:00Z", "1970-01-01T00:00:00Z"])
def test_event_times_far_from_the_clock_never_reach_a_window(ts: str) -> None:
    stage, out = stage1()
    ids = local_ids(4)
    batch = [prediction(0, ids[0], 1.0), prediction(1, ids[1], 2.0, ts=ts), prediction(2, ids[2], 3.0),
             prediction(4, ids[3], 4.0)]  # fmt: skip
    stage.process("predictions", 0, batch)
    assert [d.error_type for d in out.letters] == ["ts_out_of_range"]
    (published,) = out.sent
    assert published.bundle.events == 2
    assert published.watermark_ms == 1_767_225_540_000  # the good events' time: 2100 moved nothing


def test_misplaced_events_are_routed_once_and_a_second_copy_is_not_counted() -> None:
    stage, out = stage1(chunk_size=100, partitions=2)
    mine, theirs = local_ids(2, partition=0, partitions=2), local_ids(1, partition=1, partitions=2)
    stage.process(
        "predictions",
        0,
        [prediction(0, mine[0], 1.0), prediction(1, theirs[0], 2.0), prediction(2, mine[1], 3.0)],
    )
    ((target, key, value, headers),) = out.routed
    assert (target, key) == (1, theirs[0].encode())
    assert read_headers(headers) == (b"p", "predictions|0|1")
    # On partition 1 the routed copy counts once; a second copy (partition 0 replayed and routed again) not.
    other, _ = stage1(chunk_size=100, partitions=2)
    copies = [Message(value, offset, "monitor-repartition", 1, key, headers) for offset in (0, 1)]
    other.process("monitor-repartition", 1, copies)
    assert (other.stats.predictions, other.stats.routed_copies) == (1, 1)
    other.publish_revisions(0.0)
    assert [p.bundle.events for p in other.outputs.sent] == [1]  # type: ignore[attr-defined]
    assert dict(headers)[ORIGIN_HEADER] == b"predictions|0|1"


def test_a_full_join_state_evicts_the_oldest_waiting_predictions_as_label_missing() -> None:
    stage, out = stage1(chunk_size=100, join_max_pending=2)
    ids = local_ids(3)
    stage.process("predictions", 0, [prediction(i, ids[i], float(i)) for i in range(3)])
    assert len(stage.joins[0]) == 2 and ids[0] not in stage.joins[0]
    stage.publish_revisions(0.0)
    assert sum(p.bundle.label_missing for p in out.sent) == 1


def test_a_prediction_whose_label_never_arrives_expires_after_the_label_ttl_unlabelled() -> None:
    now = [NOW_S]
    config = Settings(_env_file=None, chunk_size=100, max_partial_bytes=1_000_000)  # type: ignore[call-arg]
    out = Outputs()
    stage = Stage1(config, {"m": SPEC}, lambda m, v: None, out, partitions=1, clock=lambda: now[0])
    (pid,) = local_ids(1)
    stage.process("predictions", 0, [prediction(0, pid, 1.0)])  # one minute before NOW_S
    assert stage.expire_entries() == 0  # the spec's label_ttl is 7 days
    now[0] += 7 * 86_400
    assert stage.expire_entries() == 1 and pid not in stage.joins[0]
    assert stage.take_changelog()  # the deletion reaches the changelog: a restart does not bring it back
    late = {"prediction_id": pid, "model_id": "m", "label": 1, "ts": "2026-01-08T00:00:00Z"}
    stage.process("ground-truth", 0, [Message(orjson.dumps(late), 0, "ground-truth")])
    assert (stage.stats.labels, stage.stats.joined) == (1, 0)  # waits for a prediction that is gone
    stage.publish_revisions(0.0)
    assert sum(p.bundle.events for p in out.sent) == 1
    assert sum(p.bundle.labels for p in out.sent) == 0  # counted as unlabelled: label_coverage 0


def test_a_batch_whose_join_changes_exceed_a_message_is_logged_in_pieces_that_restore_it() -> None:
    config = Settings(_env_file=None, chunk_size=1000, max_partial_bytes=4096)  # type: ignore[call-arg]
    stage = Stage1(config, {"m": SPEC}, lambda m, v: None, Outputs(), partitions=1, clock=lambda: NOW_S)
    ids = local_ids(200)
    stage.process("predictions", 0, [prediction(i, pid, float(i)) for i, pid in enumerate(ids)])
    (pieces,) = stage.take_changelog().values()
    assert len(pieces) > 1 and all(len(p) <= 4096 for p in pieces)
    restored = JoinState()
    for piece in reversed(pieces):  # disjoint keys: any order
        restored.apply(piece)
    assert sorted(restored) == sorted(ids) and dict(restored) == dict(stage.joins[0])
