#!/usr/bin/env bash
# Assembles the live dashboard (dashboard/) into a folder that Mosquitto serves
# with http_dir (broker-config/dashboard.conf): the page, its script and style,
# and mqtt.js and uPlot from npm (versions pinned in dashboard/package.json and
# package-lock.json; `npm ci` installs them into dashboard/node_modules, which
# is never committed). Usage: scripts/build-dashboard.sh [OUT]   (default
# build/dashboard). Needs node and npm (scripts/install-deps.sh) and the npm
# registry the first time; later runs reuse node_modules while the lockfile is
# unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/dashboard}
src=dashboard
command -v npm >/dev/null || {
    echo "build-dashboard: npm not found (scripts/install-deps.sh installs it)" >&2
    exit 1
}
# npm writes node_modules/.package-lock.json after an install: newer than the
# lockfile means node_modules matches it.
if [ ! -f "$src/node_modules/.package-lock.json" ] ||
    [ "$src/package-lock.json" -nt "$src/node_modules/.package-lock.json" ]; then
    echo "build-dashboard: npm ci in $src/" >&2
    (cd "$src" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp/vendor"
cp "$src/index.html" "$src/dashboard.js" "$src/dashboard.css" "$tmp/"
cp "$src/node_modules/mqtt/dist/mqtt.min.js" "$src/node_modules/uplot/dist/uPlot.iife.min.js" \
    "$src/node_modules/uplot/dist/uPlot.min.css" "$tmp/vendor/"
# Licences of what is served, next to it.
cp "$src/node_modules/mqtt/LICENSE.md" "$tmp/vendor/mqtt.LICENSE.md"
cp "$src/node_modules/uplot/LICENSE" "$tmp/vendor/uPlot.LICENSE"
chmod -R a+rX "$tmp"
rm -rf "$out"
mv "$tmp" "$out"
