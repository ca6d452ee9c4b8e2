#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS (default 60) each and prints the executions per
# target, read from libFuzzer's final stats. Installs cargo-fuzz when it is missing.
#
#   fuzz/run.sh 60
#
# Each run starts from the committed seeds (seeds/TARGET) and earlier crashes
# (regressions/TARGET), which libFuzzer replays first; what it learns goes to a throw-away
# corpus. A crash is copied into regressions/TARGET (commit it once fixed) and the script
# exits 1. The stable toolchain needs RUSTC_BOOTSTRAP=1 for -Zsanitizer; FUZZ_SANITIZER
# picks the sanitizer (default address; `none` runs about twice as fast).
set -euo pipefail

seconds="${1:-60}"
sanitizer="${FUZZ_SANITIZER:-address}"
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

cargo fuzz build -O -s "$sanitizer"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
printf '%-12s %12s %10s %8s %s\n' target execs execs/s seconds result
for target in $(cargo fuzz list); do
  mkdir -p "$work/$target" "seeds/$target" "regressions/$target"
  log="$work/$target.log"
  started=$(date +%s)
  if cargo fuzz run -O -s "$sanitizer" "$target" "$work/$target" "seeds/$target" "regressions/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=4096 >"$log" 2>&1; then
    result=ok
  else
    result=CRASH
    status=1
  fi
  took=$(($(date +%s) - started))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  printf '%-12s %12s %10s %8s %s\n' "$target" "${execs:-?}" "${rate:-?}" "$took" "$result"
  if [ "$result" != ok ]; then
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -20 >&2 || tail -40 "$log" >&2
    for crash in artifacts/"$target"/crash-* artifacts/"$target"/oom-* artifacts/"$target"/timeout-*; do
      [ -e "$crash" ] || continue
      cp "$crash" "regressions/$target/"
      echo "kept $crash as regressions/$target/$(basename "$crash")" >&2
    done
  fi
done
exit "$status"
