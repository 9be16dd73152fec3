#!/usr/bin/env bash
# Installs the Debian packages EDS needs to build, test and run, if missing.
# Idempotent and quiet when everything is there. Needs root (or sudo) only
# when something is missing. Usage: scripts/install-deps.sh [--cross]
#   --cross  also the armel cross toolchain and libraries for the myRIO build
set -euo pipefail

PKGS=(cmake gcc make pkg-config clang mosquitto mosquitto-clients libpaho-mqtt-dev
      libcjson-dev libssl-dev libcmocka-dev python3 python3-paho-mqtt openssl
      valgrind iproute2 nftables libclang-rt-14-dev python3-cerberus
      dpkg-dev python3-yaml docker-compose help2man lintian debootstrap file binutils
      systemd-container docker.io chromium python3-websocket libmicrohttpd-dev)

want_cross=0
for arg in "$@"; do
    case "$arg" in
    --cross) want_cross=1 ;;
    -h | --help)
        sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "install-deps: unknown option '$arg'" >&2
        exit 2
        ;;
    esac
done

missing=()
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done
# The dashboard's npm packages (scripts/build-dashboard.sh): any node with npm
# will do (some machines bring their own); else Debian's.
command -v npm >/dev/null || missing+=(nodejs npm)
# The cross toolchain, armel libraries and OpenSSL sysroot: install-cross.sh.
[ "$want_cross" = 1 ] && "$(dirname "$0")/install-cross.sh"
# promtool for the metrics test, unpacked from Debian's prometheus package into
# a cache: installing that package would start a Prometheus server on :9090.
# (One on PATH will do: the test looks in the cache first, then there.)
command -v promtool >/dev/null || "$(dirname "$0")/install-promtool.sh"
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || {
        echo "install-deps: need root to install: ${missing[*]}" >&2
        exit 1
    }
    SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
