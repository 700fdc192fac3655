#!/usr/bin/env bash
# Revoke a gateway's (or a central account's) client certificate, e.g. when a gateway is stolen
# or replaced, and rewrite the CRL the broker checks.
#
# usage: revoke-cert.sh [--pki DIR] <gateway-id>
#
#   --pki DIR   the CA made by make-ca.sh (default: $LINLI_PKI, else ./linli-pki)
#
# The revoked certificate and key are renamed <id>.crt.revoked-<UTC time> so that
# make-gateway-cert.sh can issue a new one for the same id. Then copy DIR/crl.pem to the
# broker's crlfile and reload mosquitto (SIGHUP re-reads the CRL; new connections with the
# revoked certificate are refused). A connection already open stays up until it ends:
# restart mosquitto to cut a stolen gateway off at once.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$here/common.sh"

dir=${LINLI_PKI:-./linli-pki}
id=
while (($#)); do
    case $1 in
        --pki) need_value "$1" $#; dir=$2; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        -*) die "unknown option \"$1\" (see --help)" ;;
        *) [[ -z $id ]] || die "one id at a time (got \"$id\" and \"$1\")"; id=$1; shift ;;
    esac
done
[[ -n $id ]] || die "usage: ${0##*/} [--pki DIR] <gateway-id>"
check_id "gateway id" "$id"
use_pki "$dir"

crt=$dir/gateways/$id.crt
[[ -f $crt ]] || die "no current certificate for $id in $dir/gateways"
if ! openssl ca -batch -config "$CNF" -revoke "$crt" 2>"$work/ca.log" \
        || ! openssl ca -batch -config "$CNF" -gencrl -out "$dir/crl.pem" 2>>"$work/ca.log"; then
    cat "$work/ca.log" >&2
    die "openssl could not revoke $crt"
fi
chmod 0644 "$dir/crl.pem"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mv "$crt" "$crt.revoked-$stamp"
mv "$dir/gateways/$id.key" "$dir/gateways/$id.key.revoked-$stamp"
echo "revoked $id; the new CRL is $dir/crl.pem"
echo "copy it to the broker as /etc/mosquitto/linli/crl.pem, then: systemctl reload mosquitto"
