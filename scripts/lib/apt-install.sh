# Sourced by scripts/test and scripts/demo. `apt_install WHO PACKAGE...` installs Debian packages
# (as root), keeping services from starting for the install: Debian's etcd-server starts a
# default etcd where systemd runs, and a test machine or a demo wants none listening. The guard
# is policy-rc.d (101 = "not allowed"), left alone when the machine has its own policy.
apt_install() {
    local who=$1 guard=
    shift
    echo "$who: installing $* (apt-get)"
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        guard=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$guard"
        chmod 755 "$guard"
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    if [ -n "$guard" ]; then
        rm -f "$guard"
        trap - EXIT
    fi
}
