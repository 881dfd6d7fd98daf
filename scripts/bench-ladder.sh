#!/usr/bin/env bash
# Server-made ladder benchmark: the CPU a room's ladder costs the server (decoding
# a one-layer 1280×720 30 fps feed once, and making 960×540 and 640×360 of it),
# for VP8 and H.264 feeds, measured as the server's CPU time with the ladder on
# minus with it off, in the same run.
#
# For each codec and each setting: a release `casecast serve` on loopback, a
# `casecast publish` test pattern (2.5 Mbit/s) over WHIP in its own process, and
# one WHEP subscriber so the frames go somewhere; the server's utime + stime are
# read from /proc over $SECONDS_MEASURED s after a warm-up. With the ladder on, the
# rungs' frame rates are read from casecast_ladder_frames_total as well.
# Results go to stdout and target/bench/ladder.json. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_MEASURED="${SECONDS_MEASURED:-30}"
WARMUP="${WARMUP:-5}"
HTTP_PORT="${HTTP_PORT:-18680}"
UDP_PORT="${UDP_PORT:-18681}"
CODECS="${CODECS:-vp8 h264}"
source scripts/bench-common.sh
metric() { curl -s "http://127.0.0.1:$((HTTP_PORT + 2))/metrics" | awk -v m="$1" 'index($0, m) == 1 { print $2 }' || true; }

# run CODEC LADDER → "cpu_percent rung540_fps rung360_fps"
run() {
  local codec=$1 ladder=$2 url="http://127.0.0.1:$HTTP_PORT"
  rm -rf "$WORK/data"
  RUST_LOG=warn "$BIN/casecast" serve --listen "127.0.0.1:$HTTP_PORT" --udp-bind "127.0.0.1:$UDP_PORT" \
    --advertise 127.0.0.1 --secret "$SECRET" --data-dir "$WORK/data" --room-feed-ladder "$ladder" --metrics-listen "127.0.0.1:$((HTTP_PORT + 2))" \
    > "$OUT/ladder-server-$codec-$ladder.log" 2>&1 &
  local server=$!
  PIDS+=($server)
  for _ in $(seq 100); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.1; done
  token() { "$BIN/casecast" token --secret "$SECRET" --room bench --role "$1" --name "$2"; }
  RUST_LOG=warn "$BIN/casecast" publish --whip "$url/whip/bench" --token "$(token encoder feed)" \
    --codec "$codec" --bitrate 2500000 > "$OUT/ladder-feed.log" 2>&1 &
  PIDS+=($!)
  RUST_LOG=warn "$BIN/casecast" watch --whep "$url/whep/bench" --token "$(token viewer viewer)" \
    --duration "$((SECONDS_MEASURED + WARMUP + 60))s" > /dev/null 2> "$OUT/ladder-viewer.log" &
  PIDS+=($!)
  # Until the feed arrives (and, with the ladder, its rungs are made), bounded.
  local ready=0
  for _ in $(seq 120); do
    local got made
    got=$(metric 'casecast_rtp_packets_received_total')
    made=$(metric 'casecast_ladder_frames_total{layer="360p"}')
    if [ "$ladder" = off ]; then made=100; fi
    if python3 -c "import sys; sys.exit(0 if float('${got:-0}') > 500 and float('${made:-0}') > 30 else 1)"; then ready=1; break; fi
    sleep 0.5
  done
  # (run is called in a subshell, which does not inherit the EXIT trap.)
  [ "$ready" = 1 ] || { echo "the room did not come up ($codec, ladder $ladder); see $OUT/ladder-*.log" >&2; cleanup; exit 1; }
  sleep "$WARMUP"
  local start m540 m360 end n540 n360
  start=$(cpu_seconds $server)
  m540=$(metric 'casecast_ladder_frames_total{layer="540p"}'); m360=$(metric 'casecast_ladder_frames_total{layer="360p"}')
  sleep "$SECONDS_MEASURED"
  end=$(cpu_seconds $server)
  n540=$(metric 'casecast_ladder_frames_total{layer="540p"}'); n360=$(metric 'casecast_ladder_frames_total{layer="360p"}')
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
  python3 -c "print(round(($end - $start) * 100 / $SECONDS_MEASURED, 1), round((${n540:-0} - ${m540:-0}) / $SECONDS_MEASURED, 1), round((${n360:-0} - ${m360:-0}) / $SECONDS_MEASURED, 1))"
}

json="{\"seconds\": $SECONDS_MEASURED"
for codec in $CODECS; do
  read -r off _ _ < <(run "$codec" off)
  read -r on fps540 fps360 < <(run "$codec" 540,360)
  cost=$(python3 -c "print(round($on - $off, 1))")
  echo "$codec 720p30 feed: server ${off} % of a core without the ladder, ${on} % with it: the ladder costs ${cost} % of a core (rungs at ${fps540} and ${fps360} fps)"
  json+=", \"$codec\": {\"off_percent\": $off, \"on_percent\": $on, \"ladder_percent\": $cost, \"fps_540p\": $fps540, \"fps_360p\": $fps360}"
done
echo "$json}" > "$OUT/ladder.json"
