#!/usr/bin/env bash
# scripts/schemathesis.sh — check the live REST API against its own OpenAPI document
# with schemathesis (PyPI): examples, boundary values, random and schema-violating
# requests, and stateful sequences that follow the document's links. Every answer must
# be documented (status, content type, headers, body schema), schema-violating requests
# must be refused with 4xx, and nothing may answer 5xx.
#
# Usage: scripts/schemathesis.sh PLAZA_BINARY [MAX_SECONDS]
# Installs schemathesis into ~/.cache/plaza/venv the first time (outside the clone, so
# every clone and CI run reuses it).
set -euo pipefail

readonly SCHEMATHESIS_VERSION=4.32.5
plaza=$1
max_seconds=${2:-90}
venv=${PLAZA_VENV:-$HOME/.cache/plaza/venv}

apt_install() {
    local sudo=""
    [[ $EUID -eq 0 ]] || sudo="sudo -n"
    $sudo apt-get update -q >&2 && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    echo "schemathesis: installing $SCHEMATHESIS_VERSION into $venv" >&2
    command -v python3 >/dev/null || apt_install python3
    # Debian ships venv (and ensurepip) in a package of its own.
    python3 -m venv "$venv" 2>/dev/null || { rm -rf "$venv"; apt_install python3-venv; python3 -m venv "$venv"; }
    "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
cleanup() {
    [[ -n ${pid:-} ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

# Limits off: schemathesis sends many requests from one address, and throttled answers
# would hide the handlers behind them.
PLAZA_DATA_DIR="$dir/data" PLAZA_LISTEN="127.0.0.1:$port" PLAZA_LOG=warn \
PLAZA_RATE_LIMIT_IP_PER_SEC=0 PLAZA_RATE_LIMIT_USER_PER_SEC=0 \
PLAZA_LOGIN_FREE_FAILURES=0 PLAZA_LOGIN_IP_FREE_FAILURES=0 \
    "$plaza" serve >"$dir/plaza.log" 2>&1 &
pid=$!
# Ready, then a signed-in user, so commands get past authentication.
token=$(python3 - "$base" <<'PY'
import json, sys, time, urllib.request
base = sys.argv[1]
for _ in range(300):
    try:
        urllib.request.urlopen(base + "/readyz", timeout=2)
        break
    except Exception:
        time.sleep(0.1)
body = json.dumps({"username": "schemathesis", "email": "st@example.com", "password": "correct horse battery"}).encode()
request = urllib.request.Request(base + "/api/v1/users/register", data=body, headers={"Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(request, timeout=30))["token"])
PY
)

status=0
# schemathesis keeps a cache in its working directory: the temporary one, not the clone.
# One worker: with two threads, Hypothesis's lambda descriptions can trip CPython 3.11's
# "AST constructor recursion depth mismatch" (a runtime error of the tool, not of Plaza).
cd "$dir"
"$venv/bin/st" run "$base/api/v1/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection \
    --phases examples,coverage,fuzzing,stateful \
    --mode all --max-examples 25 --max-time "$max_seconds" --seed 1 \
    --header "Authorization: Bearer $token" \
    --generation-database none --no-color --workers 1 \
    --suppress-health-check too_slow,filter_too_much || status=$?

if ! kill -0 "$pid" 2>/dev/null; then
    echo "schemathesis: plaza died during the run:" >&2
    tail -n 30 "$dir/plaza.log" >&2
    status=1
fi
if grep -q "panicked" "$dir/plaza.log"; then
    echo "schemathesis: plaza panicked:" >&2
    grep -A5 "panicked" "$dir/plaza.log" | head -n 30 >&2
    status=1
fi
[[ $status -eq 0 ]] && echo "schemathesis: the REST API matches its OpenAPI document (no 5xx, every answer documented)"
exit "$status"
