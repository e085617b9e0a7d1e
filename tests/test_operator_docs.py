"""The runnable parts of README.md, docs/deploy.md and docs/operations.md run as written.

The README's SDK snippet logs a prediction and its label to a real broker (only the address is
swapped for the test broker's), its model spec parses, every ``modelmon`` command line in the
shell blocks parses against the CLI, the SQL of docs/operations.md runs on the real ClickHouse
engine, and the dead-letter replay script re-publishes exactly the replayable letters, once.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import click
import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from modelmon.admin import ensure_topics
from modelmon.app.broker import EmbeddedBroker
from modelmon.events import DeadLetter, GroundTruthEvent, PredictionEvent, model_to_json
from modelmon.topics import Topics
from sinks.clickhouse import Client
from streams.validation import InvalidEvent, RawMessage, check_against_spec, dead_letter, parse_event

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
OPERATIONS = ROOT / "docs" / "operations.md"
COMMAND_DOCS = [README, ROOT / "docs" / "deploy.md", OPERATIONS]


def blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), re.S | re.M)


def block_with(path: Path, language: str, marker: str) -> str:
    found = [block for block in blocks(path, language) if marker in block]
    assert len(found) == 1, (
        f"{path.name}: expected one ```{language} block with {marker!r}, found {len(found)}"
    )
    return found[0]


def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[Message]:
    """Every message of every partition of ``topic``, from the start to the current end."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:8]}", "log_level": 0}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {}
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        got: list[Message] = []
        done: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(done) < len(ends) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, f"consume error: {error}"
                continue
            got.append(message)
            if (message.offset() or 0) + 1 >= ends[message.partition() or 0]:
                done.add(message.partition() or 0)
        assert len(done) == len(ends), f"{topic}: read {len(got)} messages, not every partition to its end"
        return got
    finally:
        consumer.close()


# -- README ---------------------------------------------------------------------------------------


# The README's spec and SDK snippet are run end to end by tests/test_plug_in.py ("Plug in your model").


def documented_commands(path: Path) -> list[list[str]]:
    """The arguments after ``modelmon`` of every command in the page's ```sh blocks and in inline
    ``.venv/bin/modelmon ...`` spans (comments and shell operators cut off)."""
    lines = [line for block in blocks(path, "sh") for line in block.splitlines()]
    lines += re.findall(r"`(\.venv/bin/modelmon [^`]+)`", path.read_text())
    commands = []
    for line in lines:
        line = re.sub(r"(?:^|\s)#.*", "", line)  # a shell comment
        match = re.search(r"(?:^|[\s/])modelmon ([^&;|]*)", line)
        if match and "$(" not in match.group(1):
            commands.append(shlex.split(match.group(1)))
    return commands


@pytest.mark.parametrize("page", COMMAND_DOCS, ids=lambda p: p.name)
def test_documented_modelmon_commands_parse(page: Path) -> None:
    from modelmon.app.cli import cli

    commands = documented_commands(page)
    if page == README:
        assert len(commands) >= 5, commands
    for args in commands:
        shown = f"{page.name}: `modelmon {' '.join(args)}`"
        command: click.Command = cli
        context = click.Context(cli, info_name="modelmon")
        name, rest = "modelmon", list(args)
        while isinstance(command, click.Group):
            assert rest, f"{shown} names no subcommand"
            name, *rest = rest
            sub = command.get_command(context, name)
            assert sub is not None, f"{shown}: no subcommand {name!r}"
            if isinstance(sub, click.Group):
                context = click.Context(sub, info_name=name, parent=context)
            command = sub
        try:
            command.make_context(name, rest, parent=context)  # parses and converts; does not run
        except click.UsageError as error:
            pytest.fail(f"{shown} does not parse: {error.format_message()}")


# -- docs/operations.md ------------------------------------------------------------------------------


@pytest.mark.integration
def test_operations_sql_runs_on_the_real_schema(clickhouse_client: Client) -> None:
    queries = blocks(OPERATIONS, "sql")
    assert len(queries) >= 3
    for query in queries:
        clickhouse_client.query(query.strip().rstrip(";"))


def _letter(topic: str, partition: int, offset: int, value: bytes, key: str, kind: type) -> DeadLetter:
    """The dead letter stage 1 writes for this message (the same functions the worker calls)."""
    raw = RawMessage(value, topic, partition, offset, key.encode())
    try:
        event = parse_event(value, kind)
        if isinstance(event, PredictionEvent):
            check_against_spec(event, {})
        else:
            raise InvalidEvent("unknown_model", f"model_id {event.model_id!r} has no model spec")
    except InvalidEvent as error:
        return dead_letter(raw, error)
    raise AssertionError("the message was valid")


def _run_replay(script: Path, bootstrap: str, prefix: str) -> str:
    env = {"MODELMON_KAFKA_BOOTSTRAP": bootstrap, "MODELMON_TOPIC_PREFIX": prefix, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.integration
def test_replay_script_republishes_the_replayable_letters_once(
    kafka_broker: EmbeddedBroker, topic_prefix: str, tmp_path: Path
) -> None:
    bootstrap, topics = kafka_broker.bootstrap, Topics(topic_prefix)
    ensure_topics(bootstrap, [topics.predictions, topics.ground_truth, topics.dead_letter], partitions=2)
    pid = str(uuid.uuid4())
    prediction = orjson.dumps(
        {"prediction_id": pid, "model_id": "new-model", "features": {"x": 1}, "prediction": 0}
    )
    label = orjson.dumps({"prediction_id": pid, "model_id": "new-model", "label": 1})
    letters = [
        _letter(topics.predictions, 1, 7, prediction, pid, PredictionEvent),  # replayed
        _letter(topics.ground_truth, 1, 3, label, pid, GroundTruthEvent),  # replayed
        _letter(topics.predictions, 0, 8, b'{"model_id": ', "k1", PredictionEvent),  # invalid_json: kept
        DeadLetter(  # not an exact copy of the original: kept
            topic=topics.predictions,
            key="k2",
            payload='{"model_id": "new-model", "x": "\ufffd"}',
            reason="r",
            error_type="unknown_model",
        ),
        DeadLetter(  # a webhook letter: its payload is not a message of its topic
            topic=topics.alerts,
            key="d1",
            payload='{"target": "https://h/…"}',
            reason="r",
            error_type="webhook_failed",
        ),
    ]
    assert [letter.error_type for letter in letters[:3]] == ["unknown_model", "unknown_model", "invalid_json"]
    producer = Producer({"bootstrap.servers": bootstrap})
    for letter in letters:
        producer.produce(topics.dead_letter, key=letter.dedup_key().encode(), value=model_to_json(letter))
    assert producer.flush(30) == 0
    script = tmp_path / "replay.py"
    script.write_text(block_with(OPERATIONS, "python", "dead-letter-replay"))

    assert _run_replay(script, bootstrap, topic_prefix) == "replayed 2 dead letters, skipped 1"
    replayed_predictions = read_topic(bootstrap, topics.predictions)
    replayed_labels = read_topic(bootstrap, topics.ground_truth)
    assert [(m.key(), m.value()) for m in replayed_predictions] == [(pid.encode(), prediction)]
    assert [(m.key(), m.value()) for m in replayed_labels] == [(pid.encode(), label)]
    assert replayed_predictions[0].partition() == replayed_labels[0].partition()

    assert _run_replay(script, bootstrap, topic_prefix) == "replayed 0 dead letters, skipped 0"
    assert len(read_topic(bootstrap, topics.predictions)) == 1, "a second run must not re-send"
