#!/usr/bin/env bash
# Issue the broker's server certificate. Gateways verify the broker's host name against it.
#
# usage: make-server-cert.sh [--pki DIR] [--days N] <host-name-or-ip> [more names or IPs...]
#
#   --pki DIR   the CA made by make-ca.sh (default: $LINLI_PKI, else ./linli-pki)
#   --days N    validity (default: 3650)
#
# The first name is the common name and the file name; every name or IP address given is a
# subjectAltName. Writes DIR/servers/<first>.crt and <first>.key. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$here/common.sh"

dir=${LINLI_PKI:-./linli-pki}
days=3650
names=()
while (($#)); do
    case $1 in
        --pki) need_value "$1" $#; dir=$2; shift 2 ;;
        --days) need_value "$1" $#; check_days "$2"; days=$2; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        -*) die "unknown option \"$1\" (see --help)" ;;
        *) names+=("$1"); shift ;;
    esac
done
((${#names[@]})) || die "usage: ${0##*/} [--pki DIR] [--days N] <host-name-or-ip> [more...]"
use_pki "$dir"

san=()
for name in "${names[@]}"; do
    if [[ $name =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ || $name =~ ^[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*$ ]]; then
        san+=("IP:$name")
    elif [[ $name =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$ ]]; then
        san+=("DNS:$name")
    else
        die "\"$name\" is neither a host name nor an IP address"
    fi
done

crt=$dir/servers/${names[0]}.crt
key=$dir/servers/${names[0]}.key
if [[ -f $crt ]]; then
    echo "${names[0]} already has a certificate: $crt (left unchanged)"
    exit 0
fi
{
    echo "[ server_ext ]"
    echo "basicConstraints       = critical, CA:false"
    echo "keyUsage               = critical, digitalSignature"
    echo "extendedKeyUsage       = serverAuth"
    echo "subjectKeyIdentifier   = hash"
    echo "authorityKeyIdentifier = keyid"
    echo "subjectAltName         = $(IFS=,; echo "${san[*]}")"
} >"$work/server.ext"
new_key "$key"
sign "${names[0]}" "$key" "$crt" "$work/server.ext" server_ext "$days"

echo "issued $crt ($(IFS=,; echo "${san[*]}"))"
echo "on the broker: install it as /etc/mosquitto/linli/server.crt and the key as server.key"
echo "(owner root, group mosquitto, key mode 0640), with ca.crt and crl.pem beside them"
