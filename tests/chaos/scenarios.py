"""The registry of chaos scenarios: name, one-line summary, and where the function that runs it lives."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.chaos.harness import World
    from tests.chaos.result import Result


@dataclass(frozen=True)
class Scenario:
    name: str
    module: str
    summary: str

    def load(self) -> Callable[[World, Result], None]:
        """The scenario's function, ``tests.chaos.<module>.<name>`` (imported only in its own process)."""
        run: Callable[[World, Result], None] = getattr(importlib.import_module(self.module), self.name)
        return run


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("kill9_random", "tests.chaos.crashes",
                 "worker killed with SIGKILL at random moments, restarted each time"),
        Scenario("three_workers_one_killed", "tests.chaos.crashes",
                 "3 workers on 6 partitions, one SIGKILLed mid-stream and restarted"),
        Scenario("sink_killed", "tests.chaos.crashes", "the sink process SIGKILLed mid-stream and restarted"),
        Scenario("broker_restart", "tests.chaos.outages",
                 "the broker stopped mid-stream, restarted on its port and data dir"),
        Scenario("clickhouse_down", "tests.chaos.outages",
                 "every ClickHouse insert and command refused for a while, traffic flowing"),
        Scenario("fuzz_10k", "tests.chaos.inputs", "fuzzed messages between good events: all dead-lettered"),
        Scenario("poison_events", "tests.chaos.inputs",
                 "poison events (ts 9999, 900 kB strings, ...) and fragmented partials"),
        Scenario("event_time_outliers", "tests.chaos.inputs",
                 "live traffic, events dated 2100 and 1970, a backfill 11 months old"),
        Scenario("worker_sigterm_no_broker", "tests.chaos.outages",
                 "SIGTERM to a worker whose broker is gone: seconds to exit"),
    ]
}  # fmt: skip
