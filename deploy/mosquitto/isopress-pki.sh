#!/bin/sh
# The lab's own certificate authority for the broker's mutual TLS (docs/security.md).
#
#   isopress-pki.sh DIR ca                  DIR/ca.key + DIR/ca.pem: a new CA (keep ca.key offline)
#   isopress-pki.sh DIR server NAME SAN     DIR/NAME.key + DIR/NAME.pem for the broker;
#                                           SAN lists the names clients connect to,
#                                           e.g. "DNS:broker.lab,IP:192.168.1.10"
#   isopress-pki.sh DIR client NAME         DIR/NAME.key + DIR/NAME.pem for one broker user
#                                           (an agent, an operator or a viewer; CN=NAME)
#
# DAYS (environment) sets the validity: default 3650 for the CA, 825 for the others.
# Keys are EC P-256, written with mode 600. tests/security makes its throw-away CAs with
# this script, so what the docs tell a lab to run is what the tests run.
set -eu

usage() {
    sed -n '2,12p' "$0" >&2
    exit 2
}

[ $# -ge 2 ] || usage
dir=$1
what=$2
mkdir -p "$dir"
umask 077

check_name() {
    case $1 in
        "" | *[!A-Za-z0-9_.@-]*) echo "isopress-pki: bad name '$1' (letters, digits, _ . @ - only)" >&2; exit 2 ;;
    esac
}

new_key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
    chmod 600 "$1"
}

# Sign DIR/$1.csr with the CA, extensions from stdin.
sign() {
    ext="$dir/$1.ext"
    cat >"$ext"
    openssl x509 -req -in "$dir/$1.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAserial "$dir/ca.srl" -CAcreateserial -days "${DAYS:-825}" -sha256 \
        -extfile "$ext" -out "$dir/$1.pem" 2>/dev/null
    chmod 644 "$dir/$1.pem"
    rm -f "$dir/$1.csr" "$ext"
}

case $what in
    ca)
        [ ! -e "$dir/ca.key" ] || { echo "isopress-pki: $dir/ca.key exists; not overwriting a CA" >&2; exit 1; }
        new_key "$dir/ca.key"
        openssl req -new -key "$dir/ca.key" -subj "/CN=${CA_NAME:-isopress lab CA}" -out "$dir/ca.csr"
        printf '%s\n' "basicConstraints=critical,CA:TRUE,pathlen:0" \
            "keyUsage=critical,keyCertSign,cRLSign" "subjectKeyIdentifier=hash" >"$dir/ca.ext"
        openssl x509 -req -in "$dir/ca.csr" -key "$dir/ca.key" -days "${DAYS:-3650}" -sha256 \
            -extfile "$dir/ca.ext" -out "$dir/ca.pem" 2>/dev/null
        chmod 644 "$dir/ca.pem"
        rm -f "$dir/ca.csr" "$dir/ca.ext"
        ;;
    server)
        [ $# -eq 4 ] || usage
        check_name "$3"
        new_key "$dir/$3.key"
        openssl req -new -key "$dir/$3.key" -subj "/CN=$3" -out "$dir/$3.csr"
        sign "$3" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$4
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
        ;;
    client)
        [ $# -eq 3 ] || usage
        check_name "$3"
        new_key "$dir/$3.key"
        openssl req -new -key "$dir/$3.key" -subj "/CN=$3" -out "$dir/$3.csr"
        sign "$3" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
        ;;
    *)
        usage
        ;;
esac
