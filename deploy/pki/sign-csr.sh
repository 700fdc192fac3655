#!/usr/bin/env bash
# Sign a certificate request a gateway made itself (the cert_csr command): the gateway's new
# key never leaves it, only the request and the signed certificate travel.
#
# usage: sign-csr.sh [--pki DIR] [--days N] [--id GATEWAY-ID] --csr FILE --out FILE
#
#   --pki DIR     the CA made by make-ca.sh (default: $LINLI_PKI, else ./linli-pki)
#   --days N      validity (default: 3650, as make-gateway-cert.sh)
#   --id ID       refuse the request unless its common name is ID (the gateway it came from)
#   --csr FILE    the request (PEM), as cert_csr returned it
#   --out FILE    where the signed client certificate goes (PEM); send it with cert_install
#
# The request's signature is checked and its common name must be a valid gateway id; the
# certificate gets the same clientAuth-only extensions as make-gateway-cert.sh's. The old
# certificate stays valid until it expires or is revoked (revoke-cert.sh), so a gateway whose
# cert_install failed keeps working with it. A copy is kept as DIR/gateways/<id>.crt.<UTC time>.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$here/common.sh"

dir=${LINLI_PKI:-./linli-pki}
days=3650
csr=
out=
expected=
while (($#)); do
    case $1 in
        --pki) need_value "$1" $#; dir=$2; shift 2 ;;
        --days) need_value "$1" $#; check_days "$2"; days=$2; shift 2 ;;
        --id) need_value "$1" $#; expected=$2; shift 2 ;;
        --csr) need_value "$1" $#; csr=$2; shift 2 ;;
        --out) need_value "$1" $#; out=$2; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) die "unknown argument \"$1\" (see --help)" ;;
    esac
done
[[ -n $csr && -n $out ]] || die "usage: ${0##*/} [--pki DIR] [--days N] [--id ID] --csr FILE --out FILE"
[[ -f $csr ]] || die "no request at $csr"
use_pki "$dir"

openssl req -in "$csr" -noout -verify 2>"$work/req.log" || { cat "$work/req.log" >&2; die "$csr is not a valid request"; }
subject=$(openssl req -in "$csr" -noout -subject -nameopt RFC2253)
id=${subject#subject=}
id=${id#CN=}
[[ $subject == "subject=CN=$id" ]] || die "the request's subject must be only CN=<gateway id>, got \"${subject#subject=}\""
check_id "the request's common name" "$id"
[[ -z $expected || $expected == "$id" ]] || die "the request is for \"$id\", not \"$expected\""

sign_request "$id" "$csr" "$work/signed.crt" "" client_ext "$days"
mkdir -p "$dir/gateways"
cp "$work/signed.crt" "$dir/gateways/$id.crt.$(date -u +%Y%m%dT%H%M%SZ)"
install -m 0644 "$work/signed.crt" "$out"
echo "signed $out (CN=$id, $days days)"
echo "send it to the gateway with cert_install {\"cert\": <the file's text>}"
