# Shared by the benchmarks that run release processes on loopback (sourced, not run):
# the release binaries, the output folder, a scratch folder and the processes
# started (PIDS), both cleaned up on exit, and a process's CPU time.
SECRET="bench-secret-0123456789abcdef"
# BIN=target/debug compares two builds quickly (the pipelines are GStreamer's C code
# either way); the numbers in docs/benchmarks.md are release builds.
BIN="${BIN:-target/release}"
OUT=target/bench
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cpu_seconds() { # utime + stime of a process, seconds
  awk -v tck="$(getconf CLK_TCK)" '{ print ($14 + $15) / tck }' "/proc/$1/stat"
}
