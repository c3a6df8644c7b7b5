#!/usr/bin/env bash
# OpenAPI conformance: runs schemathesis against a live herald with openapi.yaml.
#
# Called by CI from the repository root after `cargo build --release`:
#
#     bash .ci/schemathesis.sh
#
# It installs a pinned schemathesis into target/schemathesis-venv (once), starts
# ./target/release/herald on a free loopback port, fuzzes every HTTP operation of
# openapi.yaml with all checks, stops that herald again and exits non-zero when
# schemathesis found a failure.
#
# Environment knobs (all optional):
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation and phase (default 1000; a run
#                              takes about 20-30 s on a 2-core machine)
#   SCHEMATHESIS_SEED          reproduce an earlier run (its seed is printed at the end)
#   SCHEMATHESIS_STRICT=1      report the known server bugs listed in the hooks below
#                              instead of suppressing them (use it to check a fix)
#   PYTHON                     the interpreter for the venv (3.11 or newer)
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
ROOT=$(pwd)
VENV="$ROOT/target/schemathesis-venv"
HERALD="$ROOT/target/release/herald"
SPEC="$ROOT/openapi.yaml"
WORK="$ROOT/target/schemathesis"
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-1000}

if [[ ! -f "$SPEC" || ! -f Cargo.toml ]]; then
    echo "schemathesis.sh: run me from the repository root (openapi.yaml not found)" >&2
    exit 2
fi
if [[ ! -x "$HERALD" ]]; then
    echo "schemathesis.sh: $HERALD is missing; run 'cargo build --release' first" >&2
    exit 2
fi

# --- schemathesis, pinned, in its own venv ------------------------------------------
pick_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [[ -n "$candidate" ]] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
    echo "schemathesis.sh: schemathesis $SCHEMATHESIS_VERSION needs Python 3.11 or newer" >&2
    exit 2
}

installed_version() {
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true
}

if [[ -d "$VENV" ]] && ! "$VENV/bin/python" -c 'pass' 2>/dev/null; then
    echo "--- $VENV is broken (its Python is gone?); recreating it"
    rm -rf "$VENV"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    python=$(pick_python)
    echo "--- creating $VENV with $python ($("$python" --version 2>&1))"
    "$python" -m venv "$VENV"
fi
if [[ "$(installed_version)" != "$SCHEMATHESIS_VERSION" ]]; then
    echo "--- installing schemathesis==$SCHEMATHESIS_VERSION"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
echo "--- $("$VENV/bin/st" --version)"

mkdir -p "$WORK"

# --- known limits of the spec ---------------------------------------------------------
# Failures schemathesis reports that are limits of what JSON Schema can say (or, while
# one is open, a known herald bug marked "bug:"). Each is dropped only in its exact shape, so the same
# check still catches everything else. Every suppressed failure is logged to
# $WORK/suppressed.log and counted at the end; delete an entry once its bug is fixed
# (SCHEMATHESIS_STRICT=1 shows whether it still happens).
cat >"$WORK/hooks.py" <<'PY'
import json
import os

import schemathesis

LOG = os.environ["HERALD_ST_SUPPRESSED_LOG"]
STRICT = os.environ.get("SCHEMATHESIS_STRICT") == "1"
CLOSE = "POST /groups/{group}/close"
NOTIFY = "POST /notify"


def _reason_bytes(body):
    reason = body.get("reason") if isinstance(body, dict) else None
    if isinstance(reason, str):
        return len(reason.encode("utf-8", "surrogatepass"))
    return 0


def known_issue(failure, case, response):
    """Names the known issue a failure is, or None."""
    label = case.operation.label
    code = getattr(failure, "code", "")
    body = case.body
    if code == "ST202" and label == CLOSE and isinstance(body, dict):
        # SPEC LIMIT (not a bug): the reason is limited to 123 *bytes* of UTF-8, which
        # JSON Schema cannot say; the spec's maxLength 123 counts characters.
        if _reason_bytes(body) > 123:
            return "spec limit: close reason over 123 UTF-8 bytes"
    return None


@schemathesis.hook
def filter_failure(ctx, failure, case, response):
    issue = known_issue(failure, case, response)
    if issue is None or (STRICT and issue.startswith("bug:")):
        return True
    with open(LOG, "a", encoding="utf-8") as log:
        log.write(json.dumps({"issue": issue, "operation": case.operation.label,
                              "method": case.method, "body": repr(case.body)[:300],
                              "status": response.status_code}) + "\n")
    return False
PY
: >"$WORK/suppressed.log"
export HERALD_ST_SUPPRESSED_LOG="$WORK/suppressed.log"
export SCHEMATHESIS_HOOKS="$WORK/hooks.py"

# --- herald on a free loopback port -------------------------------------------------
PORT=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
BASE_URL="http://127.0.0.1:$PORT"
HERALD_LOG="$WORK/herald.log"
HERALD_PID=""

cleanup() {
    if [[ -n "$HERALD_PID" ]] && kill -0 "$HERALD_PID" 2>/dev/null; then
        kill -TERM "$HERALD_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$HERALD_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$HERALD_PID" 2>/dev/null || true
        wait "$HERALD_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

echo "--- starting herald on $BASE_URL (log: $HERALD_LOG)"
"$HERALD" --listen "127.0.0.1:$PORT" >"$HERALD_LOG" 2>&1 &
HERALD_PID=$!

if ! "$VENV/bin/python" - "$BASE_URL/healthz" "$HERALD_PID" <<'PY'; then
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("herald exited before it answered /healthz")
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit("herald did not answer /healthz within 30s")
PY
    echo "--- herald log:" >&2
    cat "$HERALD_LOG" >&2
    exit 1
fi

# --- schemathesis ------------------------------------------------------------------
# The two WebSocket operations (GET /ws, GET /ws/{group}) are excluded: schemathesis
# speaks plain HTTP, so a generated request with a valid handshake gets a 101 and leaves
# an upgraded socket that its HTTP client then reuses, and every other generated request
# only checks the 426/400 error paths. The WebSocket protocol is covered by the e2e tests
# in tests/e2e; every other operation is fuzzed here.
args=(
    run "$SPEC"
    --url "$BASE_URL"
    --checks all
    --exclude-operation-id connect
    --exclude-operation-id connectToGroup
    --max-examples "$MAX_EXAMPLES"
    --workers 2
    --request-timeout 10
    --generation-database none
    --report junit
    --report-dir "$WORK/report"
    --no-color
)
if [[ -n "${SCHEMATHESIS_SEED:-}" ]]; then
    args+=(--seed "$SCHEMATHESIS_SEED")
fi

echo "--- st ${args[*]}"
start=$(date +%s)
set +e
"$VENV/bin/st" "${args[@]}"
status=$?
set -e
echo "--- schemathesis finished in $(($(date +%s) - start))s with exit code $status"

if ! kill -0 "$HERALD_PID" 2>/dev/null; then
    echo "--- herald died during the run; its log:" >&2
    tail -n 50 "$HERALD_LOG" >&2
    status=1
fi
# herald's own ERROR lines are 5xx and unhandled rejections, i.e. bugs. (warp's
# "server connection error" lines for requests hyper could not parse are not herald's.)
if grep -qE 'panicked| ERROR herald' "$HERALD_LOG"; then
    echo "--- herald logged errors during the run:" >&2
    grep -E 'panicked| ERROR herald' "$HERALD_LOG" | head -n 20 >&2
    status=1
fi

if [[ -s "$WORK/suppressed.log" ]]; then
    echo "--- failures suppressed as known issues (see .ci/schemathesis.sh; SCHEMATHESIS_STRICT=1 reports them):"
    "$VENV/bin/python" - "$WORK/suppressed.log" <<'PY'
import collections, json, sys
counts = collections.Counter()
for line in open(sys.argv[1], encoding="utf-8"):
    entry = json.loads(line)
    counts[(entry["issue"], entry["operation"])] += 1
for (issue, operation), n in sorted(counts.items()):
    print(f"    {n:4d}  {issue}  [{operation}]")
PY
fi

exit "$status"
