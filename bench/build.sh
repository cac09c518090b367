#!/usr/bin/env bash
# Cold build times (issue 14), each in a fresh target dir, one after another so they do not share
# the 2 cores: the README's first command (`cargo build --release`), the test build of
# `scripts/test`, and, with --baseline REV, the release build of an earlier commit (a git
# worktree) for comparison. Writes bench/build.md, which bench/run.sh includes in BENCHMARKS.md.
#
#   bench/build.sh [--baseline REV]      # about 5 min on 2 cores; 15 more with the old AWS SDK
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
baseline=
[ "${1:-}" = "--baseline" ] && baseline=$2
scratch=$(mktemp -d /tmp/etcd-bootstrap-build.XXXXXX)
trap 'git -C "$root" worktree remove --force "$scratch/baseline" 2>/dev/null || true; rm -rf "$scratch"' EXIT

timed() { # dir target-dir command...
    local dir=$1 target=$2 start
    shift 2
    start=$(date +%s)
    (cd "$dir" && CARGO_TARGET_DIR="$target" "$@" >"$target.log" 2>&1) \
        || { tail -20 "$target.log"; echo "build failed: $*" >&2; exit 1; }
    echo $(($(date +%s) - start))
}
mmss() { printf '%d min %02d s' $(($1 / 60)) $(($1 % 60)); }

cargo fetch --locked -q
release=$(timed "$root" "$scratch/release" cargo build --release --locked)
size=$(stat -c %s "$scratch/release/release/etcd-bootstrap")
tests=$(timed "$root" "$scratch/test" cargo test --locked --workspace --no-run)
row_baseline=
if [ -n "$baseline" ]; then
    git worktree add -q --detach "$scratch/baseline" "$baseline"
    (cd "$scratch/baseline" && cargo fetch --locked -q)
    old=$(timed "$scratch/baseline" "$scratch/old" cargo build --release --locked)
    old_size=$(stat -c %s "$scratch/old/release/etcd-bootstrap")
    row_baseline="| \`cargo build --release --locked\` at $(git rev-parse --short "$baseline") (with \`aws-sdk-ec2\`) | $(mmss "$old") | $(awk "BEGIN{printf \"%.1f MB\", $old_size/1e6}") |"
fi

{
    echo "## Build (cold, fresh target dir)"
    echo
    echo "Written by \`bench/build.sh${baseline:+ --baseline $baseline}\` on $(date -u '+%Y-%m-%d %H:%M') UTC at commit $(git rev-parse --short HEAD), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')); crates already downloaded, each build alone on the machine. Goals (issue 14): release ≤ 10 min, tests ≤ 5 min, stripped binary ≤ 16 MB."
    echo
    echo "| Build | Time | Stripped binary |"
    echo "|---|---|---|"
    echo "| \`cargo build --release --locked\` (the README's first command) | $(mmss "$release") | $(awk "BEGIN{printf \"%.1f MB\", $size/1e6}") ($size bytes) |"
    echo "| \`cargo test --locked --workspace --no-run\` (what \`scripts/test\` builds) | $(mmss "$tests") | – |"
    [ -n "$row_baseline" ] && echo "$row_baseline"
    echo
} >bench/build.md
cat bench/build.md
