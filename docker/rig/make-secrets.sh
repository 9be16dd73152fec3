#!/bin/sh
# One-shot setup of the compose rig (service "secrets"): random passwords
# for the broker users (eds-gateway, reader) and the simulated devices,
# written to SECRETS_DIR (the rig's "secrets" volume) with mosquitto_passwd:
#   mosquitto.passwd   broker users (read by mosquitto, uid 1883)
#   broker.pw          eds-gateway's broker password (gateway, uid 10001)
#   devices.passwd     device credentials (gateway, uid 10001)
#   DEVICE.pw          each device's password (agents, uid 10002)
#   reader.pw          the reader's password (viewer)
# Existing files are kept, so restarts keep the same passwords.
# Environment: SECRETS_DIR (default /run/secrets/eds), DEVICES (default
# "myrio-01 myrio-02 myrio-03"), CHOWN (default 1: set the owners above;
# 0 when not root, e.g. in a test).
set -eu
dir=${SECRETS_DIR:-/run/secrets/eds}
devices=${DEVICES:-myrio-01 myrio-02 myrio-03}
chown_ok=${CHOWN:-1}
umask 077
mkdir -p "$dir"

secret() { head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
# own FILE UID: chown (if enabled) and make it readable by its owner only.
own() {
    [ "$chown_ok" = 1 ] && chown "$2" "$1"
    chmod 0400 "$1"
}

if [ ! -s "$dir/mosquitto.passwd" ]; then
    gw=$(secret)
    rd=$(secret)
    : >"$dir/mosquitto.passwd.tmp"
    mosquitto_passwd -b "$dir/mosquitto.passwd.tmp" eds-gateway "$gw"
    mosquitto_passwd -b "$dir/mosquitto.passwd.tmp" reader "$rd"
    printf '%s\n' "$gw" >"$dir/broker.pw"
    printf '%s\n' "$rd" >"$dir/reader.pw"
    mv "$dir/mosquitto.passwd.tmp" "$dir/mosquitto.passwd"
    own "$dir/mosquitto.passwd" 1883
    own "$dir/broker.pw" 10001
    own "$dir/reader.pw" 1883
fi
if [ ! -s "$dir/devices.passwd" ]; then
    : >"$dir/devices.passwd.tmp"
    for d in $devices; do
        pw=$(secret)
        mosquitto_passwd -b "$dir/devices.passwd.tmp" "$d" "$pw"
        printf '%s\n' "$pw" >"$dir/$d.pw"
        own "$dir/$d.pw" 10002
    done
    mv "$dir/devices.passwd.tmp" "$dir/devices.passwd"
    own "$dir/devices.passwd" 10001
fi
echo "make-secrets: $dir ready (broker users eds-gateway, reader; devices $devices)"
