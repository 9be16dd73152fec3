#!/usr/bin/env bash
# Runs the EDS benchmark with one command and prints its tables (docs/performance.md).
# Usage: scripts/bench.sh [--quick] [throughput] [qos2] [connections] [cpu]   (default: all)
#   throughput   10 agents x 20,000 records, window 64, QoS 1, vs the broker alone
#   qos2         the same at QoS 2 (the gateway's exactly-once mode), vs the broker alone at QoS 2
#   connections  10,000 agent connections on one gateway, 5,000 records/s spread over them
#   cpu          instructions per record (callgrind), and where they go
#   --quick      smaller sizes (a minute), to check that everything works
# Builds eds-gateway and eds-bench into $BUILD_DIR (default build-bench) if needed, starts
# its own mosquitto (the project's broker-config on a free loopback port) and its own
# gateways, and stops them by pid. JSON results and logs go to $OUT (default
# $BUILD_DIR/bench-results/<time>).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_DIR=${BUILD_DIR:-build-bench}
JOBS=${JOBS:-2}
PY=/usr/bin/python3

quick=0
scenarios=()
for arg in "$@"; do
    case "$arg" in
    --quick) quick=1 ;;
    throughput | qos2 | connections | cpu) scenarios+=("$arg") ;;
    -h | --help)
        sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "bench: unknown argument '$arg' (see --help)" >&2
        exit 2
        ;;
    esac
done
[ ${#scenarios[@]} -gt 0 ] || scenarios=(throughput qos2 connections cpu)

# ---- build ----
scripts/install-deps.sh
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$BUILD_DIR" --target eds-gateway eds-bench -j "$JOBS" -- --no-print-directory >/dev/null
GATEWAY=$ROOT/$BUILD_DIR/bin/eds-gateway
BENCH=$ROOT/$BUILD_DIR/bin/eds-bench
OUT=${OUT:-$ROOT/$BUILD_DIR/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/eds-bench.XXXXXX)

# ---- processes we start, stopped by pid ----
STARTED=()
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

stop_pid() { # pid: SIGTERM, wait up to 20 s, then SIGKILL
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port seconds what
    local deadline=$((SECONDS + $2))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        if [ $SECONDS -ge $deadline ]; then
            echo "bench: $3 did not listen on port $1 within $2 s" >&2
            return 1
        fi
        sleep 0.1
    done
}

# Open files: 10,000 agent sockets in the bench and as many in the gateway.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# ---- broker: the project's mosquitto.conf (tests/integration/edsrig.py adapts it) ----
# max_queued_messages 1000000, as broker-config has it now. With 10000, Debian's mosquitto
# 2.0.11 (2.0.11-1.2+deb12u2) dropped QoS 1 messages for a subscriber that was only a few
# hundred messages behind (see docs/performance.md), which would measure drops, not speed.
# max_queued_bytes 0 (no byte bound, broker-config has 64 MiB): at QoS 2 the subscriber falls
# behind the ceiling publishers by more than 64 MiB of queue and mosquitto drops messages.
BROKER_EXTRA=${BROKER_EXTRA:-max_queued_messages 1000000;max_queued_bytes 0}
BROKER_PORT=$(free_port)
mkdir -p "$WORK/broker/persist"
$PY - "$WORK/broker" "$BROKER_PORT" "$BROKER_EXTRA" <<'PYEOF'
import os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "tests", "integration"))
import edsrig
work, port, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3]
edsrig.make_password_file(os.path.join(work, "passwd"), {
    edsrig.GATEWAY_USER: edsrig.GATEWAY_PASSWORD, edsrig.READER_USER: edsrig.READER_PASSWORD})
with open(os.path.join(work, "mosquitto.conf"), "w") as f:
    f.write(edsrig.make_broker_config(port, work, os.path.join(work, "passwd"),
                                      os.path.join(work, "persist"),
                                      extra_lines=[l for l in extra.split(";") if l.strip()]))
with open(os.path.join(work, "gw.pw"), "w") as f:
    f.write(edsrig.GATEWAY_PASSWORD + "\n")
with open(os.path.join(work, "reader.pw"), "w") as f:
    f.write(edsrig.READER_PASSWORD + "\n")
PYEOF
/usr/sbin/mosquitto -c "$WORK/broker/mosquitto.conf" >"$OUT/mosquitto.log" 2>&1 &
BROKER_PID=$!
STARTED+=("$BROKER_PID")
wait_port "$BROKER_PORT" 10 mosquitto

# ---- gateway ----
GW_PID=""
GW_PORT=""
# Every bench client comes from 127.0.0.1 and they connect at once: no per-address cap,
# and all of them may wait for their hello together.
start_gateway() { # name max_clients [prefix command...]; QoS from $GW_QOS (default 1)
    local name=$1 max_clients=$2
    shift 2
    GW_PORT=$(free_port)
    rm -rf "$WORK/state-$name"
    "$@" "$GATEWAY" --listener "$GW_PORT 127.0.0.1" --broker-host 127.0.0.1 \
        --broker-port "$BROKER_PORT" --broker-username eds-gateway \
        --broker-password-file "$WORK/broker/gw.pw" --client-id "eds-gateway-bench-$name" \
        --allow-anonymous true --schema "$ROOT/schemas/energy.json" \
        --state-dir "$WORK/state-$name" --max-clients "$max_clients" --qos "${GW_QOS:-1}" \
        --max-conn-per-ip 0 --max-unauthenticated "$max_clients" \
        --stats-interval 0 $GATEWAY_OPTS >"$OUT/gateway-$name.log" 2>&1 &
    GW_PID=$!
    STARTED+=("$GW_PID")
    wait_port "$GW_PORT" 120 "eds-gateway ($name)"
}
GATEWAY_OPTS=${GATEWAY_OPTS:-}

top_functions() { # callgrind.out [annotate options]: the first 15 rows of the function table
    local file=$1
    shift
    { callgrind_annotate "$@" "$file" 2>/dev/null || true; } |
        awk '/file:function/ { table = 1; getline; next } table && NF && n++ < 15' |
        sed -E 's|\[/[^]]*/([^/]*)\]$|[\1]|; s|^|    |'
}

bench() { # name args...: runs eds-bench against the current gateway, table to stdout
    local name=$1
    shift
    "$BENCH" --gateway "127.0.0.1:$GW_PORT" --broker "127.0.0.1:$BROKER_PORT" \
        --broker-password-file "$WORK/broker/gw.pw" --sub-password-file "$WORK/broker/reader.pw" \
        --json-file "$OUT/$name.json" "$@" || echo "bench: eds-bench $name reported a problem (exit $?)"
}

echo "EDS benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "versions: $(/usr/sbin/mosquitto -h 2>/dev/null | sed -n 1p), paho-mqtt-c $(dpkg-query -W -f='${Version}' libpaho-mqtt1.3 2>/dev/null || echo '?'), gcc $(gcc -dumpfullversion)"
echo "gateway: $GATEWAY   broker: 127.0.0.1:$BROKER_PORT (pid $BROKER_PID)   results: $OUT"
echo

for s in "${scenarios[@]}"; do
    case "$s" in
    throughput)
        if [ $quick = 1 ]; then n=10 m=2000; else n=10 m=20000; fi
        echo "== (a) throughput: $n connections x $m records, window 64, QoS 1 =="
        start_gateway throughput 1024
        bench throughput --gateway-pid "$GW_PID" --connections $n --records $m --window 64 \
            --qos 1 --timeout 180
        stop_gateway_pid=$GW_PID
        stop_pid "$stop_gateway_pid"
        echo
        ;;
    qos2)
        if [ $quick = 1 ]; then n=10 m=2000; else n=10 m=20000; fi
        echo "== (a2) throughput at QoS 2 (exactly once): $n connections x $m records, window 64 =="
        # broker-config's max_inflight_messages is 100: the gateway may keep that many QoS 2
        # flows open (docs/gateway.md, broker_receive_maximum).
        GW_QOS=2 GATEWAY_OPTS="$GATEWAY_OPTS --broker-receive-maximum 100" start_gateway qos2 1024
        bench qos2 --gateway-pid "$GW_PID" --connections $n --records $m --window 64 \
            --qos 2 --timeout 240
        stop_pid "$GW_PID"
        echo
        ;;
    connections)
        if [ $quick = 1 ]; then n=2000 m=5 rate=1000; else n=10000 m=10 rate=5000; fi
        echo "== (b) $n concurrent connections, $rate records/s spread over them, QoS 1 =="
        start_gateway connections $((n + 100))
        bench connections --gateway-pid "$GW_PID" --connections $n --records $m --window 4 \
            --rate $rate --qos 1 --ceiling-clients 10 --timeout 180
        stop_pid "$GW_PID"
        echo
        ;;
    cpu)
        if [ $quick = 1 ]; then small=500 big=2500; else small=2000 big=12000; fi
        echo "== (c) CPU per record: gateway under callgrind, 1 connection x $small and x $big records =="
        declare -A IR
        for m in $small $big; do
            start_gateway "cpu$m" 64 valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$m.out"
            "$BENCH" --gateway "127.0.0.1:$GW_PORT" --broker "127.0.0.1:$BROKER_PORT" \
                --broker-password-file "$WORK/broker/gw.pw" \
                --sub-password-file "$WORK/broker/reader.pw" --gateway-only --connections 1 \
                --records $m --window 64 --qos 1 --timeout 240 --drain 5 \
                --json-file "$OUT/cpu$m.json" >"$OUT/cpu$m.txt" ||
                echo "bench: eds-bench cpu$m reported a problem: $(tail -2 "$OUT/cpu$m.txt")"
            stop_pid "$GW_PID"
            IR[$m]=$(sed -n 's/^summary: *//p' "$OUT/callgrind.$m.out")
            echo "  $m records: gateway total $(printf "%'d" "${IR[$m]}") instructions (Ir)"
        done
        per=$(((IR[$big] - IR[$small]) / (big - small)))
        echo "  => $(printf "%'d" $per) instructions per record (difference of the two runs / $((big - small)))"
        $PY bench/cpu_split.py "$OUT/callgrind.$small.out" "$OUT/callgrind.$big.out" $((big - small)) ||
            echo "bench: the Paho/own split failed"
        echo "  where they go (self cost, $big-record run, top 15 of all threads; ??? = no symbols):"
        top_functions "$OUT/callgrind.$big.out"
        echo "  inclusive (a function and what it calls), top 15:"
        top_functions "$OUT/callgrind.$big.out" --inclusive=yes
        echo
        ;;
    esac
done
stop_pid "$BROKER_PID"
echo "done; results in $OUT"
