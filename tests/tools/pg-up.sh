#!/usr/bin/env bash
# pg-up.sh - a throw-away PostgreSQL cluster on 127.0.0.1, for tests and CI (Debian's
# server binaries, /usr/lib/postgresql/<version>/bin; package `postgresql`).
#
#   pg-up.sh start  DIR PORT   start (or find running) a cluster in DIR on 127.0.0.1:PORT.
#                              stdout: only `export KURA_TEST_PG_URL=...`, for `eval "$(...)"`.
#   pg-up.sh stop   DIR        stop the cluster of DIR (fast shutdown); keep DIR.
#   pg-up.sh status DIR        exit 0 when DIR's cluster runs and accepts connections.
#   pg-up.sh env    DIR        print the export line of DIR's running cluster again.
#
# DIR is the data directory (initdb'd by the first start: trust authentication, superuser
# `postgres`; nothing outside loopback and DIR's own socket). Run as root, the server runs as
# the `postgres` user, who must be able to reach DIR (every parent directory searchable).
# A test cluster: fsync is off (a crash may lose it; `start` then builds a new one).
# Environment: PG_BIN (default: the newest /usr/lib/postgresql/*/bin), PG_TIMEOUT (seconds
# allowed for start and stop, default 60).
set -euo pipefail

PROG=$(basename "$0")
log() { echo "$PROG: $*" >&2; }
die() { log "$*"; exit 1; }
usage() { sed -n '2,12p' "$0" >&2; exit 2; }

PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}
TIMEOUT=${PG_TIMEOUT:-60}
[[ -n $PG_BIN && -x $PG_BIN/initdb ]] || die "no PostgreSQL server binaries (apt-get install postgresql)"

set_dir() {
    [[ -n ${1:-} ]] || usage
    DIR=$(realpath -m "$1")
}

# Runs a command as the cluster's owner: `postgres` when we are root, else ourselves.
as_owner() {
    if [[ $(id -u) == 0 ]]; then
        su postgres -s /bin/bash -c "$(printf '%q ' "$@")"
    else
        "$@"
    fi
}

port_of() {      # the port of DIR's running server (line 4 of postmaster.pid)
    sed -n 4p "$DIR/postmaster.pid" 2>/dev/null
}

running() {      # DIR's server runs and accepts connections
    [[ -s $DIR/postmaster.pid ]] || return 1
    as_owner "$PG_BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1 || return 1
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$(port_of)" -t 5
}

print_env() {
    echo "export KURA_TEST_PG_URL=postgres://postgres@127.0.0.1:$1/postgres"
}

cmd_start() {
    set_dir "${1:-}"
    local port=${2:-}
    [[ $port =~ ^[0-9]+$ ]] && ((port >= 1 && port <= 65535)) || die "PORT must be a TCP port number"
    if running; then
        [[ $(port_of) == "$port" ]] || die "$DIR already runs on port $(port_of); stop it first"
        log "already running: $DIR on 127.0.0.1:$port"
        print_env "$port"
        return 0
    fi
    if [[ $(id -u) == 0 ]]; then
        install -d -o postgres -g postgres -m 700 "$DIR"
        su postgres -s /bin/bash -c "test -w $(printf '%q' "$DIR")" \
            || die "user postgres cannot reach $DIR (a parent directory is not searchable); pick another DIR"
    else
        install -d -m 700 "$DIR"
    fi
    if [[ ! -s $DIR/PG_VERSION ]]; then
        [[ -z $(ls -A "$DIR") ]] || die "$DIR is neither empty nor a PostgreSQL data directory"
        log "initdb $DIR"
        as_owner "$PG_BIN/initdb" -D "$DIR" -A trust -U postgres -E UTF8 --locale=C.UTF-8 \
            >"$DIR.initdb.log" 2>&1 || { cat "$DIR.initdb.log" >&2; die "initdb failed"; }
        rm -f "$DIR.initdb.log"
    fi
    # A server killed before has left its pid file: pg_ctl start sees the process is gone.
    log "starting PostgreSQL on 127.0.0.1:$port ($DIR)"
    as_owner "$PG_BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -t "$TIMEOUT" \
        -o "-p $port -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=300" \
        start >&2 || { tail -n 20 "$DIR/server.log" >&2 || true; die "pg_ctl start failed"; }
    running || die "PostgreSQL of $DIR started but does not accept connections"
    print_env "$port"
}

cmd_stop() {
    set_dir "${1:-}"
    [[ -s $DIR/postmaster.pid ]] || { log "$DIR is not running"; return 0; }
    as_owner "$PG_BIN/pg_ctl" -D "$DIR" -m fast -w -t "$TIMEOUT" stop >&2
}

cmd_status() {
    set_dir "${1:-}"
    running
}

cmd_env() {
    set_dir "${1:-}"
    running || die "$DIR is not running"
    print_env "$(port_of)"
}

case ${1:-} in
    start) shift; (($# == 2)) || usage; cmd_start "$@" ;;
    stop) shift; (($# == 1)) || usage; cmd_stop "$@" ;;
    status) shift; (($# == 1)) || usage; cmd_status "$@" ;;
    env) shift; (($# == 1)) || usage; cmd_env "$@" ;;
    *) usage ;;
esac
