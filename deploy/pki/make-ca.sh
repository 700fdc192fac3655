#!/usr/bin/env bash
# Create the community CA that signs the broker's certificate and every gateway's client certificate.
#
# usage: make-ca.sh [--pki DIR] [--name "COMMON NAME"] [--days N]
#
#   --pki DIR   where the CA lives (default: $LINLI_PKI, else ./linli-pki). Keep it offline and backed up:
#               private/ca.key can mint an identity for any gateway.
#   --name CN   the CA's common name (default: "linli community CA")
#   --days N    validity of the CA certificate (default: 7300, twenty years)
#
# Idempotent: if DIR already holds a CA, nothing is changed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$here/common.sh"

dir=${LINLI_PKI:-./linli-pki}
name="linli community CA"
days=7300
while (($#)); do
    case $1 in
        --pki) need_value "$1" $#; dir=$2; shift 2 ;;
        --name) need_value "$1" $#; name=$2; shift 2 ;;
        --days) need_value "$1" $#; check_days "$2"; days=$2; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) die "unknown argument \"$1\" (see --help)" ;;
    esac
done
[[ $name =~ ^[A-Za-z0-9][A-Za-z0-9\ ._-]{0,63}$ ]] \
    || die "--name \"$name\" must be 1 to 64 characters of letters, digits, space, dot, _ and -"

if [[ -f $dir/ca.crt ]]; then
    echo "a CA already exists in $dir (left unchanged)"
    exit 0
fi

(umask 077 && mkdir -p "$dir/private")
mkdir -p "$dir/newcerts" "$dir/gateways" "$dir/servers"
LINLI_PKI_DIR=$(cd "$dir" && pwd)
export LINLI_PKI_DIR
: >"$dir/index.txt"
echo 1000 >"$dir/crlnumber"

new_key "$dir/private/ca.key"
openssl req -new -x509 -config "$CNF" -extensions ca_ext -key "$dir/private/ca.key" \
    -subj "/CN=$name" -days "$days" -sha256 -out "$dir/ca.crt"
openssl ca -batch -config "$CNF" -gencrl -out "$dir/crl.pem" 2>"$work/ca.log" \
    || { cat "$work/ca.log" >&2; die "openssl could not create the first CRL"; }
chmod 0644 "$dir/ca.crt" "$dir/crl.pem"

echo "CA created in $dir"
echo "  ca.crt   goes to the broker (cafile) and to every gateway (mqtt.ca_file)"
echo "  crl.pem  goes to the broker (crlfile); it is rewritten by revoke-cert.sh"
echo "next: make-server-cert.sh --pki $dir <broker host name>, make-gateway-cert.sh --pki $dir <gateway id>"
