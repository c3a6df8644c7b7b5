#!/usr/bin/env bash
# WebSocket conformance: the Autobahn fuzzing client against a live herald.
#
# Called by CI from the repository root after `cargo build --release`:
#
#     bash .ci/autobahn.sh
#
# It installs the pinned suite (.ci/autobahn-requirements.txt) for pyenv's Python 2.7
# into target/autobahn-py2 (once), starts ./target/release/herald on a free loopback
# port, runs every case except the performance sections (9) and compression (12, 13),
# judges the reports with .ci/autobahn_check.py (herald is not an echo server; see
# there), checks herald still answers, and stops it. About 2 minutes: many cases wait
# out the suite's own timeout for an echo that never comes.
#
# Environment knobs (all optional):
#   PYTHON2     the Python 2.7 interpreter (default: pyenv's 2.7.18, else python2.7)
#   AUTOBAHN_CASES  JSON list of cases to run (default ["*"])
set -euo pipefail

ROOT=$(pwd)
HERALD="$ROOT/target/release/herald"
SITE="$ROOT/target/autobahn-py2"
WORK="$ROOT/target/autobahn"
REQS="$ROOT/.ci/autobahn-requirements.txt"

if [[ ! -x "$HERALD" ]]; then
    echo "autobahn.sh: $HERALD is missing; run 'cargo build --release' first" >&2
    exit 2
fi
PY2=${PYTHON2:-}
if [[ -z "$PY2" ]]; then
    for candidate in "$HOME/.pyenv/versions/2.7.18/bin/python" python2.7; do
        if command -v "$candidate" >/dev/null 2>&1; then PY2=$candidate; break; fi
    done
fi
if [[ -z "$PY2" ]] || ! "$PY2" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))'; then
    echo "autobahn.sh: needs Python 2.7 (set PYTHON2); autobahntestsuite does not run on Python 3" >&2
    exit 2
fi

# The suite, pinned, in a directory of its own (Python 2.7 has no venv module).
STAMP="$SITE/.requirements"
if ! cmp -s "$REQS" "$STAMP" 2>/dev/null; then
    echo "--- installing autobahntestsuite for $("$PY2" --version 2>&1) into $SITE"
    rm -rf "$SITE"
    "$PY2" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --target "$SITE" -r "$REQS"
    cp "$REQS" "$STAMP"
fi

rm -rf "$WORK" && mkdir -p "$WORK"
"$HERALD" --listen 127.0.0.1:0 --log-format json >"$WORK/herald.log" 2>&1 &
HERALD_PID=$!
trap 'kill "$HERALD_PID" 2>/dev/null || true' EXIT
ADDR=
for _ in $(seq 100); do
    ADDR=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    try:
        v = json.loads(line)
    except ValueError:
        continue
    if v.get("fields", {}).get("message") == "listening":
        print(v["fields"]["addr"]); break
' "$WORK/herald.log")
    [[ -n "$ADDR" ]] && break
    sleep 0.1
done
if [[ -z "$ADDR" ]]; then
    echo "autobahn.sh: herald did not start:" >&2
    cat "$WORK/herald.log" >&2
    exit 1
fi
echo "--- herald on $ADDR"

cat >"$WORK/spec.json" <<JSON
{
  "outdir": "$WORK/reports",
  "servers": [{"agent": "herald", "url": "ws://$ADDR/ws"}],
  "cases": ${AUTOBAHN_CASES:-[\"*\"]},
  "exclude-cases": ["9.*", "12.*", "13.*"],
  "exclude-agent-cases": {}
}
JSON
echo "--- wstest -m fuzzingclient (log: $WORK/wstest.log)"
(cd "$WORK" && "$PY2" -c '
import site, sys
site.addsitedir(sys.argv[1])  # processes the namespace-package .pth files
sys.argv = ["wstest", "-m", "fuzzingclient", "-s", "spec.json"]
from autobahntestsuite.wstest import run
sys.exit(run())
' "$SITE" >"$WORK/wstest.log" 2>&1) || {
    echo "autobahn.sh: wstest failed:" >&2
    tail -20 "$WORK/wstest.log" >&2
    exit 1
}

python3 "$ROOT/.ci/autobahn_check.py" "$WORK/reports"

# herald is alive afterwards and still serves.
if ! kill -0 "$HERALD_PID" 2>/dev/null; then
    echo "autobahn.sh: herald died during the suite" >&2
    exit 1
fi
python3 - "$ADDR" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(f"http://{sys.argv[1]}/healthz", timeout=5) as r:
    assert r.status == 200, r.status
print("--- herald still answers /healthz")
PY
