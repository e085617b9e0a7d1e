#!/usr/bin/env bash
# Create bench/.venv-whylogs, bench/.venv-evidently and bench/.venv-nannyml, each from its requirements file.
#
# Each peer lives in its own venv because its pins clash with the project's (whylogs 1.6.4 needs
# numpy<2, Evidently 0.7 needs pandas<3). Idempotent: a venv is rebuilt only when its
# requirements file changed since the last successful install. A failed install is reported and
# skipped, so `make bench` still runs modelmon's part; the bench prints how to retry.
set -uo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
status=0

setup_peer() {
    local name="$1"
    local venv=".venv-${name}"
    local reqs="requirements-${name}.txt"
    local stamp="${venv}/.installed-requirements.txt"
    if [[ -f "$stamp" ]] && cmp -s "$reqs" "$stamp"; then
        echo "setup_peers: ${venv} is up to date"
        return 0
    fi
    echo "setup_peers: installing ${venv} from ${reqs} ..."
    rm -rf "$venv"
    if "$PYTHON" -m venv "$venv" \
        && "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$reqs"; then
        cp "$reqs" "$stamp"
        echo "setup_peers: ${venv} ready ($("$venv/bin/pip" freeze | grep -iE "^(${name}|numpy|pandas)==" | tr '\n' ' '))"
    else
        echo "setup_peers: FAILED to install ${venv}; the bench will skip ${name}" >&2
        status=1
    fi
}

setup_peer whylogs
setup_peer evidently
setup_peer nannyml
# A peer that cannot install must not stop `make bench` from measuring modelmon.
if [[ "${SETUP_PEERS_STRICT:-0}" == "1" ]]; then
    exit "$status"
fi
exit 0
