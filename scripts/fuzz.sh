#!/usr/bin/env bash
# Runs each fuzz target (cargo fuzz, libFuzzer) for a bounded time from its committed
# seed corpus (fuzz/corpus/<target>); what a run adds goes to fuzz/target/corpus, a
# crash to fuzz/artifacts/<target>/. Exits non-zero if any target crashed.
# Usage: scripts/fuzz.sh SECONDS TARGET...   (make fuzz FUZZ_SECONDS=60)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(signaling whip_sdp token tus demux dicom)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
# Stable Rust: no sanitizer (that needs nightly); libFuzzer's coverage, debug
# assertions and overflow checks are on, and every panic is a finding.
cd fuzz
cargo fuzz build -s none
failed=()
for t in "${targets[@]}"; do
  mkdir -p "target/corpus/$t" "artifacts/$t"
  echo "== $t: ${seconds}s"
  if ! cargo fuzz run -s none "$t" "target/corpus/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=262144 \
      -print_final_stats=1 2>&1 | tee "target/fuzz-$t.log" | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+== ERROR|thread .* panicked)"; then
    :
  fi
  if ls "artifacts/$t" | grep -q .; then
    failed+=("$t")
    echo "   $t: FOUND something: fuzz/artifacts/$t/ (reproduce: cd fuzz && cargo fuzz run -s none $t artifacts/$t/<file>)"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]}"
  exit 1
fi
echo "fuzzing: no crash in ${targets[*]} (${seconds}s each)"
