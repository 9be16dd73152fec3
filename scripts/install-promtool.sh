#!/usr/bin/env bash
# Puts Debian's promtool (the metrics test's `promtool check metrics`) in a
# cache folder without installing the prometheus package: that package is a
# whole Prometheus server whose postinst enables and starts it, listening on
# :9090 on every address of a machine with systemd. The .deb is fetched with
# apt-get download and only unpacked (dpkg-deb -x); promtool needs libc only.
# Idempotent and quiet when it is there; needs root (or sudo) only for an
# apt-get update on a machine with no package lists.
#
# The folder is ${XDG_CACHE_HOME:-$HOME/.cache}/eds/promtool, else (no HOME)
# /var/cache/eds/promtool; tests/integration/test_gateway_metrics.py uses the
# same rule. Usage: scripts/install-promtool.sh [--print-path]
set -euo pipefail

if [ -n "${XDG_CACHE_HOME:-}" ]; then
    DIR=$XDG_CACHE_HOME/eds/promtool
elif [ -n "${HOME:-}" ]; then
    DIR=$HOME/.cache/eds/promtool
else
    DIR=/var/cache/eds/promtool
fi
TOOL=$DIR/usr/bin/promtool

case "${1:-}" in
--print-path)
    echo "$TOOL"
    exit 0
    ;;
"") ;;
*)
    echo "install-promtool: unknown option '$1'" >&2
    exit 2
    ;;
esac

"$TOOL" --version >/dev/null 2>&1 && exit 0

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
# apt-get download needs the package lists, not root.
if ! apt-cache show prometheus >/dev/null 2>&1; then
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq </dev/null >/dev/null
fi
echo "install-promtool: unpacking Debian's prometheus package into $DIR (promtool only)" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$DIR.new"' EXIT
# _apt cannot write into a private temp folder; download there as is (its
# failure shows as no .deb below; its sandbox warning is dropped).
(
    cd "$tmp"
    apt-get download -qq prometheus </dev/null 2>&1 |
        { grep -v 'couldn.t be accessed by user' >&2 || true; }
) || true
debs=("$tmp"/prometheus_*.deb)
[ -e "${debs[0]}" ] || {
    echo "install-promtool: apt-get download prometheus failed" >&2
    exit 1
}
rm -rf "$DIR.new"
mkdir -p "$DIR.new"
dpkg-deb -x "${debs[0]}" "$DIR.new"
# Only promtool is kept: the server and its web assets are not needed.
find "$DIR.new" -mindepth 1 -maxdepth 1 ! -name usr -exec rm -rf {} +
find "$DIR.new/usr" -mindepth 1 -maxdepth 1 ! -name bin -exec rm -rf {} +
find "$DIR.new/usr/bin" -mindepth 1 ! -name promtool -exec rm -rf {} +
"$DIR.new/usr/bin/promtool" --version >/dev/null 2>&1 || {
    echo "install-promtool: the unpacked promtool does not run" >&2
    exit 1
}
rm -rf "$DIR"
mv "$DIR.new" "$DIR"
