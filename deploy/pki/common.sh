# Shared by the deploy/pki scripts (sourced, not run). Expects $here = this directory.
# shellcheck shell=bash

CNF="${here:?set by the sourcing script}/openssl.cnf"

# Gateway ids and grid levels must never be one of these topic words: the broker ACL's
# patterns (deploy/mosquitto/acl) rely on it to keep one gateway out of another's topics.
RESERVED_WORDS="status telemetry alarm event health cmd"

die() {
    printf '%s: %s\n' "${0##*/}" "$*" >&2
    exit 1
}

# need_value OPTION COUNT: an option's value must follow it.
need_value() {
    [[ $2 -ge 2 ]] || die "$1 needs a value"
}

# check_id WHAT NAME: a certificate common name used as an MQTT username and topic level.
check_id() {
    [[ $2 =~ ^[a-z0-9-]{1,64}$ ]] || die "$1 \"$2\" must be 1 to 64 characters of a-z, 0-9 and -"
    local word
    for word in $RESERVED_WORDS; do
        [[ $2 != "$word" ]] || die "$1 \"$2\" is a reserved topic word ($RESERVED_WORDS)"
    done
}

# check_days N
check_days() {
    [[ $1 =~ ^[1-9][0-9]{0,5}$ ]] || die "--days must be a positive number of days, got \"$1\""
}

# use_pki DIR: select (and export for openssl.cnf) the CA directory, which must hold a CA.
use_pki() {
    [[ -f $1/ca.crt && -f $1/private/ca.key ]] || die "no CA in $1 (run make-ca.sh --pki $1 first)"
    LINLI_PKI_DIR=$(cd "$1" && pwd)
    export LINLI_PKI_DIR
}

# new_key FILE: an EC P-256 private key, readable by its owner only.
new_key() {
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null) \
        || die "openssl could not create the key $1"
}

# Scratch directory for CSRs and logs, removed when the script exits.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# sign NAME KEY CERT EXTFILE_OR_EMPTY EXTENSIONS DAYS: CSR for CN=NAME, signed by the CA.
sign() {
    openssl req -new -config "$CNF" -key "$2" -subj "/CN=$1" -out "$work/req.csr"
    sign_request "$1" "$work/req.csr" "$3" "$4" "$5" "$6"
}

# sign_request NAME CSR CERT EXTFILE_OR_EMPTY EXTENSIONS DAYS: the CA signs a request for CN=NAME.
sign_request() {
    local extfile=()
    [[ -z $4 ]] || extfile=(-extfile "$4")
    if ! openssl ca -batch -notext -config "$CNF" "${extfile[@]}" -extensions "$5" -days "$6" \
            -in "$2" -out "$3" 2>"$work/ca.log"; then
        cat "$work/ca.log" >&2
        rm -f "$3"
        die "the CA refused to sign a certificate for $1"
    fi
    chmod 0644 "$3"
}
