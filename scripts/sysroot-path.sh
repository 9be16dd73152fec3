#!/bin/sh
# Prints the folder of the cross sysroot NAME (armel-sysroot, arm64-sysroot,
# armhf-sysroot): OVERRIDE when it is given and not empty, else
# ${XDG_CACHE_HOME:-$HOME/.cache}/eds/NAME, else (no HOME)
# /var/cache/eds/NAME. The one rule for scripts/install-cross*.sh and
# cmake/toolchain-*.cmake, so the build looks where the installer put it.
# Usage: scripts/sysroot-path.sh NAME [OVERRIDE]
set -eu
if [ $# -lt 1 ] || [ -z "$1" ]; then
    echo "sysroot-path: usage: $0 NAME [OVERRIDE]" >&2
    exit 2
fi
if [ -n "${2:-}" ]; then
    echo "$2"
elif [ -n "${XDG_CACHE_HOME:-}" ]; then
    echo "$XDG_CACHE_HOME/eds/$1"
elif [ -n "${HOME:-}" ]; then
    echo "$HOME/.cache/eds/$1"
else
    echo "/var/cache/eds/$1"
fi
