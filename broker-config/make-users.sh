#!/bin/sh
# Creates (or replaces) the Mosquitto password file for EDS with two users:
# the gateway's MQTT user and a local reader user.
#
#   sudo ./make-users.sh /etc/mosquitto/eds/passwd
#
# Passwords are asked for interactively (mosquitto_passwd prompts twice).
# For unattended installs set EDS_GATEWAY_PASSWORD and EDS_READER_PASSWORD in
# the environment; note that they are then passed to mosquitto_passwd on its
# command line (-b), visible to other local users in ps while it runs.
# EDS_GATEWAY_USER and EDS_READER_USER override the user names (defaults
# eds-gateway and reader; the acl file names them, keep both in step).
#
# The gateway's password goes into the file named by the gateway's
# broker_password_file, the reader's to whoever reads. This file holds salted
# hashes only.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 PASSWORD_FILE" >&2
    exit 2
fi
file=$1
gw_user=${EDS_GATEWAY_USER:-eds-gateway}
rd_user=${EDS_READER_USER:-reader}

if ! command -v mosquitto_passwd >/dev/null 2>&1; then
    echo "$0: mosquitto_passwd not found (apt-get install mosquitto)" >&2
    exit 1
fi

umask 077
tmp=$(mktemp "${file}.XXXXXX")
trap 'rm -f "$tmp"' EXIT

add_user() { # user password-or-empty
    if [ -n "$2" ]; then
        mosquitto_passwd -b "$tmp" "$1" "$2"
    else
        echo "Password for MQTT user $1:" >&2
        mosquitto_passwd "$tmp" "$1"
    fi
}

add_user "$gw_user" "${EDS_GATEWAY_PASSWORD:-}"
add_user "$rd_user" "${EDS_READER_PASSWORD:-}"

# The broker (user mosquitto) must read it; nobody else.
if getent group mosquitto >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    chgrp mosquitto "$tmp"
    chmod 640 "$tmp"
fi
mv "$tmp" "$file"
trap - EXIT
echo "wrote $file (users: $gw_user, $rd_user); restart or reload mosquitto to apply" >&2
