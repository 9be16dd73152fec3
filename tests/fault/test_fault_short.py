#!/usr/bin/env python3
"""The fault rig's short version, run by the test command: every scenario once
with a few hundred records per agent, with the gateway's broker link at MQTT 5 (the
default); then the scenarios where the MQTT session matters (gateway kill, broker
restart, link cut) again at MQTT 3.1.1. Exit 77 (ctest: skipped) where network
namespaces are not available, saying why; never a silent pass.
EDS_FAULT_MQTT=5 or EDS_FAULT_MQTT=3.1.1 runs every scenario at that version only."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultrig  # noqa: E402


def main():
    why = faultrig.available()
    if why:
        print("SKIPPED: fault rig not available: %s" % why)
        return 77
    records = int(os.environ.get("EDS_FAULT_RECORDS", "400"))
    rate = float(os.environ.get("EDS_FAULT_RATE", "150"))
    only = os.environ.get("EDS_FAULT_MQTT")
    if only:
        results = faultrig.run(list(faultrig.SCENARIOS), records, rate, mqtt_version=only)
    else:
        results = faultrig.run(list(faultrig.SCENARIOS), records, rate, mqtt_version="5")
        results += faultrig.run(["gateway_kill", "broker_restart", "linkcut"], records, rate,
                                mqtt_version="3.1.1")
    bad = [r for r in results if not r.ok]
    for r in bad:
        print("FAILED: %s" % r.line())
    passed = len(results) - len(bad)
    print("%d passed, %d failed" % (passed, len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
