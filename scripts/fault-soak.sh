#!/usr/bin/env bash
# The fault rig's long version (needs root): every scenario with many records,
# repeated ROUNDS times. Prints sent/acked/delivered/lost/duplicated per run.
# Usage: scripts/fault-soak.sh [ROUNDS] [RECORDS_PER_AGENT] [RATE_PER_AGENT] [SCENARIO...]
# (--mqtt-version 3.1.1 among the scenarios runs the broker link at 3.1.1; default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
records=${2:-5000}
rate=${3:-300}
shift $(($# < 3 ? $# : 3))
scripts/install-deps.sh
BUILD_DIR=build scripts/build.sh
status=0
for r in $(seq 1 "$rounds"); do
    echo "== round $r/$rounds"
    EDS_BIN_DIR=$PWD/build/bin /usr/bin/python3 tests/fault/faultrig.py --records "$records" \
        --rate "$rate" "$@" || status=1
done
exit "$status"
