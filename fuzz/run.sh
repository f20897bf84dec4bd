#!/usr/bin/env bash
# Runs each cargo-fuzz target for SECONDS (default 30) from a copy of its committed seed corpus
# (fuzz/corpus/<target>), under AddressSanitizer. Installs cargo-fuzz if it is missing. The fuzz
# build needs nightly flags; RUSTC_BOOTSTRAP=1 lets this stable toolchain take them.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-30}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in segment lane_ops; do
  work=$(mktemp -d)
  cp corpus/"$target"/* "$work"/
  echo "fuzzing $target for $secs s"
  status=0
  cargo fuzz run -O "$target" "$work" -- -max_total_time="$secs" -timeout=20 \
    > "$work.log" 2>&1 || status=$?
  grep -E "^(Done|INFO: seed corpus|==[0-9]+==|SUMMARY|thread|error)|panicked|Test unit written" \
    "$work.log" | head -40 || true
  [ "$status" -eq 0 ] || tail -40 "$work.log"
  rm -rf "$work" "$work.log"
  if [ "$status" -ne 0 ]; then
    echo "fuzz target $target found a failure (artifacts in fuzz/artifacts/$target)"
    exit 1
  fi
done
