"""``modelmon dashboards push`` against a local HTTP server that records the Grafana API calls.

The recorder keeps folders and dashboards by uid like Grafana does, so pushing twice shows the
idempotency: the folder is created once and the second save of a uid replaces the first. With
``GRAFANA_URL`` (and ``GRAFANA_TOKEN`` or ``GRAFANA_USER``/``GRAFANA_PASSWORD``) set, the same
push runs against that real Grafana.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner

from dashboards.export import FOLDER_UID
from dashboards.push import connect, push
from modelmon.app.cli import cli


class FakeGrafana(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), GrafanaHandler)
        self.calls: list[tuple[str, str, Any]] = []
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.datasources = {"modelmon-clickhouse"}
        self.auth: list[str | None] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class GrafanaHandler(BaseHTTPRequestHandler):
    server: FakeGrafana

    def log_message(self, *args: Any) -> None:  # keep pytest output quiet
        pass

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.calls.append((self.command, self.path, body))
        self.server.auth.append(self.headers.get("Authorization"))
        return body

    def do_GET(self) -> None:
        self._record()
        if self.path.startswith("/api/folders/"):
            uid = self.path.rsplit("/", 1)[1]
            if uid in self.server.folders:
                return self._reply(200, self.server.folders[uid])
            return self._reply(404, {"message": "folder not found"})
        if self.path.startswith("/api/datasources/uid/"):
            uid = self.path.rsplit("/", 1)[1]
            if uid in self.server.datasources:
                return self._reply(200, {"uid": uid})
            return self._reply(404, {"message": "Data source not found"})
        self._reply(404, {"message": "not found"})

    def do_POST(self) -> None:
        body = self._record()
        if self.path == "/api/folders":
            if body["uid"] in self.server.folders:
                return self._reply(409, {"message": "a folder with the same uid already exists"})
            self.server.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"]}
            return self._reply(200, self.server.folders[body["uid"]])
        if self.path == "/api/dashboards/db":
            dashboard = body["dashboard"]
            existing = self.server.dashboards.get(dashboard["uid"])
            if existing and not body.get("overwrite"):
                return self._reply(412, {"message": "version-mismatch"})
            version = existing["version"] + 1 if existing else 1
            self.server.dashboards[dashboard["uid"]] = {
                "version": version,
                "folderUid": body["folderUid"],
                "dashboard": dashboard,
            }
            return self._reply(
                200,
                {
                    "uid": dashboard["uid"],
                    "version": version,
                    "status": "success",
                    "url": f"/d/{dashboard['uid']}/x",
                },
            )
        self._reply(404, {"message": "not found"})


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    server = FakeGrafana()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_push_twice_creates_the_folder_once_and_overwrites_by_uid(grafana: FakeGrafana) -> None:
    api = connect(grafana.url, token="secret-token")
    first = push(api)
    second = push(api)
    assert first.folder_created and not second.folder_created
    assert [c for c in grafana.calls if c[:2] == ("POST", "/api/folders")] == [
        ("POST", "/api/folders", {"title": "modelmon", "uid": FOLDER_UID})
    ]
    saves = [body for method, path, body in grafana.calls if (method, path) == ("POST", "/api/dashboards/db")]
    assert len(saves) == 12
    assert all(
        b["overwrite"] is True and b["folderUid"] == FOLDER_UID and b["dashboard"]["id"] is None
        for b in saves
    )
    assert set(grafana.dashboards) == set(first.dashboards) and len(grafana.dashboards) == 6
    assert {d["version"] for d in grafana.dashboards.values()} == {2}
    assert set(grafana.auth) == {"Bearer secret-token"}


def test_push_command_reports_a_missing_datasource(grafana: FakeGrafana) -> None:
    grafana.datasources.clear()
    result = CliRunner().invoke(
        cli, ["dashboards", "push", "--url", grafana.url, "--user", "admin", "--password", "pw"]
    )
    assert result.exit_code == 0, result.output
    assert "folder modelmon created" in result.output
    assert result.output.count("saved modelmon-") == 6
    assert "no datasource" in result.output
    assert grafana.auth[0] and grafana.auth[0].startswith("Basic ")


def test_push_command_fails_clearly_when_grafana_refuses(grafana: FakeGrafana) -> None:
    grafana.folders[FOLDER_UID] = {"uid": FOLDER_UID}
    grafana.dashboards["modelmon-fleet"] = {"version": 1}
    result = CliRunner().invoke(
        cli, ["dashboards", "push", "--url", grafana.url + "/nowhere", "--token", "t"]
    )
    assert result.exit_code == 2
    assert "push to" in result.output and "failed" in result.output


@pytest.mark.skipif(not os.environ.get("GRAFANA_URL"), reason="GRAFANA_URL not set: no real Grafana")
def test_push_to_a_real_grafana() -> None:
    url = os.environ["GRAFANA_URL"]
    api = connect(
        url,
        token=os.environ.get("GRAFANA_TOKEN"),
        user=os.environ.get("GRAFANA_USER"),
        password=os.environ.get("GRAFANA_PASSWORD"),
    )
    push(api)
    second = push(api)
    assert not second.folder_created
    for uid in second.dashboards:
        assert api.dashboard.get_dashboard(uid)["meta"]["folderUid"] == FOLDER_UID
