#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (cargo-fuzz, stable, no sanitizer) for SECONDS each
# (default 3600), niced, one after the other, and prints each one's execs/s and
# coverage (libFuzzer's last `cov:`/`ft:` line). Logs go to fuzz/logs/<target>.log;
# new inputs to fuzz/work/<target>/ (the committed fuzz/corpus/<target>/ is read, not
# written); a crash to fuzz/artifacts/<target>/.
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET…]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-3600}
shift || true
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

nice -n 10 cargo fuzz build -s none
mkdir -p logs
failed=0
for target in "${targets[@]}"; do
  mkdir -p "work/$target"
  log="logs/$target.log"
  printf '== %s: %s s, log %s\n' "$target" "$seconds" "fuzz/$log"
  if ! nice -n 10 cargo fuzz run -s none "$target" "work/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    failed=1
    echo "   FAILED: see fuzz/$log and fuzz/artifacts/$target/"
  fi
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
  rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
  last=$(grep -E '#[0-9]+.*cov: [0-9]+' "$log" | tail -n 1 || true)
  cov=$(grep -oE 'cov: [0-9]+' <<<"$last" || true)
  ft=$(grep -oE 'ft: [0-9]+' <<<"$last" || true)
  corp=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' <<<"$last" || true)
  printf '   %s runs, %s execs/s, %s, %s, %s\n' "${runs:-?}" "${rate:-?}" "${cov:-cov: ?}" "${ft:-ft: ?}" "${corp:-corp: ?}"
done
exit "$failed"
