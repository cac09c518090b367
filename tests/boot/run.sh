#!/usr/bin/env bash
# Boot test with real systemd: Debian containers (debootstrap, cached) with Debian's etcd-server
# and this project's .deb, booted with `systemd-nspawn --boot`. They share the host's network
# namespace and use their own loopback addresses; the DigitalOcean API and metadata services are
# mocked on 127.0.0.1 (tests/boot/mock_cloud.py). Needs root.
#
#   tests/boot/run.sh target/packages/etcd-bootstrap_*.deb
#
# Checks: a container that boots minutes late joins the two that waited for it, untouched, with
# their boot finished meanwhile; etcd-bootstrap.service is active (exited) with its STATUS= text; etcd.service runs
# with the written environment; three containers form one cluster; a rebooted container keeps
# its data and membership; a container whose agent cannot decide never starts etcd; each run's
# outcome record and journal fields; a config file for etcd is refused; a machine that replaces a
# terminated one joins as a learner (the dead member removed) and etcd-bootstrap-promote.service
# promotes it with no API token, etcd.service staying active; the snapshot service, run once on
# each member with its timer started, uploads from the leader alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
deb=$(realpath "${1:?usage: tests/boot/run.sh PATH-TO.deb}")
cache=${BOOT_TEST_CACHE:-/var/cache/etcd-bootstrap-test}
base=$cache/rootfs-bookworm
work=$(mktemp -d /var/tmp/etcd-bootstrap-boot.XXXXXX)
net=127.0.201
api_port=18600
pids=()

log() { echo "boot-test: $*"; }
fail() { log "FAILED: $*"; for c in "$work"/c*; do [ -d "$c" ] && in_container "$(basename "$c")" journalctl --no-pager -n 30 -u etcd-bootstrap -u etcd 2>/dev/null; done; exit 1; }

cleanup() {
    for c in "$work"/c*; do
        [ -d "$c" ] || continue
        pkill -f "systemd-nspawn .*-D $c " 2>/dev/null || true
    done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 1
    rm -rf "$work"
}
trap cleanup EXIT

# 1. A Debian root with systemd and etcd-server, made once and kept.
if [ ! -d "$base" ]; then
    log "debootstrap bookworm into $base (once; cached afterwards)"
    mkdir -p "$cache"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,etcd-server,ca-certificates \
        bookworm "$base.tmp" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1 \
        || { tail -20 "$cache/debootstrap.log"; exit 1; }
    printf '127.0.0.1 localhost\n::1 localhost\n' >"$base.tmp/etc/hosts"
    mv "$base.tmp" "$base"
fi

# 2. The package, installed once into a copy of that root.
cp -a "$base" "$work/image"
cp "$deb" "$work/image/tmp/etcd-bootstrap.deb"
chroot "$work/image" dpkg -i /tmp/etcd-bootstrap.deb >"$work/dpkg.log" 2>&1 \
    || { cat "$work/dpkg.log"; fail "dpkg -i"; }
rm "$work/image/tmp/etcd-bootstrap.deb"
[ -d "$work/image/etc/etcd-bootstrap/credentials" ] || fail "the package did not create the credentials directory"

# 3. Containers: c1..c3 are the cluster; c4 carries another tag, with size 5, and cannot decide.
container() { # name index tag size [timeout]
    local name=$1 i=$2 tag=$3 size=$4 root=$work/$1 deadline=""
    [ -z "${5:-}" ] || deadline="timeout = \"$5\""
    cp -a "$work/image" "$root"
    echo "$name" >"$root/etc/hostname"
    cat >"$root/etc/etcd-bootstrap/config.toml" <<TOML
[cluster]
size = $size
token = "boot-test"
[discovery]
provider = "digitalocean"
$deadline
interval = "500ms"
[discovery.digitalocean]
tag = "$tag"
api_url = "http://127.0.0.1:$api_port"
metadata_url = "http://127.0.0.1:$((api_port + i))"
TOML
    printf 'dop_v1_boottest_0123456789\n' >"$root/etc/etcd-bootstrap/credentials/digitalocean-token"
    chmod 600 "$root/etc/etcd-bootstrap/credentials/digitalocean-token"
}
boot() { # name
    systemd-nspawn -D "$work/$1" --boot --register=no --keep-unit -M "$1" --console=passive \
        --link-journal=no >"$work/$1.console" 2>&1 &
    pids+=($!)
}
leader() { # name -> the container's PID 1, seen from here
    local nspawn
    nspawn=$(pgrep -f "systemd-nspawn -D $work/$1 " | head -1) || return 1
    pgrep -P "$nspawn" | head -1
}
in_container() { # name command...
    local pid; pid=$(leader "$1") || return 1
    shift
    nsenter -t "$pid" -m -u -i -p -- "$@"
}
wait_for() { # name unit state seconds
    local i
    for ((i = 0; i < $4 * 2; i++)); do
        [ "$(in_container "$1" systemctl show -p ActiveState --value "$2" 2>/dev/null)" = "$3" ] && return 0
        sleep 0.5
    done
    return 1
}
members() { curl -s -m 3 -X POST "http://$net.1:2379/v3/cluster/member/list" -d '{}'; }

# c5 replaces c3 at the end: not created until then.
echo 7005 >"$work/hidden"
MOCK_CLOUD_HIDDEN=$work/hidden python3 tests/boot/mock_cloud.py "$api_port" tests/fixtures/digitalocean/droplet.json \
    "etcd:boot=7001:c1:$net.1,7002:c2:$net.2,7003:c3:$net.3,7005:c5:$net.5" "etcd:other=7004:c4:$net.4" \
    -- "$((api_port + 1)):7001" "$((api_port + 2)):7002" "$((api_port + 3)):7003" "$((api_port + 4)):7004" \
    "$((api_port + 5)):7005" >"$work/mock.log" 2>&1 &
pids+=($!)
# c1..c3 wait as long as it takes (the default); c4 has a deadline and must fail at it.
for i in 1 2 3; do
    container "c$i" "$i" etcd:boot 3
    # A start timeout far shorter than c3's lateness: only the agent's EXTEND_TIMEOUT_USEC=
    # keeps systemd from killing it while it waits on purpose.
    mkdir -p "$work/c$i/etc/systemd/system/etcd-bootstrap.service.d"
    printf '[Service]\nTimeoutStartSec=60s\n' >"$work/c$i/etc/systemd/system/etcd-bootstrap.service.d/50-short.conf"
done
container c4 4 etcd:other 5 20s
sleep 1
grep -q ready "$work/mock.log" || fail "the mock cloud did not start"

# c3 boots late: well after c4's 20 s deadline (the old default behaviour) and after c1's and
# c2's unit start timeout, with nobody touching c1 or c2 in between.
late_gap=${BOOT_TEST_LATE_GAP:-180}
log "booting c1 c2 c4; c3 follows ${late_gap}s later"
for c in c1 c2 c4; do boot "$c"; done
booted=$(date +%s)
wait_for c4 etcd-bootstrap.service failed 60 || fail "c4: etcd-bootstrap.service did not fail"
for c in c1 c2; do
    wait_for "$c" multi-user.target active 60 || fail "$c: the boot waits for the agent (multi-user.target not reached)"
    state=$(in_container "$c" systemctl show -p ActiveState --value etcd-bootstrap.service)
    [ "$state" = activating ] || fail "$c: etcd-bootstrap.service is $state while c3 is away"
done
sleep $((booted + late_gap - $(date +%s)))
for c in c1 c2; do
    state=$(in_container "$c" systemctl show -p ActiveState --value etcd-bootstrap.service)
    status=$(in_container "$c" systemctl show -p StatusText --value etcd-bootstrap.service)
    [ "$state" = activating ] || fail "$c: etcd-bootstrap.service is $state after ${late_gap}s"
    [[ "$status" == *"c3"* ]] || fail "$c: after ${late_gap}s the status does not name c3: '$status'"
    log "$c after ${late_gap}s: multi-user.target reached; the agent waits: \"$status\""
done
boot c3
for c in c1 c2 c3; do
    wait_for "$c" etcd.service active 90 || fail "$c: etcd.service did not become active"
done

# 4. Each node: the agent's unit, its status text, and etcd running with the written environment.
# Each etcd starts as soon as its own agent is done, so a container whose agent looks a moment
# after the others may already find their cluster, listing it as an unstarted initial member:
# it then reuses that member (state existing). Both are right; the cluster cannot have formed
# without a quorum (2 of 3) bootstrapping, so at least two must say new.
bootstrapped=0
for c in c1 c2 c3; do
    state=$(in_container "$c" systemctl show -p ActiveState,SubState --value etcd-bootstrap.service | paste -sd/)
    [ "$state" = "active/exited" ] || fail "$c: etcd-bootstrap.service is $state"
    status=$(in_container "$c" systemctl show -p StatusText --value etcd-bootstrap.service)
    case "$status" in
        "new (bootstrap): wrote /run/etcd-bootstrap/etcd.env") want=new; bootstrapped=$((bootstrapped + 1)) ;;
        "existing (reuse): wrote /run/etcd-bootstrap/etcd.env") want=existing ;;
        *) fail "$c: status text is '$status'" ;;
    esac
    pid=$(in_container "$c" systemctl show -p MainPID --value etcd.service)
    environ=$(in_container "$c" cat "/proc/$pid/environ" | tr '\0' '\n')
    grep -qx "ETCD_NAME=$c" <<<"$environ" || fail "$c: etcd runs without ETCD_NAME=$c"
    grep -qx "ETCD_INITIAL_CLUSTER_STATE=$want" <<<"$environ" || fail "$c: \"$status\" but etcd does not run with state $want"
    # The outcome as data: the record beside the env file, and the final journal line's fields.
    in_container "$c" grep -q '"result": "ok"' /run/etcd-bootstrap/outcome.json \
        || fail "$c: no ok outcome record: $(in_container "$c" cat /run/etcd-bootstrap/outcome.json)"
    fields=$(in_container "$c" journalctl --no-pager -o json -u etcd-bootstrap ETCD_BOOTSTRAP_RESULT=ok)
    grep -q "\"ETCD_BOOTSTRAP_STATE\":\"$want\"" <<<"$fields" \
        || fail "$c: no journal entry with ETCD_BOOTSTRAP_STATE=$want: $fields"
    grep -q "\"ETCD_BOOTSTRAP_NAME\":\"$c\"" <<<"$fields" || fail "$c: no ETCD_BOOTSTRAP_NAME=$c: $fields"
    log "$c: etcd-bootstrap active (exited), \"$status\"; etcd active as $c; outcome recorded"
done
[ "$bootstrapped" -ge 2 ] || fail "only $bootstrapped of 3 bootstrapped; a cluster needs 2"
before=$(members)
count=$(grep -o '"clientURLs"' <<<"$before" | wc -l)
[ "$count" = 3 ] || fail "expected 3 started members, got: $before"
for i in 2 3; do
    other=$(curl -s -m 3 -X POST "http://$net.$i:2379/v3/cluster/member/list" -d '{}')
    [ "$(grep -o '"cluster_id":"[0-9]*"' <<<"$other")" = "$(grep -o '"cluster_id":"[0-9]*"' <<<"$before")" ] \
        || fail "c$i reports another cluster"
done
log "one cluster of 3 started members"

# 4b. Backups: each member gets a [backup] fragment (a file:// store in the directory the
# shipped unit may write) and the snapshot timer; the service runs once on each: the leader
# uploads a snapshot with its manifest, the others name the leader, all succeed.
uploaded=()
for c in c1 c2 c3; do
    mkdir -p "$work/$c/etc/etcd-bootstrap/config.d"
    printf '[backup]\nurl = "file:///var/backups/etcd"\n' >"$work/$c/etc/etcd-bootstrap/config.d/50-backup.toml"
    in_container "$c" install -d -o etcd -g etcd /var/backups/etcd
    in_container "$c" systemctl start etcd-bootstrap-snapshot.timer || fail "$c: the snapshot timer did not start"
    wait_for "$c" etcd-bootstrap-snapshot.timer active 10 || fail "$c: the snapshot timer is not active"
done
for c in c1 c2 c3; do
    in_container "$c" systemctl start etcd-bootstrap-snapshot.service \
        || fail "$c: etcd-bootstrap-snapshot.service failed: $(in_container "$c" journalctl --no-pager -o cat -n 3 -u etcd-bootstrap-snapshot.service)"
    # Its last word (the unit is inactive again, its STATUS= gone with it).
    status=$(in_container "$c" journalctl --no-pager -o cat -u etcd-bootstrap-snapshot.service | grep -v '^Start\|^Finish\|Deactivated' | tail -1)
    if [[ "$status" == *"snapshot boot-test/snapshot-"*" written to file:///var/backups/etcd"* ]]; then
        uploaded+=("$c")
        in_container "$c" sh -c 'ls /var/backups/etcd/boot-test/snapshot-*.db /var/backups/etcd/boot-test/snapshot-*.json' >/dev/null \
            || fail "$c: said \"$status\" but the store holds no snapshot and manifest"
        in_container "$c" grep -q '"result": "uploaded"' /run/etcd-bootstrap/snapshot.json || fail "$c: no snapshot record"
    else
        [[ "$status" == *"leads the cluster and takes its snapshots"* ]] || fail "$c: snapshot status is '$status'"
    fi
done
[ "${#uploaded[@]}" = 1 ] || fail "expected exactly one member to upload, got: ${uploaded[*]:-none}"
log "snapshot timer on c1..c3; the leader (${uploaded[0]}) uploaded, the others named it"

# 5. The undecidable container with a deadline: its agent fails at it, and etcd never starts.
status=$(in_container c4 systemctl show -p StatusText --value etcd-bootstrap.service)
[[ "$status" == "failed: no decision within discovery.timeout"*"waiting for 5 members, found 1: c4"* ]] \
    || fail "c4: status text is '$status'"
etcd_state=$(in_container c4 systemctl show -p ActiveState --value etcd.service)
[ "$etcd_state" != active ] || fail "c4: etcd.service is active although the agent failed"
in_container c4 test ! -e /var/lib/etcd/default/member || fail "c4: etcd created data"
in_container c4 grep -q '"exit_code": 69' /run/etcd-bootstrap/outcome.json || fail "c4: no failed outcome record"
in_container c4 journalctl --no-pager -o json -u etcd-bootstrap ETCD_BOOTSTRAP_EXIT_CODE=69 | grep -q 'no decision within' \
    || fail "c4: no journal entry with ETCD_BOOTSTRAP_EXIT_CODE=69"
log "c4: etcd-bootstrap failed (\"$status\"); etcd.service $etcd_state, no data created"

# 6. Reboot c1: same data, same membership, the agent restarts it as existing.
in_container c1 systemctl poweroff || true
for ((i = 0; i < 60; i++)); do pgrep -f "systemd-nspawn -D $work/c1 " >/dev/null || break; sleep 0.5; done
pgrep -f "systemd-nspawn -D $work/c1 " >/dev/null && fail "c1 did not power off"
boot c1
wait_for c1 etcd.service active 90 || fail "c1: etcd.service did not come back"
status=$(in_container c1 systemctl show -p StatusText --value etcd-bootstrap.service)
[[ "$status" == "existing (restart"* ]] || fail "c1 after reboot: status text is '$status'"
after=$(members)
ids() { grep -o '"ID":"[0-9]*"' <<<"$1" | sort; }
[ "$(ids "$before")" = "$(ids "$after")" ] || fail "membership changed across the reboot: $before / $after"
log "c1 rebooted: \"$status\", membership unchanged"

# 7. A config file for etcd (which would make it ignore the env file) is refused before etcd
# restarts; the cluster keeps its quorum on c1 and c3.
in_container c2 mkdir -p /etc/systemd/system/etcd.service.d
printf '[Service]\nEnvironment=ETCD_CONFIG_FILE=/etc/etcd/etcd.yml\n' \
    | in_container c2 tee /etc/systemd/system/etcd.service.d/50-config-file.conf >/dev/null
in_container c2 systemctl daemon-reload
in_container c2 systemctl restart etcd-bootstrap.service 2>/dev/null && fail "c2: the agent accepted a config file"
status=$(in_container c2 systemctl show -p StatusText --value etcd-bootstrap.service)
[[ "$status" == "failed: etcd.service's Environment sets ETCD_CONFIG_FILE=/etc/etcd/etcd.yml: etcd reads only its config file"* ]] \
    || fail "c2 with a config file: status text is '$status'"
code=$(in_container c2 systemctl show -p ExecMainStatus --value etcd-bootstrap.service)
[ "$code" = 78 ] || fail "c2 with a config file: exit status $code, not 78"
log "c2 with ETCD_CONFIG_FILE set: refused (exit 78)"
# Back to a good config for c2 (the cluster needs its vote for the replacement below).
in_container c2 rm /etc/systemd/system/etcd.service.d/50-config-file.conf
in_container c2 systemctl daemon-reload
in_container c2 systemctl start etcd.service || fail "c2: etcd.service did not start again"

# 8. c3 is terminated; c5 replaces it: its agent removes c3's member and adds itself as a
# learner (the default), and etcd-bootstrap-promote.service (started with etcd by the shipped
# drop-in, as etcd's user, with none of the agent's credentials) promotes it once caught up;
# etcd.service stays active throughout.
in_container c3 systemctl poweroff || true
for ((i = 0; i < 60; i++)); do pgrep -f "systemd-nspawn -D $work/c3 " >/dev/null || break; sleep 0.5; done
echo 7003 >"$work/hidden"
container c5 5 etcd:boot 3
boot c5
wait_for c5 etcd.service active 120 || fail "c5: etcd.service did not become active"
status=$(in_container c5 systemctl show -p StatusText --value etcd-bootstrap.service)
# It joined (member add, as a learner), then started on the member it added: the reuse row.
[[ "$status" == "existing (reuse)"* ]] || fail "c5: status text is '$status'"
in_container c5 journalctl --no-pager -u etcd-bootstrap.service | grep -q 'added this node as a member.*learner=true' \
    || fail "c5: the agent did not add this node as a learner: $(in_container c5 journalctl --no-pager -n 20 -u etcd-bootstrap.service)"
for ((i = 0; i < 120; i++)); do
    in_container c5 journalctl --no-pager -u etcd-bootstrap-promote.service | grep -q 'promoted this node' && break
    sleep 0.5
done
in_container c5 journalctl --no-pager -u etcd-bootstrap-promote.service | grep -q 'promoted this node' \
    || fail "c5: etcd-bootstrap-promote.service did not promote: $(in_container c5 journalctl --no-pager -n 20 -u etcd-bootstrap-promote.service)"
in_container c5 journalctl --no-pager -u etcd-bootstrap-promote.service | grep -q 'token' && fail "c5: promote asked for a token"
# On a voter the same unit exits at once, saying why.
in_container c1 journalctl --no-pager -u etcd-bootstrap-promote.service | grep -q 'nothing to promote' \
    || fail "c1: etcd-bootstrap-promote.service did not say that a voter has nothing to promote"
sleep 2
state=$(in_container c5 systemctl show -p ActiveState --value etcd.service)
[ "$state" = active ] || fail "c5: etcd.service is $state after the promotion"
after=$(members)
[ "$(grep -o '"clientURLs"' <<<"$after" | wc -l)" = 3 ] || fail "expected 3 started members after the replacement: $after"
grep -q "$net.5:2380" <<<"$after" || fail "c5 is not a member: $after"
grep -q "$net.3:2380" <<<"$after" && fail "c3's member was not removed: $after"
grep -q '"isLearner":true' <<<"$after" && fail "a learner is left: $after"
log "c5 replaced c3: \"$status\"; promoted by etcd-bootstrap-promote.service; etcd.service stays active"
log "PASSED"
