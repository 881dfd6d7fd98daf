#!/usr/bin/env bash
# Bandwidth adaptation in Chromium (docs/benchmarks.md): runs the e2e test
# `adaptation::commentators_on_different_links_…` RUNS times (default 5). Each run:
# Chromium publishes three simulcast layers over WHIP, a commentator behind a
# 1.5 Mbit/s tbf cap watches for 10 s (frames, freezes, the layers it shows), the
# cap is lifted, and the time until it shows the top layer again is taken.
# Prints each run and the median of the recovery times.
set -euo pipefail
RUNS=${RUNS:-5}
cd "$(dirname "$0")/.."
cargo build --workspace --bins -q
times=()
for i in $(seq 1 "$RUNS"); do
  out=$(cargo nextest run -p casecast-tests --test e2e --no-capture \
    'adaptation::commentators_on_different_links_get_different_layers_and_the_capped_one_climbs_back' 2>&1 || true)
  capped=$(grep -o "capped at 1.5 Mbit/s: .*" <<<"$out" | head -1 || true)
  back=$(grep -o "back after [0-9.]*s" <<<"$out" | grep -o "[0-9.]*" | head -1 || true)
  echo "run $i: ${capped:-the test failed}; top layer back after ${back:-?} s"
  if [ -n "$back" ]; then times+=("$back"); fi
done
if [ "${#times[@]}" -gt 0 ]; then
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "recovery after the cap is lifted, median of %d: %.1f s (%.1f-%.1f s)\n", NR, a[int((NR+1)/2)], a[1], a[NR]}'
fi
