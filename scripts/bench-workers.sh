#!/usr/bin/env bash
# Media workers and batched sends, in one run (docs/benchmarks.md, issue 16):
#  1. subscribers at 2.5 Mbit/s over two rooms on a server with 1 and with 2 media
#     workers, for each N in $SUBSCRIBERS: what each subscriber got, loss, CPU;
#  2. CPU per forwarded packet with batched UDP system calls off and on, at $BATCH_N
#     subscribers in one room.
# Release build; the load test shares the machine's cores with the server. The
# server-made ladder is off: one layer, so what a subscriber gets is the feed or
# less of it.
set -euo pipefail
cd "$(dirname "$0")/.."

SUBSCRIBERS="${SUBSCRIBERS:-100 200 300}"
WORKERS="${WORKERS-1 2}"   # empty: skip the workers runs
BATCH_N="${BATCH_N:-50}"   # 0: skip the batching comparison
DURATION="${DURATION:-20s}"
BIN="${BIN:-target/release}"
HTTP_PORT="${HTTP_PORT:-18580}"
UDP_PORT="${UDP_PORT:-18581}"
SECRET="bench-secret-0123456789abcdef"
OUT=target/bench
mkdir -p "$OUT"

serve() {  # serve ARGS...: starts a server, waits until it answers
  DATA=$(mktemp -d)
  RUST_LOG=warn "$BIN/casecast" serve --listen "127.0.0.1:$HTTP_PORT" --udp-bind "127.0.0.1:$UDP_PORT" \
    --advertise 127.0.0.1 --secret "$SECRET" --data-dir "$DATA" --room-max-participants 1000 --room-feed-ladder off "$@" \
    > "$OUT/workers-server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null && return; sleep 0.1; done
  echo "the server did not start" >&2; exit 1
}
stop() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$DATA"; }
trap stop EXIT

summary() {  # summary FILE LABEL
  python3 - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); a, s = r["aggregate"], r["server"] or {}
sent = r["publisher"]["video_kbps"]
share = (a["video_kbps_min"] or 0) / sent * 100 if sent else 0
calls, dg = s.get("udp_send_calls"), s.get("udp_datagrams_sent")
print(f'{sys.argv[2]}: {a["receiving"]}/{r["config"]["subscribers"]} receiving; worst share of the feed {share:.1f} %, '
      f'median {a["video_kbps_median"]:.0f} kbit/s; worst loss {a["video_loss_pct_max"]} %; '
      f'server CPU {s.get("cpu_percent_of_core", 0):.0f} % of a core, {s.get("cpu_us_per_forwarded_packet", 0):.2f} µs per forwarded packet; '
      f'{(dg or 0) / (calls or 1):.2f} datagrams per send call; forward latency p99 {s.get("forward_latency_p99_ms", 0):.1f} ms')
PY
}

for workers in $WORKERS; do
  for n in $SUBSCRIBERS; do
    serve --media-workers "$workers"
    "$BIN/casecast-loadtest" --url "http://127.0.0.1:$HTTP_PORT" --secret "$SECRET" --rooms 2 --room "w$workers" \
      --subscribers "$n" --duration "$DURATION" --ramp 20ms --warmup-timeout 30s --json > "$OUT/workers-$workers-$n.json" 2> "$OUT/workers-$workers-$n.err" || true
    summary "$OUT/workers-$workers-$n.json" "$workers worker(s), $n subscribers in 2 rooms"
    stop
  done
done

[ "$BATCH_N" -gt 0 ] || exit 0
for batching in false true; do
  serve --media-workers 1 --udp-batching "$batching"
  "$BIN/casecast-loadtest" --url "http://127.0.0.1:$HTTP_PORT" --secret "$SECRET" --room "batch-$batching" \
    --subscribers "$BATCH_N" --duration "$DURATION" --json > "$OUT/batching-$batching.json" 2> "$OUT/batching-$batching.err" || true
  summary "$OUT/batching-$batching.json" "udp_batching $batching, $BATCH_N subscribers"
  stop
done
