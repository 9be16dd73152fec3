#!/usr/bin/env bash
# Builds the Debian packages with CPack into BUILD_DIR/packages (default
# build/packages):
#   eds-gateway_<version>_<arch>.deb   for the Raspberry Pi (arm64 or armhf
#                                      when run on the Pi, amd64 on a PC)
#   eds-agent_<version>_<arch>.deb     the agent for Debian machines
# The architecture is the build host's. Run it on the Pi to get the Pi's
# packages (or in an arm64/armhf Debian 12 container).
#
# Usage: scripts/package.sh [--myrio]
#   --myrio   instead: cross-build the agent for the NI myRIO (armel) with
#             scripts/build-arm.sh into build-arm/ and package it there
#             (eds-agent_<version>_armel.deb: NI Linux RT has no dpkg; unpack
#             it with `dpkg-deb -x` or `ar x` + tar and copy the files)
# Environment: BUILD_DIR, JOBS as for scripts/build.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

myrio=0
for arg in "$@"; do
    case "$arg" in
    --myrio) myrio=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "package.sh: unknown option '$arg' (see --help)" >&2
        exit 2
        ;;
    esac
done

if [ "$myrio" = 1 ]; then
    BUILD_DIR=${BUILD_DIR:-build-arm}
    BUILD_DIR=$BUILD_DIR scripts/build-arm.sh
else
    scripts/install-deps.sh
    BUILD_DIR=${BUILD_DIR:-build}
    BUILD_DIR=$BUILD_DIR scripts/build.sh
fi
rm -rf "$BUILD_DIR/packages"
(cd "$BUILD_DIR" && cpack -G DEB >/dev/null)
for deb in "$BUILD_DIR"/packages/*.deb; do
    echo "$deb: $(dpkg-deb -f "$deb" Package Architecture Version Depends | tr '\n' ' ')"
done
