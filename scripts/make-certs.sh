#!/usr/bin/env bash
# Makes the certificates for EDS over TLS with the openssl CLI: a CA, the
# gateway's server certificate and one client certificate per device.
#
# Usage: scripts/make-certs.sh [options] OUTDIR [DEVICE_ID...]
#   --host NAME|IP   a DNS name or IP address the agents use to reach the
#                    gateway (repeatable). Default: localhost 127.0.0.1 ::1
#   --days N         validity of gateway and device certificates (default 825)
#   --ca-days N      validity of a new CA (default 3650)
#   --force          make a NEW CA and re-issue every certificate in OUTDIR
#                    (certificates signed by the old CA stop working)
#   -h, --help       this text
#
# Files written (keys 0600, certificates 0644):
#   OUTDIR/ca.crt  ca.key                 the CA: ca.crt goes to the gateway
#                                         (cafile) and every agent (--cafile);
#                                         ca.key stays here, never on the Pi
#   OUTDIR/gateway.crt  gateway.key       the gateway (certfile, keyfile)
#   OUTDIR/devices/ID.crt  ID.key         one per device, CN = device id
#                                         (agent --cert, --key)
# Idempotent: existing files are kept and only missing ones are made, so
# run it again with a new device id to add a device. The gateway
# certificate is re-issued when --host is given.
#
# Run it on an admin machine, not on the Pi: whoever holds ca.key can make
# device certificates. Then copy ca.crt, gateway.crt and gateway.key to the
# Pi's /etc/eds/tls/ and each device's files to it (docs/getting-started.md).
# Example (Pi reachable as eds-pi.local and 192.168.1.10, three myRIOs):
#   scripts/make-certs.sh --host eds-pi.local --host 192.168.1.10 \
#       ~/eds-tls myrio-01 myrio-02 myrio-03
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() {
    echo "make-certs: $*" >&2
    exit 2
}

hosts=()
days=825
ca_days=3650
force=0
outdir=""
devices=()
while [ $# -gt 0 ]; do
    case "$1" in
    --host)
        [ $# -ge 2 ] || die "--host needs a value"
        hosts+=("$2")
        shift 2
        ;;
    --host=*)
        hosts+=("${1#*=}")
        shift
        ;;
    --days | --ca-days)
        [ $# -ge 2 ] || die "$1 needs a value"
        [[ "$2" =~ ^[1-9][0-9]{0,4}$ ]] || die "$1: not a number of days: '$2'"
        if [ "$1" = --days ]; then days=$2; else ca_days=$2; fi
        shift 2
        ;;
    --force)
        force=1
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    --)
        shift
        break
        ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *)
        if [ -z "$outdir" ]; then outdir=$1; else devices+=("$1"); fi
        shift
        ;;
    esac
done
for a in "$@"; do
    if [ -z "$outdir" ]; then outdir=$a; else devices+=("$a"); fi
done
[ -n "$outdir" ] || die "no output directory given (see --help)"
command -v openssl >/dev/null || die "the openssl command is not installed"

explicit_hosts=${#hosts[@]}
[ ${#hosts[@]} -gt 0 ] || hosts=(localhost 127.0.0.1 ::1)

# subjectAltName entries: an IPv4/IPv6 literal becomes IP:, anything else DNS:.
san=""
for h in "${hosts[@]}"; do
    if [[ "$h" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ || "$h" == *:* ]]; then
        entry="IP:$h"
    elif [[ "$h" =~ ^[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]]; then
        entry="DNS:$h"
    else
        die "--host: not a host name or IP address: '$h'"
    fi
    san="${san:+$san,}$entry"
done

# The protocol's device-id rule: the CN is compared with hello's device.
for d in "${devices[@]}"; do
    [[ "$d" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ ]] ||
        die "not a valid device id: '$d' (want ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\$)"
done

umask 077
mkdir -p "$outdir/devices"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# EC P-256 keys: small and quick to verify on a myRIO's Cortex-A9.
newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)

# issue NAME CN EXTENSIONS: writes NAME.key and NAME.crt signed by the CA.
issue() {
    local name=$1 cn=$2 ext=$3
    printf '%s\n' "$ext" >"$tmp/ext.cnf"
    openssl req -new "${newkey[@]}" -keyout "$tmp/new.key" -out "$tmp/new.csr" \
        -subj "/CN=$cn" 2>/dev/null
    openssl x509 -req -in "$tmp/new.csr" -CA "$outdir/ca.crt" -CAkey "$outdir/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
        -extfile "$tmp/ext.cnf" -out "$tmp/new.crt" 2>/dev/null
    chmod 600 "$tmp/new.key"
    chmod 644 "$tmp/new.crt"
    # key first, then certificate: a crash in between leaves no cert without its key
    mv -f "$tmp/new.key" "$name.key"
    mv -f "$tmp/new.crt" "$name.crt"
    echo "make-certs: wrote $name.crt (CN=$cn)"
}

if [ "$force" = 1 ] || [ ! -f "$outdir/ca.crt" ] || [ ! -f "$outdir/ca.key" ]; then
    openssl req -x509 "${newkey[@]}" -keyout "$tmp/ca.key" -out "$tmp/ca.crt" \
        -days "$ca_days" -sha256 -subj "/CN=EDS CA $(hostname 2>/dev/null || echo local)" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    chmod 600 "$tmp/ca.key"
    chmod 644 "$tmp/ca.crt"
    mv -f "$tmp/ca.key" "$outdir/ca.key"
    mv -f "$tmp/ca.crt" "$outdir/ca.crt"
    echo "make-certs: wrote $outdir/ca.crt (new CA)"
    force=1 # everything signed by an older CA is void now
else
    echo "make-certs: keeping the existing CA $outdir/ca.crt (--force makes a new one)"
fi

# serverAuth only: a device certificate (clientAuth only) cannot pose as the
# gateway, and the gateway certificate cannot log in as a device.
if [ "$force" = 1 ] || [ "$explicit_hosts" -gt 0 ] || [ ! -f "$outdir/gateway.crt" ]; then
    issue "$outdir/gateway" "${hosts[0]}" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san"
fi

for d in "${devices[@]}"; do
    if [ "$force" = 1 ] || [ ! -f "$outdir/devices/$d.crt" ]; then
        issue "$outdir/devices/$d" "$d" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
    fi
done
chmod 755 "$outdir" "$outdir/devices"
