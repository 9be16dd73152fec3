#!/usr/bin/python3
"""Splits the gateway's instructions per record between Paho and the project's own code.

Usage: cpu_split.py SMALL.out BIG.out RECORDS
  SMALL.out, BIG.out: callgrind files of two gateway runs (scripts/bench.sh cpu) whose
  record counts differ by RECORDS; every figure is (BIG - SMALL) / RECORDS, so start-up
  and shutdown cancel out.

Paho = MQTTAsync_send (called on the loop thread) + everything under the threads' start
routine, minus what runs there of ours: the publisher's callbacks, its connection thread
and the syncer thread. Own = the total minus Paho. Reads callgrind_annotate's inclusive
table (needs valgrind's callgrind_annotate on PATH)."""

import re
import subprocess
import sys

PAHO_ENTRIES = ["MQTTAsync_send", "start_thread"]
OURS_UNDER_THREADS = [
    "gw_publisher.c:on_publish_success", "gw_publisher.c:on_publish_failure",
    "gw_publisher.c:on_message", "gw_publisher.c:on_connection_lost",
    "gw_publisher.c:on_connect_success", "gw_publisher.c:on_connect_failure",
    "gw_publisher.c:supervise", "gw_syncer.c:run",
]
SHOWN = ["gw_server.c:gw_server_run", "eds_proto.c:eds_msg_parse",
         "eds_schema_validate.c:eds_schema_validate", "gw_session.c:on_line", "gw_server.c:end_batch",
         "gw_publisher.c:gw_publisher_dispatch"]


def inclusive(path):
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    costs, total = {}, 0
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(.*?)(?: \[[^\]]*\])?$", line)
        if not m:
            continue
        value, name = int(m.group(1).replace(",", "")), m.group(2)
        if name.startswith("PROGRAM TOTALS"):
            total = value
        costs[name] = max(costs.get(name, 0), value)
    return costs, total


def lookup(costs, key):
    """The largest cost of a function whose name ends in key (file:function or function)."""
    best = 0
    for name, value in costs.items():
        if name == key or name.endswith("/" + key) or name.endswith(":" + key):
            best = max(best, value)
    return best


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    (small, small_total), (big, big_total) = inclusive(sys.argv[1]), inclusive(sys.argv[2])
    n = int(sys.argv[3])

    def per(key):
        return (lookup(big, key) - lookup(small, key)) / n

    total = (big_total - small_total) / n
    paho = sum(per(k) for k in PAHO_ENTRIES) - sum(per(k) for k in OURS_UNDER_THREADS)
    print("  per record: total %s, Paho %s, the project's own code %s" % (
        format(round(total), ","), format(round(paho), ","), format(round(total - paho), ",")))
    for key in ["MQTTAsync_send"] + SHOWN:
        print("    %-40s %8s" % (key, format(round(per(key)), ",")))


if __name__ == "__main__":
    main()
