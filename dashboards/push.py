"""Upload the dashboards to a running Grafana through its HTTP API (``grafana-client``).

Idempotent: the folder ``modelmon`` is created only when it does not exist, and every dashboard
is saved with its fixed uid and ``overwrite: true``, so pushing twice leaves one copy of each
(the second push becomes a new version of the same dashboard). The ClickHouse datasource must
exist with uid ``modelmon-clickhouse`` (provisioned, or created in the UI with that uid); a
missing one is reported, not created, since its address and password are the operator's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

from dashboards.export import FOLDER_TITLE, FOLDER_UID, dashboard_json
from dashboards.grafana import DATASOURCE_UID
from modelmon.spec import ModelSpec

logger = logging.getLogger(__name__)


@dataclass
class PushResult:
    """What a push did: whether it created the folder, the dashboards saved (uid → URL path)."""

    folder_created: bool
    dashboards: dict[str, str] = field(default_factory=dict)
    datasource_found: bool = True


def connect(
    url: str,
    *,
    token: str | None = None,
    user: str | None = None,
    password: str | None = None,
    timeout: float = 10.0,
) -> GrafanaApi:
    """A client for ``url`` with a service-account token, or a user and password."""
    if token and user:
        raise ValueError("give either a token or a user, not both")
    credential: str | tuple[str, str] | None = token or ((user, password or "") if user else None)
    return GrafanaApi.from_url(url, credential=credential, timeout=timeout)


def ensure_folder(api: GrafanaApi, uid: str = FOLDER_UID, title: str = FOLDER_TITLE) -> bool:
    """Create the folder unless it exists; True when it was created."""
    try:
        api.folder.get_folder(uid)
        return False
    except GrafanaClientError as error:
        if error.status_code != 404:
            raise
    api.folder.create_folder(title, uid=uid)
    return True


def push(
    api: GrafanaApi, specs: Mapping[str, ModelSpec] | None = None, *, message: str = "modelmon push"
) -> PushResult:
    """Create the folder if needed and save every dashboard into it (same uid → overwritten)."""
    result = PushResult(folder_created=ensure_folder(api))
    try:
        api.datasource.get_datasource_by_uid(DATASOURCE_UID)
    except GrafanaClientError as error:
        if error.status_code != 404:
            raise
        result.datasource_found = False
        logger.warning("Grafana has no datasource with uid %s: the panels will show no data", DATASOURCE_UID)
    for uid, document in dashboard_json(specs).items():
        body: dict[str, Any] = {
            "dashboard": {**document, "id": None},
            "folderUid": FOLDER_UID,
            "overwrite": True,
            "message": message,
        }
        response = api.dashboard.update_dashboard(body)
        result.dashboards[uid] = str((response or {}).get("url", ""))
    return result
