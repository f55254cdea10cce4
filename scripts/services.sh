#!/usr/bin/env bash
# Starts (or stops) the services the test suite talks to, on 127.0.0.1 and free ports:
# Redis (redis-server from apt), a MongoDB wire-protocol server (SecantusDB from PyPI; no
# MongoDB binary is packaged for Debian) and a second, independent one (nx-27017 from PyPI) for
# the store's cross-server comparison. Prints `export` lines to eval:
#   eval "$(scripts/services.sh start)"   ...   scripts/services.sh stop
# A variable already set (TEST_MONGODB_URL, TEST_MONGODB_SECOND_URL, TEST_REDIS_URL) means "use
# that one": nothing starts.
set -euo pipefail
cd "$(dirname "$0")/.."
state="${VIBETUNER_SERVICES_DIR:-$PWD/target/test-services}"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() {
  local port=$1 name=$2 log=$3
  for _ in $(seq 1 150); do
    if python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1', $port)))" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "error: $name did not start listening on 127.0.0.1:$port within 15 s; its log:" >&2
  tail -n 30 "$log" >&2 || true
  exit 1
}

start() {
  mkdir -p "$state"
  stop # a previous run's servers, if any
  if [ -z "${TEST_REDIS_URL:-}" ]; then
    command -v redis-server >/dev/null || { echo "error: redis-server not found; run scripts/prerequisites.sh" >&2; exit 1; }
    local port; port=$(free_port)
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
      --dir "$state" --logfile "$state/redis.log" --daemonize no >/dev/null 2>&1 &
    echo $! > "$state/redis.pid"
    wait_for_port "$port" redis-server "$state/redis.log"
    echo "export TEST_REDIS_URL=redis://127.0.0.1:$port"
  fi
  if [ -z "${TEST_MONGODB_URL:-}" ]; then
    command -v secantusd-py >/dev/null || { echo "error: secantusd-py not found; run scripts/prerequisites.sh (pip install SecantusDB)" >&2; exit 1; }
    local port; port=$(free_port)
    rm -rf "$state"/mongo.*
    local data; data=$(mktemp -d "$state/mongo.XXXXXX")
    # A smaller WiredTiger cache than the 1 GiB default. (SecantusDB sweeps TTL indexes every 60 s,
    # like mongod; its ttl_sweep_seconds setting is not wired to the daemon in 0.7.0b3.)
    printf '[storage]\ncache_size = "256M"\n' > "$state/secantusd.toml"
    secantusd-py --config "$state/secantusd.toml" --host 127.0.0.1 --port "$port" \
      --storage-path "$data" --log-level WARNING >"$state/mongo.log" 2>&1 &
    echo $! > "$state/mongo.pid"
    wait_for_port "$port" secantusd-py "$state/mongo.log"
    echo "export TEST_MONGODB_URL=mongodb://127.0.0.1:$port"
  fi
  if [ -z "${TEST_MONGODB_SECOND_URL:-}" ]; then
    command -v nx-27017 >/dev/null || { echo "error: nx-27017 not found; run scripts/prerequisites.sh (pip install nx-27017)" >&2; exit 1; }
    local port; port=$(free_port)
    rm -rf "$state"/nx.*
    local data; data=$(mktemp -d "$state/nx.XXXXXX")
    nx-27017 --host 127.0.0.1 --port "$port" --data-dir "$data" --log-file "$state/nx.log" \
      --pid-file "$data/nx.pid" >"$state/nx.out" 2>&1 &
    echo $! > "$state/second.pid"
    wait_for_port "$port" nx-27017 "$state/nx.log"
    echo "export TEST_MONGODB_SECOND_URL=mongodb://127.0.0.1:$port"
  fi
}

stop() {
  for name in redis mongo second; do
    local pidfile="$state/$name.pid"
    if [ -f "$pidfile" ]; then
      local pid; pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$pidfile"
    fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: scripts/services.sh start|stop" >&2; exit 2 ;;
esac
