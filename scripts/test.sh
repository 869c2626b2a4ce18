#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what is missing, runs every test of the
# workspace (unit, integration, compile-fail, property, doc tests), and exits non-zero on failure.
#
# Real engines: a NATS server with JetStream (Debian's nats-server) is installed if missing and
# started on a free loopback port with a temporary store; EVT_NATS_URL points the conformance
# suite at it and EVT_NATS_SERVER lets the engine's own tests start (and kill) servers of their
# own. The server is stopped on exit, failure included. With EVT_NATS_URL already set, that
# server is used and none is started. Without nats-server (and no way to install it) the NATS
# tests are skipped, except under CI, where this is an error.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (rustup toolchain)" >&2
  exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
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

install_nats_server() {
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
  echo "installing nats-server (apt-get)" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    nats-server >&2 || return 1
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
trap stop_nats EXIT
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

NATS_BIN="$(find_nats_server || true)"
if [ -z "$NATS_BIN" ] && install_nats_server; then
  NATS_BIN="$(find_nats_server || true)"
fi
if [ -n "$NATS_BIN" ]; then
  export EVT_NATS_SERVER="$NATS_BIN"
  if [ -z "${EVT_NATS_URL:-}" ]; then
    start_nats "$NATS_BIN"
  fi
elif [ -z "${EVT_NATS_URL:-}" ]; then
  if [ -n "${CI:-}" ]; then
    echo "error: nats-server is not installed and cannot be (apt-get needs root or passwordless sudo);" >&2
    echo "       CI must run the NATS JetStream tests. Install nats-server or set EVT_NATS_URL." >&2
    exit 1
  fi
  echo "warning: nats-server is not installed and cannot be; the NATS JetStream tests are skipped" >&2
fi

scripts/install-chromium.sh # chromium for event-build's catalog_browser test (it fails without it under CI)

# --- Tests ---------------------------------------------------------------------------------------

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Unit, integration, compile-fail (trybuild) and property tests.
cargo nextest run --workspace --no-fail-fast
# nextest does not run doc tests; the crate docs' examples are tests too.
cargo test --workspace --doc
