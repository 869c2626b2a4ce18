#!/usr/bin/env bash
# Sourced by scripts/test.sh and scripts/bench.sh (not run on its own): installs what the real
# engines need and starts them on free loopback ports, exporting their addresses, and stops every
# server it started (by PID) when the sourcing script exits, failure included.
#
# Real engines: a NATS server with JetStream (Debian's nats-server) is installed if missing and
# started on a free loopback port with a temporary store; EVT_NATS_URL points the conformance
# suite at it and EVT_NATS_SERVER lets the engine's own tests start (and kill) servers of their
# own. The server is stopped on exit, failure included. With EVT_NATS_URL already set, that
# server is used and none is started. Without nats-server (and no way to install it) the NATS
# tests are skipped, except under CI, where this is an error.
#
# PostgreSQL (Debian's postgresql, installed if missing when root or with passwordless sudo): a
# throwaway cluster is created in a temporary directory (initdb as the postgres user, trust
# authentication, listening on 127.0.0.1 only, a free port, its Unix socket in the same
# directory), a database `evt` is created, and EVT_POSTGRES_URL points the conformance suite at
# it. The cluster is stopped and removed on exit, with the NATS server. With EVT_POSTGRES_URL
# already set, that database is used and none is started. Without PostgreSQL the PostgreSQL
# tests print a skip reason, except under CI, where this is an error.
#
# Kafka: Apache Kafka cannot be installed here, so the Kafka engine runs on tansu, a
# Kafka-compatible broker from crates.io. Its binary is built once (`cargo install tansu
# --features dynostore`, about 13 minutes on 2 cores) into $EVT_TANSU_CACHE (default
# $HOME/.cache/evt-tansu) and reused; it is started with in-memory storage on a free loopback
# port, and EVT_KAFKA_BOOTSTRAP points the conformance suite at it. With EVT_KAFKA_BOOTSTRAP
# already set, that broker is used and none is started. If tansu cannot be built the Kafka broker
# tests are skipped, except under CI, where this is an error.
#
# EVT_SERVERS (default "nats postgres kafka") chooses which of them to set up: scripts/bench.sh
# asks only for what the chosen benchmarks need.
set -euo pipefail

EVT_SERVERS="${EVT_SERVERS-nats postgres kafka}"
wants() {
  case " $EVT_SERVERS " in
    *" $1 "*) return 0 ;;
    *) return 1 ;;
  esac
}

# Installs Debian packages with apt-get, as root or through passwordless sudo; fails otherwise.
apt_install() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo="sudo -n"
    else
      return 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    return 1
  fi
  echo "installing $* (apt-get)" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "$@" >&2 || return 1
}

# --- Kafka engine build deps --------------------------------------------------------------------
# event-kafka builds librdkafka from source (rdkafka's `cmake-build`) with TLS and SCRAM: it needs
# cmake (and a C/C++ compiler) and OpenSSL's headers (libssl-dev, found through pkg-config);
# libcurl's headers are installed too. Installed with apt-get when missing and root.
installed() {
  # Fully installed ("ii"), not half-installed or removed with its configuration left.
  dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | grep -q '^ii'
}
missing_build_deps=""
for tool in cmake pkg-config; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    missing_build_deps="$missing_build_deps $tool"
  fi
done
for package in libssl-dev libcurl4-openssl-dev; do
  if ! installed "$package"; then
    missing_build_deps="$missing_build_deps $package"
  fi
done
# shellcheck disable=SC2086
if [ -n "$missing_build_deps" ] && ! apt_install $missing_build_deps; then
  echo "warning:$missing_build_deps missing (needed to build event-kafka)" >&2
fi

# --- NATS JetStream ------------------------------------------------------------------------------

find_nats_server() {
  command -v nats-server 2>/dev/null && return 0
  local candidate
  for candidate in /usr/sbin/nats-server /usr/local/bin/nats-server /usr/bin/nats-server; do
    if [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  echo "no free port found" >&2
  return 1
}

NATS_PID=""
NATS_DIR=""
TANSU_PID=""
TANSU_DIR=""
PG_BIN=""
PG_DIR=""
stop_postgres() {
  if [ -n "$PG_DIR" ]; then
    if [ -f "$PG_DIR/data/postmaster.pid" ]; then
      runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PG_DIR"
    PG_DIR=""
  fi
}
stop_tansu() {
  if [ -n "$TANSU_PID" ]; then
    kill "$TANSU_PID" 2>/dev/null || true
    wait "$TANSU_PID" 2>/dev/null || true
    TANSU_PID=""
  fi
  if [ -n "$TANSU_DIR" ]; then
    rm -rf "$TANSU_DIR"
    TANSU_DIR=""
  fi
}
cleanup() {
  stop_nats
  stop_postgres
  stop_tansu
}
stop_nats() {
  if [ -n "$NATS_PID" ]; then
    kill "$NATS_PID" 2>/dev/null || true
    wait "$NATS_PID" 2>/dev/null || true
    NATS_PID=""
  fi
  if [ -n "$NATS_DIR" ]; then
    rm -rf "$NATS_DIR"
    NATS_DIR=""
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_nats() {
  local bin="$1" port i
  port="$(free_port)"
  NATS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/evt-nats.XXXXXX")"
  "$bin" -js -a 127.0.0.1 -p "$port" -sd "$NATS_DIR/store" >"$NATS_DIR/server.log" 2>&1 &
  NATS_PID=$!
  for i in $(seq 1 150); do
    if ! kill -0 "$NATS_PID" 2>/dev/null; then
      echo "nats-server exited at start:" >&2
      cat "$NATS_DIR/server.log" >&2
      NATS_PID=""
      return 1
    fi
    if grep -q "Server is ready" "$NATS_DIR/server.log" 2>/dev/null \
      && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      export EVT_NATS_URL="nats://127.0.0.1:$port"
      echo "nats-server $("$bin" --version 2>/dev/null | awk '{print $2}') with JetStream on $EVT_NATS_URL (pid $NATS_PID)" >&2
      return 0
    fi
    sleep 0.1
  done
  echo "nats-server did not become ready:" >&2
  cat "$NATS_DIR/server.log" >&2
  return 1
}

if wants nats; then
  NATS_BIN="$(find_nats_server || true)"
  if [ -z "$NATS_BIN" ] && apt_install nats-server; then
    NATS_BIN="$(find_nats_server || true)"
  fi
  if [ -n "$NATS_BIN" ]; then
    export EVT_NATS_SERVER="$NATS_BIN"
    if [ -z "${EVT_NATS_URL:-}" ] && ! start_nats "$NATS_BIN"; then
      stop_nats
      if [ -n "${CI:-}" ]; then
        echo "error: nats-server could not be started; CI must run the NATS JetStream tests." >&2
        exit 1
      fi
      echo "warning: nats-server could not be started; the NATS JetStream tests are skipped" >&2
    fi
  elif [ -z "${EVT_NATS_URL:-}" ]; then
    if [ -n "${CI:-}" ]; then
      echo "error: nats-server is not installed and cannot be (apt-get needs root or passwordless sudo);" >&2
      echo "       CI must run the NATS JetStream tests. Install nats-server or set EVT_NATS_URL." >&2
      exit 1
    fi
    echo "warning: nats-server is not installed and cannot be; the NATS JetStream tests are skipped" >&2
  fi
fi

# --- PostgreSQL ----------------------------------------------------------------------------------

find_postgres_bin() {
  local dir
  # The newest installed major version first.
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -rn); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

start_postgres() {
  local bin="$1" port
  if [ "$(id -u)" -ne 0 ] || ! command -v runuser >/dev/null 2>&1 || ! id postgres >/dev/null 2>&1; then
    echo "cannot start PostgreSQL: needs root (runuser) and the postgres user" >&2
    return 1
  fi
  port="$(free_port)"
  PG_BIN="$bin"
  PG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/evt-postgres.XXXXXX")"
  chown postgres "$PG_DIR"
  chmod 700 "$PG_DIR"
  if ! runuser -u postgres -- "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust \
    --encoding=UTF8 --no-sync >"$PG_DIR/initdb.log" 2>&1; then
    echo "initdb failed:" >&2
    cat "$PG_DIR/initdb.log" >&2
    return 1
  fi
  if ! runuser -u postgres -- "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$PG_DIR -c fsync=off -c max_connections=200" \
    start >/dev/null 2>&1; then
    echo "PostgreSQL did not start:" >&2
    cat "$PG_DIR/server.log" >&2
    return 1
  fi
  if ! runuser -u postgres -- "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres evt >&2; then
    echo "createdb evt failed" >&2
    return 1
  fi
  export EVT_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/evt"
  echo "PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port (database evt, cluster in $PG_DIR)" >&2
}

if wants postgres && [ -z "${EVT_POSTGRES_URL:-}" ]; then
  PG_FOUND="$(find_postgres_bin || true)"
  if [ -z "$PG_FOUND" ] && apt_install postgresql; then
    PG_FOUND="$(find_postgres_bin || true)"
  fi
  if [ -n "$PG_FOUND" ]; then
    if ! start_postgres "$PG_FOUND"; then
      stop_postgres
      if [ -n "${CI:-}" ]; then
        echo "error: PostgreSQL could not be started; CI must run the PostgreSQL tests." >&2
        exit 1
      fi
      echo "warning: PostgreSQL could not be started; the PostgreSQL tests are skipped" >&2
    fi
  elif [ -n "${CI:-}" ]; then
    echo "error: PostgreSQL is not installed and cannot be (apt-get needs root or passwordless sudo);" >&2
    echo "       CI must run the PostgreSQL tests. Install postgresql or set EVT_POSTGRES_URL." >&2
    exit 1
  else
    echo "warning: PostgreSQL is not installed and cannot be; the PostgreSQL tests are skipped" >&2
  fi
fi

# --- Kafka (tansu) -------------------------------------------------------------------------------

TANSU_VERSION="0.6.0"
TANSU_CACHE="${EVT_TANSU_CACHE:-$HOME/.cache/evt-tansu}"
TANSU_BIN="$TANSU_CACHE/bin/tansu"

install_tansu() {
  if [ -x "$TANSU_BIN" ] && "$TANSU_BIN" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    return 0
  fi
  echo "building tansu $TANSU_VERSION into $TANSU_CACHE (once; about 13 minutes on 2 cores)" >&2
  mkdir -p "$TANSU_CACHE"
  # A target directory of its own, removed afterwards: only the binary is kept.
  local target
  target="$(mktemp -d "${TMPDIR:-/tmp}/evt-tansu-build.XXXXXX")"
  if CARGO_TARGET_DIR="$target" cargo install tansu --version "=$TANSU_VERSION" --locked \
    --features dynostore --root "$TANSU_CACHE" >&2; then
    rm -rf "$target"
    return 0
  fi
  rm -rf "$target"
  return 1
}

start_tansu() {
  local port i
  port="$(free_port)"
  TANSU_DIR="$(mktemp -d "${TMPDIR:-/tmp}/evt-tansu.XXXXXX")"
  "$TANSU_BIN" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "memory://tansu/" >"$TANSU_DIR/broker.log" 2>&1 &
  TANSU_PID=$!
  for i in $(seq 1 300); do
    if ! kill -0 "$TANSU_PID" 2>/dev/null; then
      echo "tansu exited at start:" >&2
      cat "$TANSU_DIR/broker.log" >&2
      TANSU_PID=""
      return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      export EVT_KAFKA_BOOTSTRAP="127.0.0.1:$port"
      echo "tansu $TANSU_VERSION (Kafka API) on $EVT_KAFKA_BOOTSTRAP (pid $TANSU_PID)" >&2
      return 0
    fi
    sleep 0.1
  done
  echo "tansu did not start listening:" >&2
  cat "$TANSU_DIR/broker.log" >&2
  return 1
}

if wants kafka; then
  # The binary is wanted even with EVT_KAFKA_BOOTSTRAP set: event-kafka's own broker tests start
  # (and kill) brokers of their own.
  if install_tansu; then
    export EVT_TANSU_BIN="$TANSU_BIN"
  fi
  if [ -z "${EVT_KAFKA_BOOTSTRAP:-}" ] && ! { [ -n "${EVT_TANSU_BIN:-}" ] && start_tansu; }; then
    stop_tansu
    if [ -n "${CI:-}" ]; then
      echo "error: the tansu Kafka broker could not be built or started; CI must run the Kafka" >&2
      echo "       broker tests. Set EVT_KAFKA_BOOTSTRAP to use another broker." >&2
      exit 1
    fi
    echo "warning: no Kafka broker (tansu); the Kafka broker tests are skipped" >&2
  fi
  if [ -z "${EVT_TANSU_BIN:-}" ] && [ -n "${CI:-}" ]; then
    echo "error: tansu could not be built; CI must run event-kafka's broker tests." >&2
    exit 1
  fi
fi
