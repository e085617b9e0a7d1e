"""Write the dashboards as Grafana JSON files plus the provisioning YAML that docker-compose mounts.

``export(directory)`` writes ``json/<uid>.json`` for every dashboard and
``provisioning/datasources/clickhouse.yaml`` + ``provisioning/dashboards/modelmon.yaml``. Run on
the repository's own ``dashboards/`` directory (``modelmon dashboards export dashboards``) it
rewrites the checked-in copies that ``docker-compose.yml`` mounts; ``tests/test_dashboards.py``
fails when those copies differ from what the generator writes for ``models/``. Output is
deterministic: the same specs give byte-identical files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dashboards.catalog import build_dashboards
from dashboards.grafana import DATASOURCE_TYPE, DATASOURCE_UID
from modelmon.spec import ModelSpec

FOLDER_UID = "modelmon"
FOLDER_TITLE = "modelmon"
# Where the grafana service of docker-compose.yml mounts ./dashboards/json.
DASHBOARDS_MOUNT = "/etc/grafana/dashboards/modelmon"

DATASOURCE_YAML = f"""\
# Grafana datasource provisioning: the ClickHouse server of docker-compose.yml.
# The uid is fixed: every modelmon dashboard references "{DATASOURCE_UID}".
# $CLICKHOUSE_USER / $CLICKHOUSE_PASSWORD come from the grafana service's environment
# (a literal "$" in a password must be written "$$").
apiVersion: 1

datasources:
  - name: ClickHouse (modelmon)
    uid: {DATASOURCE_UID}
    type: {DATASOURCE_TYPE}
    access: proxy
    isDefault: true
    editable: false
    jsonData:
      host: clickhouse
      port: 8123
      protocol: http
      secure: false
      username: $CLICKHOUSE_USER
      defaultDatabase: default
    secureJsonData:
      password: $CLICKHOUSE_PASSWORD
"""

PROVIDER_YAML = f"""\
# Grafana dashboard provider: loads every *.json under dashboards/json/ of the repo, which
# docker-compose.yml mounts read-only at the path below, into the folder "{FOLDER_TITLE}".
apiVersion: 1

providers:
  - name: modelmon
    orgId: 1
    type: file
    folder: {FOLDER_TITLE}
    folderUid: {FOLDER_UID}
    disableDeletion: true
    allowUiUpdates: false
    updateIntervalSeconds: 30
    options:
      path: {DASHBOARDS_MOUNT}
      foldersFromFilesStructure: false
"""


def dashboard_json(specs: Mapping[str, ModelSpec] | None = None) -> dict[str, dict[str, Any]]:
    """uid → dashboard JSON model, in menu order."""
    return {dashboard.uid: dashboard.to_json() for dashboard in build_dashboards(specs)}


def render(document: Mapping[str, Any]) -> str:
    """The file text of one dashboard (stable key order, two-space indent, final newline)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def export_files(specs: Mapping[str, ModelSpec] | None = None) -> dict[str, str]:
    """Relative path → text of every file :func:`export` writes."""
    files = {f"json/{uid}.json": render(doc) for uid, doc in dashboard_json(specs).items()}
    files["provisioning/datasources/clickhouse.yaml"] = DATASOURCE_YAML
    files["provisioning/dashboards/modelmon.yaml"] = PROVIDER_YAML
    return files


def export(directory: Path, specs: Mapping[str, ModelSpec] | None = None) -> list[Path]:
    """Write the files under ``directory``; return their paths. Other files there are left alone."""
    written = []
    for relative, text in export_files(specs).items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
