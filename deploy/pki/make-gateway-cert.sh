#!/usr/bin/env bash
# Issue a client certificate whose common name is the gateway id: with the broker's
# use_identity_as_username, that id is the gateway's MQTT username and the %u of the ACL.
#
# usage: make-gateway-cert.sh [--pki DIR] [--days N] <gateway-id>
#
#   --pki DIR   the CA made by make-ca.sh (default: $LINLI_PKI, else ./linli-pki)
#   --days N    validity (default: 3650, ten years — the life of the hardware)
#
# Writes DIR/gateways/<id>.crt and <id>.key. Accounts of the central side (dashboards, the
# operator console, linli-audit) and street bridges (bridge-<street>) are client certificates
# too: make them with this script under their account name. Idempotent: an id that already has a certificate is left unchanged
# (revoke-cert.sh it first to issue a new one).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$here/common.sh"

dir=${LINLI_PKI:-./linli-pki}
days=3650
id=
while (($#)); do
    case $1 in
        --pki) need_value "$1" $#; dir=$2; shift 2 ;;
        --days) need_value "$1" $#; check_days "$2"; days=$2; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        -*) die "unknown option \"$1\" (see --help)" ;;
        *) [[ -z $id ]] || die "one gateway id at a time (got \"$id\" and \"$1\")"; id=$1; shift ;;
    esac
done
[[ -n $id ]] || die "usage: ${0##*/} [--pki DIR] [--days N] <gateway-id>"
check_id "gateway id" "$id"
use_pki "$dir"

crt=$dir/gateways/$id.crt
key=$dir/gateways/$id.key
if [[ -f $crt ]]; then
    echo "$id already has a certificate: $crt (left unchanged)"
    exit 0
fi
new_key "$key"
sign "$id" "$key" "$crt" "" client_ext "$days"

echo "issued $crt (CN=$id)"
echo "on the gateway, as root (the paths of deploy/edge.toml.example):"
echo "  install -m 0644 ca.crt /etc/linli/ca.pem"
echo "  install -m 0644 $id.crt /etc/linli/$id.crt"
echo "  install -m 0640 -g linli $id.key /etc/linli/$id.key"
echo "and in /etc/linli/edge.toml [mqtt]: port = 8883, tls = true, protocol = \"5\","
echo "  ca_file = \"/etc/linli/ca.pem\", cert_file = \"/etc/linli/$id.crt\", key_file = \"/etc/linli/$id.key\""
