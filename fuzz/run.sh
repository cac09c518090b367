#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 30) from the committed seeds. cargo-fuzz needs
# nightly features; RUSTC_BOOTSTRAP=1 lets the one stable toolchain here provide them.
#   fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-30}
for target in env_file parsers wal backup; do
    mkdir -p "corpus/$target"
    status=0
    out=$(RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir . "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" 2>&1) || status=$?
    echo "$target: $(grep -E '^Done' <<<"$out" || echo 'no run')"
    if [ "$status" -ne 0 ]; then
        # A build failure or a crash (which also leaves an input in artifacts/).
        tail -40 <<<"$out"
        echo "fuzz target $target failed (exit $status)"
        exit 1
    fi
done
