#!/usr/bin/env bash
# The benchmark suite, one command: builds the agent and the suite (release), then runs every
# benchmark and writes BENCHMARKS.md.
#
#   bench/run.sh            # the full suite, about 17 minutes on 2 cores after the builds
#   bench/run.sh --smoke    # the smallest size of everything (CI): finishes, counts requests,
#                           # judges no time; writes target/bench-smoke.md
#
# Needs: openssl, curl, jq, etcd (ETCD35_BIN, else ETCD_BIN, else /usr/bin/etcd).
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
if [[ " $* " == *" --smoke "* && " $* " != *" --out "* ]]; then
    args+=(--out target/bench-smoke.md)
fi
# Two builds, not one: built together, the suite's dependency features (hyper's server) would be
# unified into the agent, and the binary measured would not be the one shipped.
cargo build --locked --release -p etcd-bootstrap
cargo build --locked --release -p etcd-bootstrap-bench
exec target/release/etcd-bootstrap-bench --agent target/release/etcd-bootstrap "${args[@]}"
