#!/usr/bin/env bash
# Makes (once) the fresh Debian 12 root file system the package tests install
# into: `debootstrap --variant=minbase bookworm` plus what the EDS packages
# depend on (so the tests install them with dpkg, offline) and systemd (so a
# test can boot it as a container with systemd-nspawn), packed as a tarball
# that each test run unpacks into a temp folder: every run starts from the
# same clean root. Needs root and debootstrap (scripts/install-deps.sh).
#
# The tarball: $EDS_TEST_ROOT, else ${XDG_CACHE_HOME:-$HOME/.cache}/eds/
# bookworm-minbase.tar (no HOME: /var/cache/eds/...). Made again when this
# script's package list changes.
#
# Usage: scripts/make-test-root.sh [--print-path]
set -euo pipefail

if [ -n "${EDS_TEST_ROOT:-}" ]; then
    TARBALL=$EDS_TEST_ROOT
elif [ -n "${XDG_CACHE_HOME:-}" ]; then
    TARBALL=$XDG_CACHE_HOME/eds/bookworm-minbase.tar
elif [ -n "${HOME:-}" ]; then
    TARBALL=$HOME/.cache/eds/bookworm-minbase.tar
else
    TARBALL=/var/cache/eds/bookworm-minbase.tar
fi
# The runtime dependencies of eds-gateway, eds-agent and libedsagent (their
# Depends, from dpkg-shlibdeps), mosquitto's tools for the guide's steps,
# and systemd to boot the root as a container.
INCLUDE=adduser,libpaho-mqtt1.3,libcjson1,libssl3,libmicrohttpd12,mosquitto-clients,systemd,systemd-sysv,dbus
MIRROR=${EDS_DEBIAN_MIRROR:-http://deb.debian.org/debian}

case "${1:-}" in
--print-path)
    echo "$TARBALL"
    exit 0
    ;;
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
    ;;
"") ;;
*)
    echo "make-test-root: unknown option '$1'" >&2
    exit 2
    ;;
esac

[ -f "$TARBALL" ] && [ "$(cat "$TARBALL.include" 2>/dev/null)" = "$INCLUDE" ] && exit 0
[ "$(id -u)" = 0 ] || {
    echo "make-test-root: needs root (debootstrap)" >&2
    exit 1
}
command -v debootstrap >/dev/null || {
    echo "make-test-root: debootstrap missing (scripts/install-deps.sh)" >&2
    exit 1
}
mkdir -p "$(dirname "$TARBALL")"
work=$(mktemp -d "$(dirname "$TARBALL")/root.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "make-test-root: debootstrap --variant=minbase bookworm (a minute or two, once)" >&2
debootstrap --variant=minbase --include="$INCLUDE" bookworm "$work/root" "$MIRROR" \
    >"$work/log" 2>&1 || {
    tail -n 20 "$work/log" >&2
    echo "make-test-root: debootstrap failed" >&2
    exit 1
}
# Downloaded packages are not needed: a smaller tarball.
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
tar -C "$work/root" --numeric-owner -cf "$TARBALL.new" .
mv "$TARBALL.new" "$TARBALL"
echo "$INCLUDE" >"$TARBALL.include"
echo "make-test-root: $TARBALL ($(du -h "$TARBALL" | cut -f1))" >&2
