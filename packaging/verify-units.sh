#!/usr/bin/env bash
# systemd-analyze verify on the shipped units, the way they are installed: the agent's unit and
# the distribution's etcd.service with our drop-in, in a scratch root. verify prints warnings and
# still exits 0, so any output at all is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
agent=${1:?usage: verify-units.sh PATH-TO-etcd-bootstrap-BINARY}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
units=$root/usr/lib/systemd/system
mkdir -p "$units" "$root/usr/bin" "$root/etc/etcd-bootstrap/credentials"
# The host's own units (targets, network-online...), as on a real machine.
cp -a /lib/systemd/system/. "$units/"
mkdir -p "$units/etcd.service.d"
install -m 0755 "$agent" "$root/usr/bin/etcd-bootstrap"
install -m 0755 /usr/bin/etcd "$root/usr/bin/etcd"
cp systemd/etcd-bootstrap.service systemd/etcd-bootstrap-prune.service systemd/etcd-bootstrap-prune.timer \
    systemd/etcd-bootstrap-promote.service systemd/etcd-bootstrap-snapshot.service \
    systemd/etcd-bootstrap-snapshot.timer "$units/"
cp /lib/systemd/system/etcd.service "$units/"
cp systemd/etcd.service.d/10-etcd-bootstrap.conf "$units/etcd.service.d/"
out=$(systemd-analyze verify --man=no --root="$root" etcd-bootstrap.service etcd.service etcd-bootstrap-prune.service etcd-bootstrap-prune.timer \
    etcd-bootstrap-promote.service etcd-bootstrap-snapshot.service etcd-bootstrap-snapshot.timer 2>&1) || true
if [ -n "$out" ]; then
    echo "systemd-analyze verify is not silent:"
    echo "$out"
    exit 1
fi
echo "systemd-analyze verify: etcd-bootstrap.service, the prune and snapshot services and timers, the promote service, and etcd.service with its drop-in: clean"
