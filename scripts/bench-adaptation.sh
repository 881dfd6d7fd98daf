#!/usr/bin/env bash
# Bandwidth adaptation in Chromium (docs/benchmarks.md), from the e2e tests, each
# run RUNS times (default 5). WHAT picks them (default: both).
#
# recovery: `adaptation::commentators_on_different_links_…`. Chromium publishes
#   three simulcast layers over WHIP, a commentator behind a 1.5 Mbit/s tbf cap
#   watches for 10 s (frames, freezes, the layers it shows), the cap is lifted, and
#   the time until it shows the top layer again is taken. Prints each run and the
#   median of the recovery times.
# loss: `adaptation::a_commentator_on_a_lossy_jittery_link_…`. A one-layer 720p
#   feed with the server's ladder; a commentator whose link drops 5 %, then 10 % of
#   its UDP datagrams and delays each by 20-120 ms (in order) watches for 20 s.
#   Prints each run and, per loss, the median share of the time its picture was
#   frozen (Chromium's freezeCount/totalFreezesDuration).
set -euo pipefail
RUNS=${RUNS:-5}
WHAT=${WHAT:-recovery loss}
cd "$(dirname "$0")/.."
cargo build --workspace --bins -q
run_test() {
  cargo nextest run -p casecast-tests --test e2e --no-capture "$1" 2>&1 || true
}
if [[ " $WHAT " == *" recovery "* ]]; then
  times=()
  for i in $(seq 1 "$RUNS"); do
    out=$(run_test 'adaptation::commentators_on_different_links_get_different_layers_and_the_capped_one_climbs_back')
    capped=$(grep -o "capped at 1.5 Mbit/s: .*" <<<"$out" | head -1 || true)
    back=$(grep -o "back after [0-9.]*s" <<<"$out" | grep -o "[0-9.]*" | head -1 || true)
    echo "run $i: ${capped:-the test failed}; top layer back after ${back:-?} s"
    if [ -n "$back" ]; then times+=("$back"); fi
  done
  if [ "${#times[@]}" -gt 0 ]; then
    printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "recovery after the cap is lifted, median of %d: %.1f s (%.1f-%.1f s)\n", NR, a[int((NR+1)/2)], a[1], a[NR]}'
  fi
fi
if [[ " $WHAT " == *" loss "* ]]; then
  ratios5=(); ratios10=()
  for i in $(seq 1 "$RUNS"); do
    out=$(run_test 'adaptation::a_commentator_on_a_lossy_jittery_link_keeps_watching_and_hearing')
    for loss in 5 10; do
      line=$(grep -o "^$loss % loss, 20-120 ms delay: .*" <<<"$out" | head -1 || true)
      echo "run $i: ${line:-$loss %: the test failed}"
      ratio=$(grep -o "([0-9.]* % of the time)" <<<"$line" | grep -o "[0-9.]*" | head -1 || true)
      if [ -n "$ratio" ]; then
        if [ "$loss" = 5 ]; then ratios5+=("$ratio"); else ratios10+=("$ratio"); fi
      fi
    done
  done
  median() { printf '%s\n' "$@" | sort -n | awk -v what="$1" '{a[NR]=$1} END {printf "median of %d: %.1f %% (%.1f-%.1f %%)", NR, a[int((NR+1)/2)], a[1], a[NR]}'; }
  [ "${#ratios5[@]}" -eq 0 ] || echo "5 % loss, 20-120 ms delay: time frozen, $(median "${ratios5[@]}")"
  [ "${#ratios10[@]}" -eq 0 ] || echo "10 % loss, 20-120 ms delay: time frozen, $(median "${ratios10[@]}")"
fi
