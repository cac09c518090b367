#!/bin/sh
# The benchmarks' baseline: the script operators write instead of the agent. It asks the
# metadata service for this machine's name, lists the tagged machines with one curl, pulls names
# and addresses out with jq, builds ETCD_INITIAL_CLUSTER in a loop and writes the env file.
#
# Like most such scripts it reads only the first page (DigitalOcean: 20 droplets, Hetzner: 25
# servers), retries nothing, never asks etcd whether a cluster already exists, and always says
# "new". Do not use it; it is here to be measured against.
#
# Input (environment): PROVIDER (digitalocean | hetzner), API_URL, METADATA_URL, SELECTOR (the
# tag, or the label selector), TOKEN, CA_FILE, ENV_FILE.
set -eu

case "$PROVIDER" in
digitalocean)
    name=$(curl -sf "$METADATA_URL/metadata/v1/hostname")
    curl -sf --cacert "$CA_FILE" -H "Authorization: Bearer $TOKEN" \
        "$API_URL/v2/droplets?tag_name=$SELECTOR" |
        jq -r '.droplets[] | "\(.name) \(.networks.v4[] | select(.type == "private") | .ip_address)"' \
            >"$ENV_FILE.peers"
    ;;
hetzner)
    name=$(curl -sf "$METADATA_URL/hetzner/v1/metadata/hostname")
    curl -sf --cacert "$CA_FILE" -H "Authorization: Bearer $TOKEN" \
        "$API_URL/v1/servers?label_selector=$SELECTOR" |
        jq -r '.servers[] | "\(.name) \(.public_net.ipv4.ip)"' >"$ENV_FILE.peers"
    ;;
*)
    echo "PROVIDER must be digitalocean or hetzner" >&2
    exit 64
    ;;
esac

cluster="" my_ip=""
while read -r peer ip; do
    cluster="${cluster:+$cluster,}$peer=http://$ip:2380"
    if [ "$peer" = "$name" ]; then my_ip=$ip; fi
done <"$ENV_FILE.peers"
rm "$ENV_FILE.peers"

cat >"$ENV_FILE.tmp" <<END
ETCD_NAME=$name
ETCD_DATA_DIR=/var/lib/etcd/default
ETCD_INITIAL_CLUSTER=$cluster
ETCD_INITIAL_CLUSTER_STATE=new
ETCD_INITIAL_CLUSTER_TOKEN=$SELECTOR
ETCD_INITIAL_ADVERTISE_PEER_URLS=http://$my_ip:2380
ETCD_LISTEN_PEER_URLS=http://$my_ip:2380
ETCD_ADVERTISE_CLIENT_URLS=http://$my_ip:2379
ETCD_LISTEN_CLIENT_URLS=http://$my_ip:2379,http://127.0.0.1:2379
END
mv "$ENV_FILE.tmp" "$ENV_FILE"
