#!/usr/bin/env bash
# Forwarding benchmark: a release `casecast serve` on loopback, one 2.5 Mbit/s VP8 +
# Opus publisher and N WHEP subscribers (str0m), for each N in $SUBSCRIBERS; then
# join/leave cycles for the leak check. Results go to stdout (text) and
# target/bench/*.json. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

SUBSCRIBERS="${SUBSCRIBERS:-10 25 50}"
DURATION="${DURATION:-30s}"
CYCLES="${CYCLES:-1000}"
HTTP_PORT="${HTTP_PORT:-18480}"
UDP_PORT="${UDP_PORT:-18481}"
SECRET="bench-secret-0123456789abcdef"
BIN="${BIN:-target/release}"  # another build's binaries, to compare with
OUT=target/bench
mkdir -p "$OUT"
DATA=$(mktemp -d)

RUST_LOG=warn "$BIN/casecast" serve --listen "127.0.0.1:$HTTP_PORT" --udp-bind "127.0.0.1:$UDP_PORT" \
  --advertise 127.0.0.1 --secret "$SECRET" --data-dir "$DATA" --room-max-participants 1000 \
  > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null && break
  sleep 0.1
done

for n in $SUBSCRIBERS; do
  echo "== $n subscribers, $DURATION"
  "$BIN/casecast-loadtest" --url "http://127.0.0.1:$HTTP_PORT" --secret "$SECRET" --room "bench-$n" \
    --subscribers "$n" --duration "$DURATION" --json > "$OUT/forwarding-$n.json"
  python3 - "$OUT/forwarding-$n.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s, a = r["server"], r["aggregate"]
print(json.dumps({"subscribers": r["config"]["subscribers"], "server": s, "aggregate": a}, indent=1))
PY
done

[ "$CYCLES" -gt 0 ] || exit 0
echo "== $CYCLES join/leave cycles"
"$BIN/casecast-loadtest" --url "http://127.0.0.1:$HTTP_PORT" --secret "$SECRET" --room bench-cycles \
  --subscribers 1 --duration 5s --cycles "$CYCLES" --json > "$OUT/cycles.json"
python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["cycles"], indent=1))' "$OUT/cycles.json"
