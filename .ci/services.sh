# shellcheck shell=bash
# Test services for autofr's cluster tests: a PostgreSQL server and an MLflow tracking server,
# both on 127.0.0.1, both in one temporary directory that is removed when the shell exits.
#
#   source .ci/services.sh     # from the repository root, with the project's venv active
#   pytest tests/cluster       # reads AUTOFR_TEST_POSTGRES_URL and AUTOFR_TEST_MLFLOW_URI
#
# Exports
#   AUTOFR_TEST_POSTGRES_URL  postgresql://autofr:<password>@127.0.0.1:<port>/autofr_test
#                             (the role may CREATE DATABASE, so tests can make throw-away databases)
#   AUTOFR_TEST_MLFLOW_URI    http://127.0.0.1:<port>  (sqlite backend, proxied artifact store)
#   AUTOFR_SERVICES_DIR       the temporary directory (data, sockets, logs)
#
# - Root on a fresh Debian 12: installs `postgresql` with apt-get when no server binaries are found,
#   and runs the server as the `postgres` user. A normal user needs PostgreSQL installed already.
# - Sourcing it again in a shell whose services still answer reuses them; otherwise it starts new
#   ones on free ports. Existing clusters (e.g. Debian's 15/main) are left alone.
# - Waits (bounded) until both services answer; returns non-zero with the log tail if one does not.
# - An EXIT trap (chained after any EXIT trap already set) stops both services and removes the dir.
# - MLflow runs with one worker (`--workers 1`) and no job runner: the CI machine has 2 cores.
# - Sourced, so it never calls `exit` and never changes the caller's shell options; it works under
#   the caller's `set -euo pipefail` too. Non-zero status: a message on stderr says what failed.

_autofr_say() { printf 'services: %s\n' "$*" >&2; }

_autofr_port_in_use() {  # 0 when something listens on 127.0.0.1:$1
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

_autofr_free_port() {
  local port tries=0
  while [ $tries -lt 50 ]; do
    port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    _autofr_port_in_use "$port" || { echo "$port"; return 0; }
    tries=$((tries + 1))
  done
  return 1
}

_autofr_http_ok() {  # 0 when GET $1 (http://127.0.0.1:PORT/path) answers 200
  local hostport=${1#http://} path
  path=/${hostport#*/}; hostport=${hostport%%/*}
  if command -v curl >/dev/null 2>&1; then
    curl -sf -o /dev/null --max-time 3 "$1"
    return
  fi
  (
    exec 3<>"/dev/tcp/${hostport%:*}/${hostport#*:}" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" >&3
    IFS= read -r -t 3 status <&3 && [[ $status == *" 200 "* ]]
  ) 2>/dev/null
}

_autofr_pg_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1) || true
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return 0; fi
  dir=$(command -v initdb 2>/dev/null) && { dirname "$(readlink -f "$dir")"; return 0; }
  return 1
}

_autofr_as_db_owner() {  # run a command as the user that owns the data directory
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

_autofr_start_postgres() {
  local bindir port password sockdir datadir log attempt
  if [ -n "${AUTOFR_TEST_POSTGRES_URL:-}" ] && command -v psql >/dev/null 2>&1 \
     && PGCONNECT_TIMEOUT=3 psql "$AUTOFR_TEST_POSTGRES_URL" -qAtc 'select 1' >/dev/null 2>&1; then
    _autofr_say "reusing PostgreSQL at ${AUTOFR_TEST_POSTGRES_URL%%:*}://...@${AUTOFR_TEST_POSTGRES_URL##*@}"
    return 0
  fi
  if ! bindir=$(_autofr_pg_bindir); then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
      _autofr_say "PostgreSQL is not installed; install it (apt-get install postgresql) or run as root"
      return 1
    fi
    _autofr_say "installing postgresql with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q postgresql >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q postgresql >/dev/null 2>&1; } \
      || { _autofr_say "apt-get install postgresql failed"; return 1; }
    bindir=$(_autofr_pg_bindir) || { _autofr_say "no initdb after installing postgresql"; return 1; }
  fi
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    _autofr_say "there is no postgres user to run the server as"; return 1
  fi

  datadir="$AUTOFR_SERVICES_DIR/pgdata"
  sockdir="$AUTOFR_SERVICES_DIR/pgsocket"
  log="$AUTOFR_SERVICES_DIR/postgres.log"
  mkdir -p "$sockdir" && touch "$log" || return 1
  if [ "$(id -u)" = 0 ]; then chown postgres: "$AUTOFR_SERVICES_DIR" "$sockdir" "$log" || return 1; fi
  _autofr_as_db_owner "$bindir/initdb" -D "$datadir" -U postgres -E UTF8 --auth-local=trust \
      --auth-host=scram-sha-256 --no-instructions >>"$log" 2>&1 \
    || { _autofr_say "initdb failed:"; tail -n 5 "$log" >&2; return 1; }

  for attempt in 1 2 3; do
    port=$(_autofr_free_port) || { _autofr_say "no free port"; return 1; }
    if _autofr_as_db_owner "$bindir/pg_ctl" -D "$datadir" -l "$log" -w -t 60 start -o \
        "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$sockdir -c max_connections=200" \
        >/dev/null 2>&1; then
      break
    fi
    port=""
  done
  [ -n "$port" ] || { _autofr_say "PostgreSQL did not start:"; tail -n 5 "$log" >&2; return 1; }
  AUTOFR_SERVICES_PG_CTL="$bindir/pg_ctl"

  password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
  _autofr_as_db_owner "$bindir/psql" -h "$sockdir" -p "$port" -U postgres -d postgres -qX -v ON_ERROR_STOP=1 \
      -c "CREATE ROLE autofr LOGIN CREATEDB PASSWORD '$password'" \
      -c "CREATE DATABASE autofr_test OWNER autofr" >>"$log" 2>&1 \
    || { _autofr_say "could not create the autofr role and database:"; tail -n 5 "$log" >&2; return 1; }
  export AUTOFR_TEST_POSTGRES_URL="postgresql://autofr:$password@127.0.0.1:$port/autofr_test"
  PGCONNECT_TIMEOUT=5 "$bindir/psql" "$AUTOFR_TEST_POSTGRES_URL" -qAtc 'select 1' >/dev/null 2>>"$log" \
    || { _autofr_say "PostgreSQL does not accept the autofr login over TCP:"; tail -n 5 "$log" >&2; return 1; }
  _autofr_say "PostgreSQL on 127.0.0.1:$port (database autofr_test, role autofr)"
}

_autofr_start_mlflow() {
  local mlflow port log waited=0
  if [ -n "${AUTOFR_TEST_MLFLOW_URI:-}" ] && _autofr_http_ok "$AUTOFR_TEST_MLFLOW_URI/health"; then
    _autofr_say "reusing MLflow at $AUTOFR_TEST_MLFLOW_URI"
    return 0
  fi
  mlflow=$(command -v mlflow 2>/dev/null) || true
  [ -n "$mlflow" ] || { [ -x .venv/bin/mlflow ] && mlflow=$PWD/.venv/bin/mlflow; }
  [ -n "$mlflow" ] || { _autofr_say "no mlflow executable: activate the project's venv"; return 1; }
  port=$(_autofr_free_port) || { _autofr_say "no free port"; return 1; }
  log="$AUTOFR_SERVICES_DIR/mlflow.log"
  # A new session (setsid), so the cleanup stops the server and its worker processes as one group;
  # the session leader writes its pid, which is the group id, whether or not setsid had to fork.
  # MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false: no background job runner (GenAI jobs; not needed here).
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid sh -c 'echo $$ >"$0/mlflow.pid"; exec "$@"' "$AUTOFR_SERVICES_DIR" \
      "$mlflow" server --host 127.0.0.1 --port "$port" --workers 1 \
      --backend-store-uri "sqlite:///$AUTOFR_SERVICES_DIR/mlflow.db" \
      --artifacts-destination "$AUTOFR_SERVICES_DIR/mlartifacts" >"$log" 2>&1 </dev/null &
  while [ ! -s "$AUTOFR_SERVICES_DIR/mlflow.pid" ] && [ $waited -lt 100 ]; do sleep 0.1; waited=$((waited + 1)); done
  AUTOFR_SERVICES_MLFLOW_PID=$(cat "$AUTOFR_SERVICES_DIR/mlflow.pid" 2>/dev/null) || true
  waited=0
  until _autofr_http_ok "http://127.0.0.1:$port/health"; do
    if ! kill -0 "${AUTOFR_SERVICES_MLFLOW_PID:-0}" 2>/dev/null || [ $waited -ge 120 ]; then
      _autofr_say "MLflow did not answer on 127.0.0.1:$port:"; tail -n 5 "$log" >&2; return 1
    fi
    sleep 1; waited=$((waited + 1))
  done
  export AUTOFR_TEST_MLFLOW_URI="http://127.0.0.1:$port"
  _autofr_say "MLflow on $AUTOFR_TEST_MLFLOW_URI"
}

_autofr_services_cleanup() {
  if [ -n "${AUTOFR_SERVICES_MLFLOW_PID:-}" ]; then
    kill -TERM -- "-$AUTOFR_SERVICES_MLFLOW_PID" 2>/dev/null || true
    local waited=0
    while kill -0 -- "-$AUTOFR_SERVICES_MLFLOW_PID" 2>/dev/null && [ $waited -lt 50 ]; do sleep 0.1; waited=$((waited + 1)); done
    kill -KILL -- "-$AUTOFR_SERVICES_MLFLOW_PID" 2>/dev/null || true
  fi
  if [ -n "${AUTOFR_SERVICES_PG_CTL:-}" ] && [ -d "${AUTOFR_SERVICES_DIR:-}/pgdata" ]; then
    _autofr_as_db_owner "$AUTOFR_SERVICES_PG_CTL" -D "$AUTOFR_SERVICES_DIR/pgdata" -m fast -w stop >/dev/null 2>&1 || true
  fi
  if [ -n "${AUTOFR_SERVICES_DIR:-}" ] && [ -d "$AUTOFR_SERVICES_DIR" ]; then rm -rf "$AUTOFR_SERVICES_DIR" || true; fi
  unset AUTOFR_SERVICES_MLFLOW_PID AUTOFR_SERVICES_PG_CTL AUTOFR_SERVICES_DIR
}

_autofr_services_main() {
  local previous_trap
  if [ -z "${AUTOFR_SERVICES_DIR:-}" ] || [ ! -d "$AUTOFR_SERVICES_DIR" ]; then
    AUTOFR_SERVICES_DIR=$(mktemp -d "${TMPDIR:-/tmp}/autofr-services.XXXXXX") || return 1
    chmod 755 "$AUTOFR_SERVICES_DIR"
    export AUTOFR_SERVICES_DIR
    previous_trap=$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")
    # shellcheck disable=SC2064
    trap "_autofr_services_cleanup${previous_trap:+; $previous_trap}" EXIT
  fi
  _autofr_start_postgres || return 1
  _autofr_start_mlflow || return 1
}

_autofr_services_main
