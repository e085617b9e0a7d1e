"""Shared fixtures: the real embedded broker and the real embedded ClickHouse engine."""

from tests.broker_fixtures import *  # noqa: F403
from tests.clickhouse_fixtures import *  # noqa: F403
