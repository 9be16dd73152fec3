#!/usr/bin/env bash
# The README's main command: see EDS work on this machine in under a minute.
#
# Installs missing Debian packages (scripts/install-deps.sh), builds
# (scripts/build.sh), then starts, all on 127.0.0.1 and in a private temp
# folder:
#   - mosquitto with the project's broker-config (users eds-gateway, reader)
#     on port 1883, or a free port if 1883 is taken;
#   - eds-gateway on port 5883 (or a free port) with schemas/energy.json and a
#     device password file for myrio-01..myrio-03;
#   - three simulated agents: eds-agent --simulate 2 as myrio-01..myrio-03;
#   - mosquitto_sub -v -t 'energy/#' as user reader, whose output you see:
#     device status changes (retained), records, gateway stats;
#   - the live dashboard (dashboard/, scripts/build-dashboard.sh), served by
#     the same mosquitto on port 9001 (or a free one): open the URL it prints;
#   - the gateway's Prometheus metrics on port 9883 (or a free one).
# Runs until Ctrl-C (or --duration), then stops everything it started, by pid.
#
# Usage: scripts/run.sh [OPTIONS]
#   --duration SECONDS  stop by itself after SECONDS (for scripts and CI)
#   --agents N          number of simulated agents (default 3, at most 99)
#   --rate R            records per second per agent (default 2)
#   --broker-port PORT  mosquitto port (default 1883 if free, else a free one)
#   --gateway-port PORT gateway port (default 5883 if free, else a free one)
#   --dashboard-port PORT  dashboard port (default 9001 if free, else a free one)
#   --tls               agents connect over TLS with client certificates
#                       (scripts/make-certs.sh; gateway TLS port 5884 or free)
#   --no-build          skip install-deps and build; use the binaries as built
#   --keep              keep the temp folder (configs, logs) afterwards
#   -h, --help          this text
# Environment: BUILD_DIR (default build), JOBS (compile jobs).
# Without a terminal and with CI=true, a missing --duration defaults to 30 s.
# Exit status: 0 if records arrived from every agent, 1 otherwise, 2 usage.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

duration="" agents=3 rate=2 broker_port="" gateway_port="" dashboard_port="" build=1 keep=0 tls=0
need_value() { [ $# -ge 2 ] || {
    echo "run.sh: $1 needs a value" >&2
    exit 2
}; }
while [ $# -gt 0 ]; do
    case "$1" in
    --duration) need_value "$@"; duration=$2; shift ;;
    --agents) need_value "$@"; agents=$2; shift ;;
    --rate) need_value "$@"; rate=$2; shift ;;
    --broker-port) need_value "$@"; broker_port=$2; shift ;;
    --gateway-port) need_value "$@"; gateway_port=$2; shift ;;
    --dashboard-port) need_value "$@"; dashboard_port=$2; shift ;;
    --no-build) build=0 ;;
    --tls) tls=1 ;;
    --keep) keep=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
if [ -n "$duration" ] && ! is_uint "$duration"; then
    echo "run.sh: --duration wants whole seconds" >&2; exit 2
fi
if ! is_uint "$agents" || [ "$agents" -lt 1 ] || [ "$agents" -gt 99 ]; then
    echo "run.sh: --agents wants 1..99" >&2; exit 2
fi
if [ -z "$duration" ] && [ ! -t 1 ] && [ "${CI:-}" = true ]; then
    duration=30
    echo "run.sh: CI=true and no terminal: stopping after ${duration} s (--duration)"
fi

BUILD_DIR=${BUILD_DIR:-build}
if [ "$build" = 1 ]; then
    echo "== installing missing packages (scripts/install-deps.sh)"
    scripts/install-deps.sh
    echo "== building eds-gateway and eds-agent into $BUILD_DIR/ (scripts/build.sh)"
    BUILD_DIR=$BUILD_DIR TARGETS="eds-gateway eds-agent" scripts/build.sh
    echo "== assembling the dashboard into $BUILD_DIR/dashboard/ (scripts/build-dashboard.sh)"
    scripts/build-dashboard.sh "$BUILD_DIR/dashboard"
fi
BIN=$ROOT/$BUILD_DIR/bin
case "$BUILD_DIR" in /*) BIN=$BUILD_DIR/bin ;; esac
DASHBOARD_DIR=${BIN%/bin}/dashboard
for b in eds-gateway eds-agent; do
    [ -x "$BIN/$b" ] || { echo "run.sh: $BIN/$b not built (drop --no-build)" >&2; exit 1; }
done
MOSQUITTO=${EDS_MOSQUITTO:-/usr/sbin/mosquitto}
PY=/usr/bin/python3

# ---- helpers -----------------------------------------------------------------

# port_free PORT: true if nothing listens on 127.0.0.1:PORT (we can bind it).
port_free() {
    "$PY" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}
# pick_port PREFERRED: PREFERRED if free, else a free port.
pick_port() {
    if port_free "$1"; then echo "$1"; return; fi
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# listening PORT: something listens on 127.0.0.1:PORT (asked without connecting).
listening() { ss -Hltn "( sport = :$1 )" 2>/dev/null | grep -q .; }

# wait_for WHAT SECONDS CMD...: polls CMD every 0.1 s until it succeeds.
wait_for() {
    local what=$1 secs=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    echo "run.sh: timed out after ${secs} s waiting for $what" >&2
    return 1
}

# Processes we started, stopped in reverse order by pid.
pids=() names=()
started() { pids+=("$1"); names+=("$2"); }
stop_pid() { # pid name
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "run.sh: $2 (pid $pid) ignored SIGTERM for 5 s: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/eds-run.XXXXXX")
cleanup() {
    local rc=$?
    trap '' INT TERM
    local i
    local list=""
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        stop_pid "${pids[$i]}" "${names[$i]}"
        list="${names[$i]}(${pids[$i]}) $list"
    done
    [ -n "$list" ] && echo "== stopped: $list"
    if [ "$keep" = 1 ]; then
        echo "== kept $WORK (configs and logs)"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
# Ctrl-C / SIGTERM: leave the run loop, stop the agents, print the summary.
# The children run in their own sessions (setsid) so Ctrl-C reaches only us
# and everything stops in order.
interrupted=0
trap 'interrupted=1' INT TERM

fail() {
    echo "run.sh: $1" >&2
    [ -n "${2:-}" ] && [ -f "$2" ] && { echo "--- last lines of $2:" >&2; tail -n 20 "$2" >&2; }
    exit 1
}

# ---- mosquitto ---------------------------------------------------------------
broker_port=${broker_port:-$(pick_port 1883)}
gateway_port=${gateway_port:-$(pick_port 5883)}
tls_port=""
[ "$tls" = 1 ] && tls_port=$(pick_port 5884)
port_free "$broker_port" || fail "port $broker_port is taken"
port_free "$gateway_port" || fail "port $gateway_port is taken"
metrics_port=$(pick_port 9883)
dashboard=0
if [ -f "$DASHBOARD_DIR/index.html" ]; then
    dashboard=1
    dashboard_port=${dashboard_port:-$(pick_port 9001)}
    port_free "$dashboard_port" || fail "port $dashboard_port is taken"
fi

secret() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }
gw_pw=$(secret) reader_pw=$(secret) dashboard_pw=$(secret)
umask 077
mkdir -p "$WORK/persist" "$WORK/state"
: >"$WORK/mosquitto.passwd"
mosquitto_passwd -b "$WORK/mosquitto.passwd" eds-gateway "$gw_pw"
mosquitto_passwd -b "$WORK/mosquitto.passwd" reader "$reader_pw"
mosquitto_passwd -b "$WORK/mosquitto.passwd" dashboard "$dashboard_pw"
printf '%s\n' "$gw_pw" >"$WORK/broker.pw"

# The project's mosquitto.conf with only the listener, file paths, persistence
# folder and logging replaced (as tests/integration/edsrig.py does).
{
    echo "# generated by scripts/run.sh from broker-config/mosquitto.conf"
    grep -Ev '^[[:space:]]*(#|$)' broker-config/mosquitto.conf |
        grep -Ev '^[[:space:]]*(listener|port|bind_address|password_file|acl_file|persistence_location|log_dest|pid_file|user|include_dir)([[:space:]]|$)'
    echo "listener $broker_port 127.0.0.1"
    echo "password_file $WORK/mosquitto.passwd"
    echo "acl_file $ROOT/broker-config/acl"
    echo "persistence_location $WORK/persist/"
    echo "log_dest stderr" # into mosquitto.log, unbuffered
    echo "log_type subscribe" # so we know when the viewer has subscribed
    if [ "$dashboard" = 1 ]; then
        # broker-config/dashboard.conf with our port and folder.
        echo "listener $dashboard_port 127.0.0.1"
        grep -Ev '^[[:space:]]*(#|$)' broker-config/dashboard.conf |
            grep -Ev '^[[:space:]]*(listener|http_dir)([[:space:]]|$)'
        echo "http_dir $DASHBOARD_DIR"
    fi
    # As root, mosquitto would switch to user mosquitto, who cannot read $WORK.
    [ "$(id -u)" = 0 ] && echo "user root"
} >"$WORK/mosquitto.conf"

setsid "$MOSQUITTO" -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 &
started $! mosquitto
wait_for "mosquitto on port $broker_port" 10 listening "$broker_port" ||
    fail "mosquitto did not start" "$WORK/mosquitto.log"

echo "== mosquitto on 127.0.0.1:$broker_port (users eds-gateway, reader), eds-gateway on 127.0.0.1:$gateway_port"
[ "$tls" = 1 ] && echo "== TLS: agents connect to 127.0.0.1:$tls_port with client certificates (CN = device id)"
echo "== temp folder $WORK (configs, passwords, logs: mosquitto.log gateway.log myrio-NN.log)"
if [ "$dashboard" = 1 ]; then
    echo "== dashboard: http://127.0.0.1:$dashboard_port/#user=dashboard&password=$dashboard_pw (read-only; to send commands connect as reader, password $reader_pw)"
else
    echo "== no dashboard: $DASHBOARD_DIR not built (scripts/build-dashboard.sh; needs npm)"
fi
echo "== metrics: http://127.0.0.1:$metrics_port/metrics (Prometheus)"
echo "== try in another terminal: mosquitto_pub -h 127.0.0.1 -p $broker_port -u reader -P $reader_pw -t energy/myrio-01/cmd -m '{\"relay\":1}'"
if [ -n "$duration" ]; then
    echo "== live messages (mosquitto_sub -v -t 'energy/#'), stopping after ${duration} s:"
else
    echo "== live messages (mosquitto_sub -v -t 'energy/#'), Ctrl-C to stop:"
fi

# ---- viewer ------------------------------------------------------------------
# Subscribed before the gateway starts, so its first messages show too.
# mosquitto_sub writes to a file that tail shows: the file also lets us count.
: >"$WORK/sub.log"
setsid mosquitto_sub -h 127.0.0.1 -p "$broker_port" -u reader -P "$reader_pw" \
    -i "eds-run-viewer-$$" -v -t 'energy/#' >>"$WORK/sub.log" 2>&1 &
started $! mosquitto_sub
tail -n +1 -f "$WORK/sub.log" &
tail_pid=$!
started $tail_pid tail
wait_for "the viewer to subscribe" 10 grep -Eq "eds-run-viewer-$$ [0-2] energy/#" "$WORK/mosquitto.log" ||
    fail "mosquitto_sub did not subscribe" "$WORK/mosquitto.log"

# ---- devices and gateway -----------------------------------------------------
: >"$WORK/devices.passwd"
for ((i = 1; i <= agents; i++)); do
    dev=$(printf 'myrio-%02d' "$i")
    pw=$(secret)
    mosquitto_passwd -b "$WORK/devices.passwd" "$dev" "$pw"
    printf '%s\n' "$pw" >"$WORK/$dev.pw"
done

# TLS: a CA, the gateway's certificate for 127.0.0.1 and one per device.
gw_tls=() agent_port=$gateway_port
if [ "$tls" = 1 ]; then
    devs=()
    for ((i = 1; i <= agents; i++)); do devs+=("$(printf 'myrio-%02d' "$i")"); done
    scripts/make-certs.sh --host 127.0.0.1 "$WORK/tls" "${devs[@]}" >"$WORK/make-certs.log" 2>&1 ||
        fail "make-certs.sh failed" "$WORK/make-certs.log"
    gw_tls=(--tls-listener "$tls_port 127.0.0.1" --certfile "$WORK/tls/gateway.crt"
        --keyfile "$WORK/tls/gateway.key" --cafile "$WORK/tls/ca.crt"
        --require-certificate true)
    agent_port=$tls_port
fi

setsid "$BIN/eds-gateway" --listener "$gateway_port 127.0.0.1" "${gw_tls[@]}" \
    --broker-host 127.0.0.1 --broker-port "$broker_port" \
    --broker-username eds-gateway --broker-password-file "$WORK/broker.pw" \
    --schema "$ROOT/schemas/energy.json" --password-file "$WORK/devices.passwd" \
    --state-dir "$WORK/state" --stats-interval 5 --metrics-listener "$metrics_port 127.0.0.1" -v >"$WORK/gateway.log" 2>&1 &
started $! eds-gateway
wait_for "eds-gateway on port $gateway_port" 10 listening "$gateway_port" ||
    fail "eds-gateway did not start" "$WORK/gateway.log"
wait_for "the gateway's status on the broker" 10 grep -q '^energy/_gateway/status ' "$WORK/sub.log" ||
    fail "eds-gateway did not reach the broker" "$WORK/gateway.log"

# ---- agents ------------------------------------------------------------------
start_s=$SECONDS
for ((i = 1; i <= agents; i++)); do
    dev=$(printf 'myrio-%02d' "$i")
    mkdir -p "$WORK/spool-$dev"
    agent_tls=()
    [ "$tls" = 1 ] && agent_tls=(--tls --cafile "$WORK/tls/ca.crt" --cert "$WORK/tls/devices/$dev.crt"
        --key "$WORK/tls/devices/$dev.key")
    setsid "$BIN/eds-agent" --gateway "127.0.0.1:$agent_port" --device "$dev" "${agent_tls[@]}" \
        --password-file "$WORK/$dev.pw" --schema "$ROOT/schemas/energy.json" \
        --spool "$WORK/spool-$dev" --simulate "$rate" --cmd-stdout \
        >"$WORK/$dev.log" 2>&1 </dev/null &
    started $! "$dev"
done

# ---- run ---------------------------------------------------------------------
# Waits in short steps so Ctrl-C is handled at once; also notices a process
# that died.
alive_check() {
    local i
    for ((i = 0; i < ${#pids[@]}; i++)); do
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then
            echo "run.sh: ${names[$i]} (pid ${pids[$i]}) exited" >&2
            [ -f "$WORK/${names[$i]}.log" ] && tail -n 20 "$WORK/${names[$i]}.log" >&2
            [ "${names[$i]}" = eds-gateway ] && tail -n 20 "$WORK/gateway.log" >&2
            return 1
        fi
    done
}
status=0
while [ "$interrupted" = 0 ] && { [ -z "$duration" ] || [ $((SECONDS - start_s)) -lt "$duration" ]; }; do
    alive_check || { status=1; break; }
    sleep 0.2
done

# ---- summary -----------------------------------------------------------------
# Stop the agents first so their offline status shows, then report.
for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    case "${names[$i]}" in myrio-*) stop_pid "${pids[$i]}" "${names[$i]}" ;; esac
done
wait_for "offline status of the agents" 5 \
    test "$(grep -c '/status {"online":false' "$WORK/sub.log")" -ge "$agents" || true
stop_pid "$tail_pid" tail
echo
echo "== summary after $((SECONDS - start_s)) s:"
missing=0
for ((i = 1; i <= agents; i++)); do
    dev=$(printf 'myrio-%02d' "$i")
    n=$(grep -c "^energy/$dev/data " "$WORK/sub.log" || true)
    r=$(grep -c "^energy/$dev/rejected " "$WORK/sub.log" || true)
    s=s
    [ "$n" = 1 ] && s=
    echo "   $dev: $n record$s on energy/$dev/data, $r rejected"
    [ "$n" -gt 0 ] || missing=1
done
[ "$missing" = 0 ] || { status=1; echo "run.sh: some agent delivered no record (logs in $WORK; use --keep)" >&2; }
exit "$status"
