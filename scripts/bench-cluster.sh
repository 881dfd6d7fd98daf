#!/usr/bin/env bash
# Joins through a node that does not hold the room (docs/benchmarks.md, issue 16):
# Redis and two release nodes on loopback; the room is placed on node A; N WHEP
# subscribers join it through node B (each sent to A with a 307) and, for
# comparison, N more straight at A. Reports the time from a subscriber's start to
# its first video frame, p50 and p99.
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-100}"
BIN="${BIN:-target/release}"
SECRET="bench-secret-0123456789abcdef"
OUT=target/bench
mkdir -p "$OUT"
REDIS_PORT=18690
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no > "$OUT/cluster-redis.log" 2>&1 &
REDIS=$!
DATA_A=$(mktemp -d); DATA_B=$(mktemp -d)
start() {  # start NAME HTTP UDP DATA
  RUST_LOG=warn "$BIN/casecast" serve --listen "127.0.0.1:$2" --udp-bind "127.0.0.1:$3" --advertise 127.0.0.1 \
    --secret "$SECRET" --data-dir "$4" --redis-url "redis://127.0.0.1:$REDIS_PORT/0" --media-workers 1 \
    --room-max-participants 1000 --room-feed-ladder off > "$OUT/cluster-$1.log" 2>&1 &
  echo $!
}
sleep_until_up() { for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return; sleep 0.1; done; exit 1; }
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
A=$(start a 18680 18681 "$DATA_A"); B=$(start b 18684 18685 "$DATA_B")
trap 'kill $A $B $REDIS 2>/dev/null || true; rm -rf "$DATA_A" "$DATA_B"' EXIT
sleep_until_up 18680; sleep_until_up 18684

# Node A takes the room (a WHEP offer it refuses still places the room there).
TOKEN=$("$BIN/casecast" token --secret "$SECRET" --data-dir "$DATA_A" --room cluster --role viewer --name placer)
curl -s -o /dev/null -X POST -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/sdp" --data 'v=0' http://127.0.0.1:18680/whep/cluster

for via in b a; do
  url=$([ "$via" = b ] && echo http://127.0.0.1:18684 || echo http://127.0.0.1:18680)
  "$BIN/casecast-loadtest" --url "$url" --secret "$SECRET" --room cluster --subscribers "$N" --duration 5s \
    --ramp 50ms --json > "$OUT/cluster-via-$via.json" 2> "$OUT/cluster-via-$via.err" || true
  python3 - "$OUT/cluster-via-$via.json" "$via" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = sorted(s["first_frame_ms"] for s in r["subscribers"] if s["first_frame_ms"] is not None)
q = lambda p: t[min(len(t) - 1, int(p * len(t)))]
via = "through node B (307 to A)" if sys.argv[2] == "b" else "straight at node A"
print(f'{via}: {len(t)}/{len(r["subscribers"])} got video; first frame p50 {q(0.5):.0f} ms, p99 {q(0.99):.0f} ms, max {t[-1]:.0f} ms')
PY
done
