#!/usr/bin/env bash
# Connection-limit and SSE-memory bench (not run in CI): serves crates/vibetuner/examples/
# limits_bench.rs on 127.0.0.1 and reports
#   1. /health/ping latency from 127.0.0.2 while 127.0.0.1 holds 2,000 half-open connections
#      (request line sent, headers never finished), with the server's open-file limit at 1,024
#      (systemd's default soft limit, the issue's setting) and at 65,536 (the NixOS unit's, or the
#      hard limit when lower);
#   2. the server's RSS with 1,000 idle SSE clients (Last-Event-ID: 0, never reading) before and
#      after five 2 MB events.
# Usage: scripts/bench-limits.sh   (CARGO_TARGET_DIR and PROFILE=release|dev are honoured)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-release}
flag=$([ "$profile" = release ] && echo --release || true)
cargo build -q -p vibetuner --example limits_bench $flag
bin=${CARGO_TARGET_DIR:-target}/$([ "$profile" = release ] && echo release || echo debug)/examples/limits_bench
data=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$data"; }
trap cleanup EXIT

# start NOFILE PORT ENV...: the server in the background with that open-file limit.
start() {
  local nofile=$1 port=$2
  shift 2
  (ulimit -n "$nofile" && exec env DATA_DIR="$data" PORT="$port" HEADER_READ_TIMEOUT=60 "$@" "$bin") \
    >"$data/server-$port.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health/ping" >/dev/null && return; sleep 0.1; done
  echo "server did not start; see $data/server-$port.log" >&2; exit 1
}
stop() { kill "$server"; wait "$server" 2>/dev/null || true; server=""; }
rss() { awk '/VmRSS/ {printf "%.0f MB", $2/1024}' "/proc/$server/status"; }

client=$(cat <<'PY'
import asyncio, socket, sys, time, statistics
port, mode, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])

async def ping():
    t = time.perf_counter()
    r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
    w.write(b"GET /health/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await r.read()
    w.close()
    return (time.perf_counter() - t) * 1000, data.split(b"\r\n", 1)[0].decode()

async def open_many(request):
    conns = []
    for _ in range(n):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(request)
            conns.append((r, w))
        except OSError as e:
            print("client could not connect:", e); break
    await asyncio.sleep(1)
    return conns

async def main():
    if mode == "halfopen":
        conns = await open_many(b"GET /health/ping HTTP/1.1\r\nHost: x\r\n")
        await asyncio.sleep(1)
        async def is_open(r):
            try:
                return len(await asyncio.wait_for(r.read(100), 0.5)) < 0
            except asyncio.TimeoutError:
                return True
            except OSError:
                return False
        open_ = sum(await asyncio.gather(*(is_open(r) for r, w in conns)))
        samples = [await ping() for _ in range(20)]
        times = sorted(s[0] for s in samples)
        statuses = sorted(set(s[1] for s in samples))
        print(f"  {len(conns)} half-open sent, {open_} still open; /health/ping x20: "
              f"median {statistics.median(times):.1f} ms, max {times[-1]:.1f} ms, {statuses}")
    else:
        req = (b"GET /events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 0\r\n\r\n")
        conns = await open_many(req)
        print(f"  {len(conns)} SSE clients connected (not reading)", flush=True)
        sys.stdout.flush()
        await asyncio.sleep(3600)

asyncio.run(main())
PY
)

echo "1. 2,000 half-open connections"
# 65,536 as in the NixOS unit, or the hard limit when lower.
high=$(ulimit -Hn)
[ "$high" = unlimited ] || [ "$high" -gt 65536 ] && high=65536
port=18430
for nofile in 1024 "$high"; do
  port=$((port + 1))
  echo " open-file limit $nofile, attacker 127.0.0.1 untrusted (MAX_CONNECTIONS_PER_IP=100):"
  start "$nofile" "$port" TRUSTED_PROXIES=""
  (ulimit -n 8192; python3 -c "$client" "$port" halfopen 2000)
  echo "  server RSS $(rss); refusal log lines (at most one per 10 s): $(grep -c 'connection refused' "$data/server-$port.log" || true)"
  stop
done
echo " open-file limit $high, attacker 127.0.0.1 a trusted proxy (no per-address cap):"
start "$high" 18433
(ulimit -n 8192; python3 -c "$client" 18433 halfopen 2000)
echo "  server RSS $(rss)"
stop

echo "2. 1,000 idle SSE clients and 2 MB events"
start "$high" 18434 SSE_MAX_SUBSCRIBERS_PER_IP=5000 SSE_BUFFER_SIZE=100
echo "  RSS at start: $(rss)"
for _ in 1 2 3 4 5; do curl -sf "http://127.0.0.1:18434/broadcast/2000000" >/dev/null; done
echo "  RSS with five 2 MB events buffered, no clients: $(rss)"
(ulimit -n 8192; exec python3 -c "$client" 18434 sse 1000) &
clients=$!
sleep 8
echo "  RSS with 1,000 clients replaying (Last-Event-ID: 0): $(rss)"
for _ in 1 2 3 4 5; do curl -sf "http://127.0.0.1:18434/broadcast/2000000" >/dev/null; done
sleep 3
echo "  RSS after five more 2 MB events: $(rss)"
echo "  subscribers disconnected as too slow: $(grep -c 'too slow' "$data/server-18434.log" || true)"
kill "$clients" 2>/dev/null || true
stop
