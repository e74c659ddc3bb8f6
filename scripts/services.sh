#!/usr/bin/env bash
# scripts/services.sh — make sure the backing services Plaza's tests need are up:
#
#   * PostgreSQL on 127.0.0.1:5432, user `postgres`, no password (trust auth),
#     max_connections >= 300 (tests open many databases/pools in parallel);
#   * Redis on 127.0.0.1:6379;
#   * a Kafka-protocol broker (tansu) on 127.0.0.1:9092, durable storage;
#   * Node with the graphql-ws client, and Debian's chromium with playwright-core
#     (the page tests).
#
# Used by `make services` and by `make test` before every test run, so the
# common case (everything already up) is a handful of probes and nothing else.
# Only when a probe fails do we install (apt-get, Debian 12), configure and
# start things. No systemd is assumed: services are started directly.
#
# Environment:
#   PLAZA_SKIP_SERVICES=1     do nothing (CI or a developer managing services).
#   PLAZA_TEST_DATABASE_URL   tests use this server instead; we only check it
#                             answers (with psql, if installed) and never touch
#                             the local PostgreSQL.
set -euo pipefail
# Let failures inside $(...) abort too (bash >= 4.4), e.g. in pg_ensure_trust.
shopt -s inherit_errexit

readonly PG_HOST=127.0.0.1 PG_PORT=5432 PG_USER=postgres
readonly PG_MIN_CONNECTIONS=300
readonly PG_WAIT_SECS=30
readonly REDIS_HOST=127.0.0.1 REDIS_PORT=6379
readonly REDIS_WAIT_SECS=10
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT

APT_UPDATED=""      # apt-get update runs at most once per invocation
LOCKED=""           # slow-path lock taken?
PG_MAX_CONN=""      # filled in by pg_probe

# --- small helpers -----------------------------------------------------------

# Progress chatter goes to stderr so stdout carries only the per-service lines.
log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

can_sudo() { have sudo && sudo -n true 2>/dev/null; }

# Run a privileged command: directly as root, via passwordless sudo on a
# developer machine, otherwise fail with a message saying what was needed.
# fd 9 (the slow-path lock) is closed for the child: daemons it starts
# (postgres, apt postinst scripts) would otherwise hold the lock forever.
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@" 9>&-
    elif can_sudo; then
        sudo -n "$@" 9>&-
    else
        die "need root for: $* (re-run as root, or start the service yourself)"
    fi
}

# wait_until SECS CMD...: poll CMD until it succeeds or SECS elapse.
wait_until() {
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        ((SECONDS >= deadline)) && return 1
        sleep 0.25
    done
}

# Plain TCP connect, for machines without the client tools.
tcp_open() { timeout 2 bash -c ": >/dev/tcp/$1/$2" 2>/dev/null; }

# Serialise the slow path so two concurrent `make test` runs don't both try
# to apt-get install or start the same server. The fast path never locks.
take_lock() {
    [[ -n $LOCKED ]] && return 0
    LOCKED=1
    have flock || return 0
    local f="${TMPDIR:-/tmp}/plaza-services.$EUID.lock"
    exec 9>>"$f" || return 0
    flock -w 300 9 || die "timed out waiting for another services.sh run ($f)"
}

apt_install() {
    [[ $EUID -eq 0 ]] || can_sudo \
        || die "$* not installed and installing needs root: run 'apt-get install -y $*' as root"
    have apt-get || die "$* not installed and apt-get is unavailable; install it manually"
    if [[ -z $APT_UPDATED ]]; then
        log "apt-get update"
        as_root apt-get update -q >&2 || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "installing $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 \
        || die "apt-get install $* failed"
}

# --- PostgreSQL ----------------------------------------------------------------

# Succeeds when the server accepts a password-less login as postgres; also
# records max_connections so the same round trip serves two checks.
pg_probe() {
    if have pg_isready; then
        pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2 || return 1
    fi
    if have psql; then
        PG_MAX_CONN=$(PGCONNECT_TIMEOUT=3 psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" \
            -d postgres -w -X -tA -c 'show max_connections' 2>/dev/null) || return 1
    else
        PG_MAX_CONN=""
        tcp_open "$PG_HOST" "$PG_PORT"
    fi
}

pg_sql() {
    PGCONNECT_TIMEOUT=5 psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres \
        -w -X -q -v ON_ERROR_STOP=1 -tA -c "$1"
}

pg_server_installed() {
    have pg_ctlcluster && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

# Print the version of the cluster to manage: the `main` cluster configured
# for port 5432 if there is one, else the newest installed server version.
pg_pick_version() {
    local ver
    for ver in $(ls /etc/postgresql 2>/dev/null | sort -rV); do
        if grep -Eqs "^[[:space:]]*port[[:space:]]*=[[:space:]]*$PG_PORT\b" \
                "/etc/postgresql/$ver/main/postgresql.conf"; then
            echo "$ver"; return 0
        fi
    done
    ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -1
}

pg_ensure_cluster() {
    local ver=$1
    [[ -d /etc/postgresql/$ver/main ]] && return 0
    log "creating PostgreSQL $ver cluster 'main' on port $PG_PORT"
    as_root pg_createcluster -p "$PG_PORT" "$ver" main >&2 || die "pg_createcluster $ver main failed"
}

# Tests log in as postgres without a password. Only touch pg_hba.conf when it
# has no trust rule for 127.0.0.1; the rules are prepended because the first
# matching line wins. Prints "changed" if the file was rewritten.
pg_ensure_trust() {
    local hba=/etc/postgresql/$1/main/pg_hba.conf tmp
    if as_root grep -Eq '^[[:space:]]*host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
        return 0
    fi
    log "enabling trust auth for local connections in $hba (backup: $hba.plaza-bak)"
    tmp=$(mktemp)
    {
        echo '# Added by plaza scripts/services.sh: password-less access for local tests.'
        echo 'local   all   all                  trust'
        echo 'host    all   all   127.0.0.1/32   trust'
        echo 'host    all   all   ::1/128        trust'
        echo
        as_root cat "$hba"
    } >"$tmp"
    as_root cp "$hba" "$hba.plaza-bak"
    as_root cp "$tmp" "$hba"   # cp onto the existing file keeps owner/mode
    rm -f "$tmp"
    echo changed
}

# The server must listen on loopback. Debian's default ('localhost', commented
# out) is fine; only an explicit setting without it needs an override, which
# goes to conf.d (included last) instead of editing postgresql.conf.
pg_ensure_listen() {
    local conf=/etc/postgresql/$1/main value
    value=$(as_root cat "$conf/postgresql.conf" $(compgen -G "$conf/conf.d/*.conf" || true) 2>/dev/null \
        | sed -nE "s/^[[:space:]]*listen_addresses[[:space:]]*=[[:space:]]*'([^']*)'.*/\1/p" | tail -1)
    [[ -z $value || $value == *'*'* || $value == *localhost* || $value == *127.0.0.1* ]] && return 0
    log "adding localhost to listen_addresses (was '$value')"
    as_root mkdir -p "$conf/conf.d"
    echo "listen_addresses = '$value,localhost'" | as_root tee "$conf/conf.d/plaza-listen.conf" >/dev/null
    echo changed
}

pg_cluster_online() {
    pg_lsclusters -h "$1" main 2>/dev/null | awk '{print $4}' | grep -q online
}

pg_ctl() {  # pg_ctl VER ACTION
    as_root pg_ctlcluster --skip-systemctl-redirect "$1" main "$2" >&2
}

pg_log_tail() {
    local f=/var/log/postgresql/postgresql-$1-main.log
    [[ -r $f ]] && { log "last lines of $f:"; tail -n 15 "$f" >&2; }
    return 0
}

pg_start() {
    local ver=$1 changed=$2
    # /var/run is often a tmpfs that loses the socket directory.
    [[ -d /var/run/postgresql ]] || as_root install -d -o postgres -g postgres -m 2775 /var/run/postgresql
    if pg_cluster_online "$ver"; then
        # Running but unreachable: apply any config change we just made.
        if [[ -n $changed ]]; then
            log "restarting PostgreSQL $ver to apply configuration"
            pg_ctl "$ver" restart || true
        fi
    else
        log "starting PostgreSQL $ver"
        pg_ctl "$ver" start || true   # "already running" is fine; readiness decides
    fi
}

# Ensure max_connections >= PG_MIN_CONNECTIONS; needs a restart, so only done
# when actually too low, and only for a cluster this machine manages.
pg_ensure_max_connections() {
    [[ $PG_MAX_CONN =~ ^[0-9]+$ ]] || return 0     # psql missing: can't tell
    ((PG_MAX_CONN >= PG_MIN_CONNECTIONS)) && return 0
    take_lock
    pg_probe || die "postgres stopped answering on $PG_HOST:$PG_PORT"
    ((PG_MAX_CONN >= PG_MIN_CONNECTIONS)) && return 0   # raised concurrently
    local ver
    ver=$(pg_pick_version)
    if [[ -z $ver ]] || ! have pg_lsclusters || ! pg_cluster_online "$ver"; then
        log "warning: max_connections is $PG_MAX_CONN (< $PG_MIN_CONNECTIONS) and the server is not a local cluster I can restart; parallel tests may fail"
        return 0
    fi
    log "raising max_connections $PG_MAX_CONN -> $PG_MIN_CONNECTIONS (restarts PostgreSQL $ver)"
    pg_sql "ALTER SYSTEM SET max_connections = $PG_MIN_CONNECTIONS" || die "ALTER SYSTEM failed"
    pg_ctl "$ver" restart || true
    if ! wait_until "$PG_WAIT_SECS" pg_probe; then
        pg_log_tail "$ver"
        die "PostgreSQL $ver did not come back after raising max_connections (undo: remove max_connections from its postgresql.auto.conf)"
    fi
    ((PG_MAX_CONN >= PG_MIN_CONNECTIONS)) \
        || log "warning: max_connections is still $PG_MAX_CONN after restart"
}

# Check the externally supplied server; never provision anything for it.
pg_check_url() {
    local url=$PLAZA_TEST_DATABASE_URL shown err
    shown=$(sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#' <<<"$url")  # hide password
    if ! have psql; then
        echo "postgres: not checked (PLAZA_TEST_DATABASE_URL set, psql not installed)"
        return 0
    fi
    if ! err=$(PGCONNECT_TIMEOUT=5 psql "$url" -w -X -tA -c 'select 1' 2>&1 >/dev/null); then
        die "postgres: PLAZA_TEST_DATABASE_URL ($shown) is not reachable: ${err//[$'\n\t']/ }"
    fi
    echo "postgres: ready (PLAZA_TEST_DATABASE_URL $shown)"
}

ensure_postgres() {
    if [[ -n ${PLAZA_TEST_DATABASE_URL:-} ]]; then
        pg_check_url
        return 0
    fi

    if ! pg_probe; then
        take_lock
        pg_probe || pg_provision
    fi
    pg_ensure_max_connections
    echo "postgres: ready ($PG_HOST:$PG_PORT)"
}

pg_provision() {
    local ver changed=""
    if ! pg_server_installed; then
        apt_install postgresql postgresql-client
        # Debian's postinst usually creates (and may start) the main cluster.
        pg_probe && return 0
    fi
    ver=$(pg_pick_version)
    [[ -n $ver ]] || die "postgres: no PostgreSQL server version found under /usr/lib/postgresql"
    pg_ensure_cluster "$ver"
    changed+=$(pg_ensure_trust "$ver")
    changed+=$(pg_ensure_listen "$ver")
    pg_start "$ver" "$changed"
    if ! wait_until "$PG_WAIT_SECS" pg_probe; then
        pg_log_tail "$ver"
        if tcp_open "$PG_HOST" "$PG_PORT"; then
            die "postgres: something listens on $PG_HOST:$PG_PORT but password-less login as '$PG_USER' fails (check pg_hba.conf trust rules / which server owns the port)"
        fi
        die "postgres: not ready on $PG_HOST:$PG_PORT after ${PG_WAIT_SECS}s"
    fi
}

# --- Redis ---------------------------------------------------------------------

redis_probe() {
    if have redis-cli; then
        [[ $(timeout 2 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
    else
        # Speak RESP by hand: send PING, expect +PONG.
        timeout 2 bash -c "exec 3<>/dev/tcp/$REDIS_HOST/$REDIS_PORT && printf 'PING\r\n' >&3 \
            && IFS= read -r -t 2 line <&3 && [[ \$line == +PONG* ]]" 2>/dev/null
    fi
}

redis_start() {
    local data=/var/lib/redis logdir=/var/log/redis
    # Root uses the standard Debian dirs; an unprivileged developer without
    # access to them gets a private directory instead.
    if [[ $EUID -ne 0 ]] && ! { mkdir -p "$data" "$logdir" 2>/dev/null && [[ -w $data && -w $logdir ]]; }; then
        data=${TMPDIR:-/tmp}/plaza-redis-$EUID; logdir=$data
    fi
    mkdir -p "$data" "$logdir"
    REDIS_LOG=$logdir/ci.log
    log "starting redis-server on $REDIS_HOST:$REDIS_PORT (log: $REDIS_LOG)"
    # No persistence: test data is disposable. "-::1" binds IPv6 loopback only
    # if available (the leading '-' makes it optional).
    # 9>&-: the daemon must not inherit (and keep holding) the slow-path lock.
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
        --save "" --appendonly no --dir "$data" --logfile "$REDIS_LOG" >&2 9>&- || true
}

ensure_redis() {
    REDIS_LOG=""
    if ! redis_probe; then
        take_lock
        if ! redis_probe; then
            if ! have redis-server; then
                apt_install redis-server
            fi
            # The package's init script may already have started it.
            redis_probe || redis_start
            if ! wait_until "$REDIS_WAIT_SECS" redis_probe; then
                [[ -n $REDIS_LOG && -r $REDIS_LOG ]] && { log "last lines of $REDIS_LOG:"; tail -n 10 "$REDIS_LOG" >&2; }
                tcp_open "$REDIS_HOST" "$REDIS_PORT" \
                    && die "redis: port $REDIS_PORT is open but PING does not answer PONG (password set? another program?)"
                die "redis: not ready on $REDIS_HOST:$REDIS_PORT after ${REDIS_WAIT_SECS}s"
            fi
        fi
    fi
    echo "redis: ready ($REDIS_HOST:$REDIS_PORT)"
}

# --- Kafka-protocol broker (tansu) -------------------------------------------------
#
# No Apache Kafka distribution can be downloaded here; tansu is a Kafka-compatible
# broker from crates.io. It is installed once into ~/.cargo/bin (outside the repo, so
# every clone and CI run reuses it) and runs with durable SQLite storage.

readonly TANSU_VERSION=0.6.0
readonly KAFKA_HOST=127.0.0.1 KAFKA_PORT=9092
readonly KAFKA_WAIT_SECS=30

# tansu 0.6's SQLite schema has no index on header (topition, offset_id), so fetching a
# record scans every header the broker ever stored: fetches, and with them everything
# the broker serialises behind them (heartbeats, metadata), slow down as it ages. Plaza
# relays eight envelope headers per event, so add the index (idempotent, instant on a
# new broker).
tansu_ensure_index() {
    local db=$1/tansu.db
    [[ -f $db ]] || return 0
    have sqlite3 || apt_install sqlite3
    # tansu creates its tables when it starts; wait for them.
    wait_until 10 bash -c "sqlite3 '$db' \"select 1 from sqlite_master where name = 'header'\" | grep -q 1" \
        || die "kafka: tansu did not create its tables in $db"
    sqlite3 -cmd ".timeout 30000" "$db" \
        "CREATE INDEX IF NOT EXISTS plaza_header_by_record ON header (topition, offset_id)" >/dev/null \
        || die "kafka: cannot add the header index to $db"
}

tansu_bin() {
    if have tansu; then command -v tansu; else echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu"; fi
}

ensure_kafka() {
    if [[ -n ${PLAZA_TEST_KAFKA_BROKERS:-} ]]; then
        echo "kafka: using $PLAZA_TEST_KAFKA_BROKERS (PLAZA_TEST_KAFKA_BROKERS)"
        return 0
    fi
    local bin dir=${PLAZA_KAFKA_DIR:-$HOME/.cache/plaza/tansu}
    bin=$(tansu_bin)
    if ! tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; then
        take_lock
        if [[ ! -x $bin ]] || ! "$bin" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
            have cargo || die "kafka: cargo is needed to install tansu"
            log "installing tansu $TANSU_VERSION into ${CARGO_HOME:-$HOME/.cargo}/bin (about 10 minutes, once)"
            cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql >&2 9>&- \
                || die "kafka: cargo install tansu failed"
        fi
        if ! tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; then
            mkdir -p "$dir"
            log "starting tansu on $KAFKA_HOST:$KAFKA_PORT (data: $dir, log: $dir/tansu.log)"
            # setsid + nohup: the broker outlives this script and the make that ran it.
            # tansu reads the sqlite:// path relative to its working directory.
            # Only the broker goes to the background; it holds no pipe of ours open.
            (
                cd "$dir" || exit 1
                setsid nohup "$bin" broker \
                    --listener-url "tcp://$KAFKA_HOST:$KAFKA_PORT" \
                    --advertised-listener-url "tcp://$KAFKA_HOST:$KAFKA_PORT" \
                    --storage-engine "sqlite://tansu.db" >>"$dir/tansu.log" 2>&1 9>&- </dev/null &
            )
            if ! wait_until "$KAFKA_WAIT_SECS" tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; then
                tail -n 10 "$dir/tansu.log" >&2 || true
                die "kafka: tansu not ready on $KAFKA_HOST:$KAFKA_PORT after ${KAFKA_WAIT_SECS}s"
            fi
        fi
    fi
    tansu_ensure_index "$dir"
    echo "kafka: ready ($KAFKA_HOST:$KAFKA_PORT, tansu)"
}

# --- Node (the reference graphql-ws client of the subscription tests) -------------

ensure_node_client() {
    if ! have node || ! have npm; then
        apt_install nodejs npm
    fi
    local dir="$ROOT/clients/graphql-ws"
    # npm ci installs exactly what package-lock.json names; again only when it changed.
    if [[ ! -f $dir/node_modules/.package-lock.json || $dir/package-lock.json -nt $dir/node_modules/.package-lock.json ]]; then
        log "installing the graphql-ws client (npm ci)"
        (cd "$dir" && npm ci --no-audit --no-fund >&2) || die "npm ci in $dir failed"
    fi
    echo "node: ready ($(node --version), graphql-ws client in clients/graphql-ws)"
}

# --- Browser (Debian's chromium, driven by playwright-core in the page tests) -------

ensure_browser() {
    if [[ ! -x /usr/bin/chromium ]]; then
        apt_install chromium
    fi
    local dir="$ROOT/clients/browser"
    if [[ ! -f $dir/node_modules/.package-lock.json || $dir/package-lock.json -nt $dir/node_modules/.package-lock.json ]]; then
        log "installing playwright-core for the page tests (npm ci)"
        (cd "$dir" && npm ci --no-audit --no-fund >&2) || die "npm ci in $dir failed"
    fi
    echo "browser: ready ($(/usr/bin/chromium --version 2>/dev/null | head -1))"
}

# --- DuckDB (Python), which the export tests read Parquet files back with ------------

readonly DUCKDB_VERSION=2.0.1

ensure_duckdb() {
    local venv=${PLAZA_VENV:-$HOME/.cache/plaza/venv}
    if ! "$venv/bin/python" -c "import duckdb, sys; sys.exit(duckdb.__version__ != '$DUCKDB_VERSION')" 2>/dev/null; then
        log "installing DuckDB $DUCKDB_VERSION (Python) into $venv"
        command -v python3 >/dev/null || apt_install python3
        # Debian ships venv (and ensurepip) in a package of its own.
        python3 -m venv "$venv" 2>/dev/null || { rm -rf "$venv"; apt_install python3-venv; python3 -m venv "$venv"; }
        "$venv/bin/pip" install -q "duckdb==$DUCKDB_VERSION" >&2 || die "pip install duckdb failed"
    fi
    echo "duckdb: ready ($venv/bin/python, duckdb $DUCKDB_VERSION)"
}

# --- main ------------------------------------------------------------------------

main() {
    if [[ ${PLAZA_SKIP_SERVICES:-} == 1 ]]; then
        echo "services: skipped (PLAZA_SKIP_SERVICES=1)"
        return 0
    fi
    ensure_postgres
    ensure_redis
    ensure_kafka
    ensure_node_client
    ensure_browser
    ensure_duckdb
}

main "$@"
