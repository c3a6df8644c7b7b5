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
# By default herald runs with no JWT key, i.e. with authentication off (what CI runs).
# SCHEMATHESIS_AUTH=1 runs it with authentication on instead: herald gets a random
# HS256 secret (HERALD_JWT_SECRET), a backend token with scope `notify` is minted with
# PyJWT (installed into the same venv), and schemathesis sends it on every request with
# `-H "Authorization: Bearer <token>"`:
#
#     SCHEMATHESIS_AUTH=1 bash .ci/schemathesis.sh
#
# Environment knobs (all optional):
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation and phase (default 1000; a run
#                              takes about 20-30 s on a 2-core machine)
#   SCHEMATHESIS_SEED          reproduce an earlier run (its seed is printed at the end)
#   SCHEMATHESIS_STRICT=1      report the known server bugs listed in the hooks below
#                              instead of suppressing them (use it to check a fix)
#   SCHEMATHESIS_AUTH=1        run with authentication on (see above)
#   PYTHON                     the interpreter for the venv (3.11 or newer)
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
PYJWT_VERSION=2.10.1
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
AUTH=${SCHEMATHESIS_AUTH:-0}
if [[ "$AUTH" == 1 ]] && ! "$VENV/bin/python" -c 'import jwt' 2>/dev/null; then
    echo "--- installing pyjwt==$PYJWT_VERSION (to mint the backend token)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "pyjwt==$PYJWT_VERSION"
fi

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
CLOSES = ("POST /groups/{group}/close", "POST /users/{user}/close")
NOTIFY = "POST /notify"
MAX_BODY = 65536  # herald's default --max-body


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
    if code == "ST202" and label in CLOSES and isinstance(body, dict):
        # SPEC LIMIT (not a bug): the reason is limited to 123 *bytes* of UTF-8, which
        # JSON Schema cannot say; the spec's maxLength 123 counts characters.
        if _reason_bytes(body) > 123:
            return "spec limit: close reason over 123 UTF-8 bytes"
    if code in ("ST201", "ST202") and response.status_code == 413:
        # SPEC LIMIT (not a bug): bodies over --max-body get the documented 413 whatever
        # their schema says; JSON Schema cannot bound a body's size in bytes. `users`
        # (up to 1000 ids of up to 256 bytes) makes such bodies reachable.
        sent = response.request.body or b""
        if len(sent) > MAX_BODY:
            return "spec limit: body over --max-body"
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

# shellcheck disable=SC2329  # run by the EXIT trap below
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

auth_args=()
if [[ "$AUTH" == 1 ]]; then
    # A fresh secret per run; it goes to herald through its environment only.
    HERALD_ST_SECRET=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))')
    export HERALD_ST_SECRET
    TOKEN=$("$VENV/bin/python" -c 'import jwt, os, time
print(jwt.encode({"sub": "schemathesis", "exp": int(time.time()) + 3600, "scope": "notify"},
                 os.environ["HERALD_ST_SECRET"], algorithm="HS256"))')
    auth_args=(-H "Authorization: Bearer $TOKEN")
    echo "--- authentication on (HS256, backend token with scope notify)"
fi

echo "--- starting herald on $BASE_URL (log: $HERALD_LOG)"
if [[ "$AUTH" == 1 ]]; then
    HERALD_JWT_SECRET="$HERALD_ST_SECRET" "$HERALD" --listen "127.0.0.1:$PORT" >"$HERALD_LOG" 2>&1 &
else
    "$HERALD" --listen "127.0.0.1:$PORT" >"$HERALD_LOG" 2>&1 &
fi
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
# One worker: with two, hypothesis sometimes calls ast.parse from both threads at once
# (describing its filter lambdas), and CPython 3.11's ast module is not thread-safe there
# ("SystemError: AST constructor recursion depth mismatch", cpython gh-106905); that
# failed about one run in three. A single worker measured just as fast (~47 s).
args=(
    run "$SPEC"
    --url "$BASE_URL"
    --checks all
    --exclude-operation-id connect
    --exclude-operation-id connectToGroup
    --max-examples "$MAX_EXAMPLES"
    --workers 1
    --request-timeout 10
    --generation-database none
    --report junit
    --report-dir "$WORK/report"
    --no-color
)
args+=("${auth_args[@]}")
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
