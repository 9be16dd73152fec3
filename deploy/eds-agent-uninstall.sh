#!/bin/sh
# Removes the EDS agent that the myRIO bundle (scripts/build-arm.sh --bundle)
# installed; the bundle puts this script at
# /usr/local/share/eds-agent/uninstall.sh, next to the list of the files it
# unpacked (/usr/local/share/eds-agent/files).
#
#   1. stops the agent (/etc/init.d/eds-agent stop),
#   2. removes its boot links (/etc/rc?.d/[SK]NNeds-agent, as
#      `update-rc.d -f eds-agent remove` does),
#   3. deletes every file in the list, then the agent's own folders
#      (/usr/local/share/eds-agent/..., /etc/eds) when they are empty.
# Kept: /etc/eds/eds-agent.conf and whatever else you put in /etc/eds, the
# spool (/var/lib/eds-agent: records not yet delivered), the logs. With
# --purge those go too: /etc/eds (configuration, schema, password file, TLS
# keys), /etc/default/eds-agent, the spool, /var/log/eds-agent.log*,
# /var/run/eds-agent.
#
# Usage (as admin/root on the myRIO): /usr/local/share/eds-agent/uninstall.sh [--purge]
# ROOT=/some/dir makes every path relative to that folder (for tests).
set -eu
purge=0
case "${1:-}" in
--purge) purge=1 ;;
"") ;;
-h | --help)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "uninstall: unknown option '$1' (--purge, --help)" >&2
    exit 2
    ;;
esac
ROOT=${ROOT:-}
list=$ROOT/usr/local/share/eds-agent/files
[ -r "$list" ] || {
    echo "uninstall: no $list: is the EDS agent bundle installed here?" >&2
    exit 1
}

if [ -x "$ROOT/etc/init.d/eds-agent" ]; then
    "$ROOT/etc/init.d/eds-agent" stop || true
fi
for link in "$ROOT"/etc/rc?.d/[SK][0-9][0-9]eds-agent; do
    [ -e "$link" ] || [ -L "$link" ] || continue
    rm -f "$link"
done

# Read the list before deleting it (it names itself).
files=$(cat "$list")
for f in $files; do
    case "$f" in
    /*) ;;
    *) continue ;; # only absolute paths, as the bundle writes them
    esac
    rm -f "$ROOT$f"
done
# The agent's own folders, deepest first, when empty.
for d in /usr/local/share/eds-agent/schemas /usr/local/share/eds-agent /etc/eds; do
    rmdir "$ROOT$d" 2>/dev/null || true
done

if [ "$purge" = 1 ]; then
    rm -rf "$ROOT/etc/eds" "$ROOT/var/lib/eds-agent" "$ROOT/var/run/eds-agent"
    rm -f "$ROOT/etc/default/eds-agent" "$ROOT"/var/log/eds-agent.log*
fi
echo "eds-agent: uninstalled$([ "$purge" = 1 ] && echo ', configuration, spool and logs purged')"
