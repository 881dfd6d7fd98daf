#!/usr/bin/env bash
# Program benchmark: CPU seconds per minute of a 720p30 program (the feed and four
# commentators, picture-in-picture with name labels, x264 veryfast 3 Mbit/s, AAC,
# HLS), made by casecast's compositor from a live room, next to ffmpeg making the
# same layout with the same x264 settings from the same inputs, in the same run.
#
# 1. The inputs are recorded once with GStreamer, as the live publishers make them:
#    the feed VP8 1280×720 at 30 fps 2.5 Mbit/s, a commentator VP8 320×240 at 5 fps
#    300 kbit/s, both with Opus.
# 2. casecast: a release `casecast serve` on loopback, the feed and four commentators
#    publishing live (WHIP), and `casecast compositor` alone in its own process;
#    its CPU time is read from /proc over $SECONDS_MEASURED s after a warm-up.
# 3. ffmpeg: the recorded inputs read at their real rate (-re), overlay + drawtext +
#    amix, libx264 (the same library x264enc uses) with the same settings, HLS;
#    its CPU time (user + system) for the same number of seconds of output.
# Results go to stdout and target/bench/program.json. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_MEASURED="${SECONDS_MEASURED:-60}"
WARMUP="${WARMUP:-5}"
HTTP_PORT="${HTTP_PORT:-18580}"
UDP_PORT="${UDP_PORT:-18581}"
source scripts/bench-common.sh

# ONLY=casecast measures the compositor alone (no recording, no ffmpeg).
ONLY="${ONLY:-}"

# ---- 1. the inputs, recorded once
if [ "$ONLY" != casecast ]; then
LEN=$((SECONDS_MEASURED + WARMUP + 10))
echo "== recording the inputs (${LEN} s each)"
gst-launch-1.0 -q webmmux name=m ! filesink location="$WORK/feed.webm" \
  videotestsrc pattern=smpte horizontal-speed=2 num-buffers=$((LEN * 30)) ! video/x-raw,width=1280,height=720,framerate=30/1 \
  ! clockoverlay time-format="%H:%M:%S" valignment=center halignment=center font-desc="Sans Bold 72" \
  ! videoconvert ! vp8enc deadline=1 cpu-used=8 threads=2 target-bitrate=2500000 keyframe-max-dist=60 ! m. \
  audiotestsrc wave=ticks volume=0.3 num-buffers=$((LEN * 48000 / 1024)) ! audioconvert ! audioresample ! opusenc bitrate=32000 ! m.
gst-launch-1.0 -q webmmux name=m ! filesink location="$WORK/commentator.webm" \
  videotestsrc pattern=ball num-buffers=$((LEN * 5)) ! video/x-raw,width=320,height=240,framerate=5/1 \
  ! videoconvert ! vp8enc deadline=1 cpu-used=8 target-bitrate=300000 keyframe-max-dist=10 ! m. \
  audiotestsrc wave=sine freq=330 volume=0.2 num-buffers=$((LEN * 48000 / 1024)) ! audioconvert ! audioresample ! opusenc bitrate=32000 ! m.
fi

# ---- 2. casecast
echo "== casecast: live room, compositor in its own process"
RUST_LOG=warn "$BIN/casecast" serve --listen "127.0.0.1:$HTTP_PORT" --udp-bind "127.0.0.1:$UDP_PORT" \
  --advertise 127.0.0.1 --secret "$SECRET" --data-dir "$WORK/data" --metrics-token "$SECRET" > "$OUT/program-server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null && break; sleep 0.1; done
URL="http://127.0.0.1:$HTTP_PORT"
token() { "$BIN/casecast" token --secret "$SECRET" --room bench --role "$1" --name "$2"; }
RUST_LOG=warn "$BIN/casecast" publish --whip "$URL/whip/bench" --token "$(token encoder feed)" \
  > "$OUT/program-feed.log" 2>&1 &
PIDS+=($!)
for i in 1 2 3 4; do
  RUST_LOG=warn "$BIN/casecast" publish --whip "$URL/whip/bench" --token "$(token commentator "Commentator $i")" \
    --width 320 --height 240 --fps 5 --bitrate 300000 > "$OUT/program-commentator-$i.log" 2>&1 &
  PIDS+=($!)
done
RUST_LOG=warn "$BIN/casecast" compositor --url "$URL" --room bench --token "$(token operator program)" \
  --hls-dir "$WORK/hls" --local-address 127.0.0.1 --metrics-listen "127.0.0.1:$((HTTP_PORT + 2))" ${COMPOSITOR_ARGS:-} \
  > "$OUT/program-compositor.log" 2>&1 &
COMPOSITOR=$!
PIDS+=($COMPOSITOR)
# Warm-up: until the compositor encodes at full rate with the four commentators in
# the room (bounded), then $WARMUP s more for the pipeline to settle.
metric() { curl -s -H "Authorization: Bearer $SECRET" "$1/metrics" | awk -v m="$2" 'index($0, m) == 1 { print $2 }' || true; } # not up yet: empty
ready=0
for _ in $(seq 120); do
  fps=$(metric "http://127.0.0.1:$((HTTP_PORT + 2))" 'casecast_program_fps{room="bench"}')
  in_room=$(metric "$URL" 'casecast_participants{role="commentator"}')
  if python3 -c "import sys; sys.exit(0 if float('${fps:-0}') > 25 and float('${in_room:-0}') >= 4 else 1)"; then ready=1; break; fi
  sleep 0.5
done
[ "$ready" = 1 ] || { echo "the room did not come up (fps ${fps:-?}, commentators ${in_room:-?}); see $OUT/program-*.log" >&2; exit 1; }
sleep "$WARMUP"
start=$(cpu_seconds $COMPOSITOR)
frames0=$(curl -s "http://127.0.0.1:$((HTTP_PORT + 2))/metrics" | awk '/^casecast_program_frames_total/ { print $2 }')
sleep "$SECONDS_MEASURED"
end=$(cpu_seconds $COMPOSITOR)
frames1=$(curl -s "http://127.0.0.1:$((HTTP_PORT + 2))/metrics" | awk '/^casecast_program_frames_total/ { print $2 }')
commentators=$(curl -s -H "Authorization: Bearer $SECRET" "$URL/metrics" | awk '/^casecast_participants\{role="commentator"\}/ { print $2 }')
casecast_cpu=$(python3 -c "print(round(($end - $start) * 60 / $SECONDS_MEASURED, 1))")
casecast_fps=$(python3 -c "print(round((${frames1:-0} - ${frames0:-0}) / $SECONDS_MEASURED, 1))")
cp "$(ls "$WORK"/hls/seg-*.ts | tail -1)" "$OUT/program-casecast-last.ts" 2>/dev/null || true
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
PIDS=()
echo "casecast compositor: $casecast_cpu CPU-s per minute, $casecast_fps fps, commentators in the room: ${commentators:-0}"
[ "$ONLY" != casecast ] || exit 0

# ---- 3. ffmpeg, the same layout and settings from the same inputs
echo "== ffmpeg: the same program from the recorded inputs"
mkdir -p "$WORK/ffmpeg"
label() { # drawtext for a label at the bottom-left of a tile at x, tile bottom y
  echo "drawtext=text='$1':x=$(($2 + 8)):y=$(($3 - 8))-th:fontsize=15:fontcolor=white:box=1:boxcolor=black@0.5"
}
filter="[0:v]fps=30[f];"
for i in 1 2 3 4; do filter+="[$i:v]scale=256:144[c$i];"; done
filter+="[f][c1]overlay=16:560[v1];[v1][c2]overlay=288:560[v2];[v2][c3]overlay=560:560[v3];[v3][c4]overlay=832:560,"
filter+="$(label 'Commentator 1' 16 704),$(label 'Commentator 2' 288 704),$(label 'Commentator 3' 560 704),$(label 'Commentator 4' 832 704)[v];"
filter+="[0:a][1:a][2:a][3:a][4:a]amix=inputs=5[a]"
ffmpeg_cpu=$(python3 - "$WORK" "$SECONDS_MEASURED" "$filter" <<'PY'
import resource, subprocess, sys
work, seconds, graph = sys.argv[1], sys.argv[2], sys.argv[3]
inputs = ["-re", "-i", f"{work}/feed.webm"] + sum((["-re", "-i", f"{work}/commentator.webm"] for _ in range(4)), [])
cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *inputs, "-filter_complex", graph,
       "-map", "[v]", "-map", "[a]", "-t", seconds,
       "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-b:v", "3M", "-g", "180",
       "-bf", "0", "-profile:v", "main", "-pix_fmt", "yuv420p",
       "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2",
       "-f", "hls", "-hls_time", "6", "-hls_list_size", "0", f"{work}/ffmpeg/index.m3u8"]
subprocess.run(cmd, check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(round((r.ru_utime + r.ru_stime) * 60 / float(seconds), 1))
PY
)
echo "ffmpeg: $ffmpeg_cpu CPU-s per minute"
ratio=$(python3 -c "print(round($casecast_cpu / $ffmpeg_cpu, 2))")
echo "casecast / ffmpeg = $ratio (target at most 1.0)"
cat > "$OUT/program.json" <<JSON
{"seconds": $SECONDS_MEASURED, "casecast_cpu_s_per_min": $casecast_cpu, "casecast_fps": $casecast_fps,
 "commentators": ${commentators:-0}, "ffmpeg_cpu_s_per_min": $ffmpeg_cpu, "ratio": $ratio}
JSON
