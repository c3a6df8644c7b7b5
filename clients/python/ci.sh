#!/usr/bin/env bash
# Tests of the Python client (clients/python) against the release herald binary.
#
# Called by .ci/run from the repository root after `cargo build --release --locked`:
#
#     bash clients/python/ci.sh
#
# Creates target/pyvenv (once), installs the exact versions of requirements-dev.txt and
# the package itself (built from this tree, nothing fetched), type-checks the package and
# runs pytest. The tests start their own herald processes (HERALD_BIN, default
# target/release/herald) and a Django dev server on free loopback ports.
# PYTHON picks the interpreter (3.10 or newer; default python3).
set -euo pipefail
ROOT=$(pwd)
HERE="$ROOT/clients/python"
VENV="$ROOT/target/pyvenv"
export HERALD_BIN=${HERALD_BIN:-$ROOT/target/release/herald}

if [[ ! -x "$HERALD_BIN" ]]; then
    echo "clients/python/ci.sh: $HERALD_BIN is missing; run 'cargo build --release --locked' first" >&2
    exit 2
fi
if [[ -d "$VENV" ]] && ! "$VENV/bin/python" -c 'pass' 2>/dev/null; then
    rm -rf "$VENV"  # its interpreter is gone
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    "${PYTHON:-python3}" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)
# --no-deps + pip check: the file must list every package, so nothing unpinned sneaks in.
"${pip[@]}" install --no-deps -r "$HERE/requirements-dev.txt"
"${pip[@]}" install --no-deps --no-build-isolation --force-reinstall "$HERE"
"$VENV/bin/python" -m pip check

echo "--- mypy --strict (the package ships py.typed)"
(cd "$HERE" && "$VENV/bin/mypy" --strict --cache-dir "$ROOT/target/mypy-cache" src/herald_client)

echo "--- pytest against $HERALD_BIN"
(cd "$HERE" && "$VENV/bin/python" -m pytest -q -p no:cacheprovider)
