"""The messages stage 1 sends to stage 2 on ``monitor-partials``: one module produces and parses them.

A partial carries one :class:`~streams.bundle.WindowBundle` of one chunk (``source``) of one input
partition (``input``), with the chunk's ``revision`` (last offset + 1), whether it is ``final``, the
event-time watermark of the bundle's model version in that partition and the id of the reference
profile the bundle was binned on. It is keyed by model id, so all partials of a model meet in one
stage-2 worker.

A partial whose JSON is larger than ``max_bytes`` (a window with many long categories) is split into
fragments of at most ``max_bytes`` each: ``FRAGMENT_MAGIC``, a one-line JSON header (``id``,
``index``, ``count``) and a slice of the partial's bytes. They share the key, so they land on one
partition in order; :class:`FragmentAssembler` joins them back. The id names the partial (source,
revision, window, reference), so a replayed fragment is recognised and counted once.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.bundle import BundleKey, WindowBundle

FRAGMENT_MAGIC = b"MMFRAG1\n"


class InvalidPartial(ValueError):
    """A message on ``monitor-partials`` that is neither a partial nor a fragment of one."""


@dataclass(frozen=True)
class Partial:
    source: str
    input: str
    revision: int
    final: bool
    watermark_ms: int
    reference_id: str
    bundle: WindowBundle
    # The references the source's window was folded on in this revision (one part each); a part
    # on a reference not listed is another fold of the source (a replay after the reference changed).
    references: tuple[str, ...] = ()

    @property
    def published_with(self) -> tuple[str, ...]:
        return self.references or (self.reference_id,)

    @property
    def key(self) -> BundleKey:
        return self.bundle.key

    @property
    def group(self) -> str:
        """What successive revisions of this partial share: its source, window and reference."""
        window = self.key
        name = "|".join(
            map(str, (self.source, window.model_id, window.model_version, window.segment,
                      window.window_start_ms, window.window_ms, self.reference_id))
        )  # fmt: skip
        return hashlib.sha1(name.encode()).hexdigest()[:20]

    def to_json(self) -> bytes:
        value = {
            "source": self.source,
            "input": self.input,
            "revision": self.revision,
            "final": self.final,
            "watermark_ms": self.watermark_ms,
            "reference_id": self.reference_id,
            "references": list(self.published_with),
            "bundle": self.bundle.to_dict(),
        }
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)

    @classmethod
    def from_json(cls, value: bytes) -> Partial:
        try:
            data = orjson.loads(value)
            return cls(
                source=str(data["source"]),
                input=str(data["input"]),
                revision=int(data["revision"]),
                final=bool(data["final"]),
                watermark_ms=int(data["watermark_ms"]),
                reference_id=str(data.get("reference_id", "")),
                bundle=WindowBundle.from_dict(data["bundle"]),
                references=tuple(map(str, data.get("references") or ())),
            )
        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as error:
            raise InvalidPartial(f"not a partial: {error!r}") from None

    def messages(self, max_bytes: int) -> list[tuple[bytes, bytes]]:
        """(key, value) messages of this partial: one, or its fragments if larger than ``max_bytes``."""
        key = self.key.model_id.encode()
        payload = self.to_json()
        if len(payload) <= max_bytes:
            return [(key, payload)]
        group = self.group
        ident = hashlib.sha1(f"{group}|{self.revision}".encode()).hexdigest()[:20]
        size = max_bytes - 160  # room for the magic and the header
        count = -(-len(payload) // size)
        out = []
        for index in range(count):
            meta = {"id": ident, "group": group, "revision": self.revision, "index": index, "count": count}
            header = orjson.dumps(meta)
            out.append((key, FRAGMENT_MAGIC + header + b"\n" + payload[index * size : (index + 1) * size]))
        return out


@dataclass(frozen=True)
class Fragment:
    id: str
    group: str
    revision: int
    index: int
    count: int
    data: bytes


def parse_message(value: bytes | None) -> Partial | Fragment:
    """A message of ``monitor-partials``: a whole partial or one fragment; raises :class:`InvalidPartial`."""
    if not value:
        raise InvalidPartial("empty message")
    if not value.startswith(FRAGMENT_MAGIC):
        return Partial.from_json(value)
    header, sep, data = value[len(FRAGMENT_MAGIC) :].partition(b"\n")
    try:
        meta = orjson.loads(header)
        fragment = Fragment(
            str(meta["id"]),
            str(meta["group"]),
            int(meta["revision"]),
            int(meta["index"]),
            int(meta["count"]),
            data,
        )
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as error:
        raise InvalidPartial(f"not a fragment header: {error!r}") from None
    if not sep or not 0 <= fragment.index < fragment.count:
        raise InvalidPartial(f"fragment {fragment.index} of {fragment.count} is malformed")
    return fragment


@dataclass
class _Pieces:
    group: str
    revision: int
    count: int
    data: dict[int, bytes] = field(default_factory=dict)
    events: list[Any] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)


class FragmentAssembler:
    """Joins the fragments of a partial; remembers which events carried them (to acknowledge them later).

    >>> key = BundleKey("m", "1", "", 0, 60_000)
    >>> from modelmon.spec import parse_spec
    >>> spec = parse_spec({"model_id": "m", "task": "binary", "features": {"x": {"type": "categorical"}}})
    >>> partial = Partial("p|0|0", "p|0", 10, True, 0, "", WindowBundle.empty(key, spec, None))
    >>> pieces = [parse_message(v) for _, v in partial.messages(max_bytes=400)]
    >>> len(pieces) > 1
    True
    >>> assembler = FragmentAssembler()
    >>> [assembler.add(p, event=i) for i, p in enumerate(pieces[:-1])].count(None) == len(pieces) - 1
    True
    >>> whole, events = assembler.add(pieces[-1], event="last")
    >>> whole.bundle.to_dict() == partial.bundle.to_dict(), len(events) == len(pieces)
    (True, True)
    """

    def __init__(self) -> None:
        self._pending: dict[str, _Pieces] = {}

    def add(self, fragment: Fragment, event: Any) -> tuple[Partial, list[Any]] | None:
        """Take a fragment; the whole partial and every event that carried a piece of it, once complete."""
        pieces = self._pending.get(fragment.id)
        if pieces is None:
            pieces = self._pending[fragment.id] = _Pieces(fragment.group, fragment.revision, fragment.count)
        pieces.events.append(event)
        if fragment.count != pieces.count:
            raise InvalidPartial(
                f"fragment {fragment.id} says {fragment.count} pieces, earlier {pieces.count}"
            )
        pieces.data.setdefault(fragment.index, fragment.data)  # a replayed piece is the same bytes
        if len(pieces.data) < pieces.count:
            return None
        del self._pending[fragment.id]
        payload = b"".join(pieces.data[i] for i in range(pieces.count))
        return Partial.from_json(payload), pieces.events

    def superseded(self, partial: Partial) -> list[Any]:
        """Remove incomplete older revisions of ``partial`` (it replaces them); their carrier events."""
        group = partial.group
        old = [i for i, p in self._pending.items() if p.group == group and p.revision <= partial.revision]
        return [event for ident in old for event in self._pending.pop(ident).events]

    def expired(self, older_than_seconds: float) -> list[tuple[str, list[Any]]]:
        """Remove and return incomplete partials waiting longer than this (id, events)."""
        now = time.monotonic()
        old = [i for i, p in self._pending.items() if now - p.started >= older_than_seconds]
        return [(ident, self._pending.pop(ident).events) for ident in old]

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget pieces read from revoked partitions: the new owner reads them again."""
        for ident in list(self._pending):
            if any(e.message.partition in partitions for e in self._pending[ident].events):
                del self._pending[ident]

    def __len__(self) -> int:
        return len(self._pending)
