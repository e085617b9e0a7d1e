"""Shared fixtures: the real embedded broker, the real embedded ClickHouse engine, saved report figures."""

from tests.broker_fixtures import *  # noqa: F403
from tests.clickhouse_fixtures import *  # noqa: F403
from tests.report_fixtures import *  # noqa: F403
