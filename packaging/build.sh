#!/usr/bin/env bash
# Builds the release binary, the man page and completions, the .deb and the .rpm, and checks that
# each package holds exactly the files it should. Prints the stripped binary's size.
#   packaging/build.sh            (needs cargo-deb and cargo-generate-rpm; rpm to list the .rpm)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked --release
bin=target/release/etcd-bootstrap
mkdir -p target/assets
"$bin" man | gzip -9n > target/assets/etcd-bootstrap.1.gz
"$bin" completions bash > target/assets/etcd-bootstrap.bash
"$bin" completions zsh > target/assets/_etcd-bootstrap
"$bin" completions fish > target/assets/etcd-bootstrap.fish
echo "release binary: $(stat -c %s "$bin") bytes (stripped, LTO, all providers)"

deb=$(cargo deb --no-build --no-strip --output target/packages/ 2>/dev/null | tail -1)
rpm=$(cargo generate-rpm --output target/packages/ 2>&1 >/dev/null; ls -t target/packages/*.rpm | head -1)
echo "packages: $deb $rpm"

expected=(
    /etc/etcd-bootstrap/config.toml
    /usr/bin/etcd-bootstrap
    /usr/lib/systemd/system/etcd-bootstrap.service
    /usr/lib/systemd/system/etcd-bootstrap-prune.service
    /usr/lib/systemd/system/etcd-bootstrap-prune.timer
    /usr/lib/systemd/system/etcd-bootstrap-snapshot.service
    /usr/lib/systemd/system/etcd-bootstrap-snapshot.timer
    /usr/lib/systemd/system/etcd.service.d/10-etcd-bootstrap.conf
    /usr/lib/systemd/system/etcd-bootstrap-promote.service
    /usr/share/man/man1/etcd-bootstrap.1.gz
    /usr/share/bash-completion/completions/etcd-bootstrap
    /usr/share/fish/vendor_completions.d/etcd-bootstrap.fish
)
check() {
    local what=$1 listing=$2 f
    for f in "${expected[@]}"; do
        grep -qx "$f" <<<"$listing" || { echo "$what lacks $f"; echo "$listing"; exit 1; }
    done
    echo "$what: all ${#expected[@]} expected files present ($(wc -l <<<"$listing") files in all)"
}
check "$deb" "$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' | grep -v '/$')"
check "$rpm" "$(rpm -qlp "$rpm" 2>/dev/null)"
dpkg-deb -I "$deb" postinst | grep -q 'install -d -m 0700 /etc/etcd-bootstrap/credentials'
if dpkg-deb -I "$deb" postinst | grep -Eq 'systemctl (start|restart|enable)'; then
    echo "the postinst starts or enables something; installing must not start discovery"
    exit 1
fi
