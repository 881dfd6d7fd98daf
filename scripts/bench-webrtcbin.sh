#!/usr/bin/env bash
# WHEP subscribers from another WebRTC stack: a `casecast serve` on loopback, the
# 2.5 Mbit/s VP8 + Opus test pattern published over WHIP by GStreamer's webrtcbin
# (`casecast publish`, webrtcbin's own RSA DTLS certificate), and N webrtcbin WHEP
# viewers (`casecast watch`, one process) for each N in $VIEWERS. Each viewer's
# received bitrate is compared with what the server took in from the publisher
# over the same time (`casecast_rtp_bytes_received_total`). Results go to stdout and
# target/bench/webrtcbin-N.json. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

VIEWERS="${VIEWERS:-10 25 50}"
DURATION="${DURATION:-30s}"
HTTP_PORT="${HTTP_PORT:-18490}"
UDP_PORT="${UDP_PORT:-18491}"
SECRET="bench-secret-0123456789abcdef"
BIN="${BIN:-target/release}"
OUT=target/bench
mkdir -p "$OUT"
DATA=$(mktemp -d)
URL="http://127.0.0.1:$HTTP_PORT"

RUST_LOG=warn "$BIN/casecast" serve --listen "127.0.0.1:$HTTP_PORT" --udp-bind "127.0.0.1:$UDP_PORT" \
  --advertise 127.0.0.1 --secret "$SECRET" --data-dir "$DATA" --room-max-participants 1000 \
  > "$OUT/webrtcbin-server.log" 2>&1 &
SERVER=$!
PUB=""
trap 'kill $SERVER $PUB 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do
  curl -sf "$URL/healthz" >/dev/null && break
  sleep 0.1
done
token() { "$BIN/casecast" token --secret "$SECRET" --data-dir "$DATA" "$@"; }
SCRAPE=$(token --scrape)
bytes_in() {
  curl -sf -H "Authorization: Bearer $SCRAPE" "$URL/metrics" | awk '$1 == "casecast_rtp_bytes_received_total" { print $2 }'
}

for n in $VIEWERS; do
  room="webrtcbin-$n"
  "$BIN/casecast" publish --whip "$URL/whip/$room" --token "$(token --room "$room" --role encoder --name feed)" \
    > "$OUT/webrtcbin-publisher-$n.log" 2>&1 &
  PUB=$!
  # Measure once the feed flows: the server's counter moves (at most 30 s).
  start=$(bytes_in)
  for _ in $(seq 300); do
    [ "$(bytes_in)" != "$start" ] && break
    sleep 0.1
  done
  [ "$(bytes_in)" != "$start" ] || { echo "the publisher's feed never reached the server" >&2; exit 1; }
  echo "== $n webrtcbin viewers, $DURATION"
  b0=$(bytes_in); t0=$(date +%s.%N)
  tokens=()
  for i in $(seq "$n"); do tokens+=(--token "$(token --room "$room" --role viewer --name "watcher $i")"); done
  "$BIN/casecast" watch --whep "$URL/whep/$room" "${tokens[@]}" \
    --count "$n" --duration "$DURATION" > "$OUT/webrtcbin-$n.json" 2> "$OUT/webrtcbin-watch-$n.log"
  b1=$(bytes_in); t1=$(date +%s.%N)
  kill "$PUB"; wait "$PUB" 2>/dev/null || true; PUB=""
  python3 - "$OUT/webrtcbin-$n.json" "$b0" "$b1" "$t0" "$t1" <<'PY'
import json, sys
path, b0, b1, t0, t1 = sys.argv[1], *map(float, sys.argv[2:])
r = json.load(open(path))
feed = (b1 - b0) * 8 / (t1 - t0)
per = r["per_viewer_bitrate_bps"]
r["feed_bitrate_bps"] = round(feed)
r["viewers_at_95_percent"] = sum(1 for b in per if b >= 0.95 * feed)
r["worst_share_of_feed"] = round(min(per) / feed, 3) if per else 0
json.dump(r, open(path, "w"), indent=1)
print(json.dumps({k: v for k, v in r.items() if k != "per_viewer_bitrate_bps"}, indent=1))
PY
done
