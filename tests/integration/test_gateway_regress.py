#!/usr/bin/python3
"""Regressions found by a code review of the gateway's engine (gw_server.c, gw_state.c).

Each test states what a user of eds-gateway would check. Every one of them
failed before its fix (they were written as expected failures first) and now
guards against the bug coming back; the comment above each names the bug."""

import json
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edsrig  # noqa: E402
from edsrig import RigTimeout  # noqa: E402
from gwrig import GatewayTestCase, data_msg, line_of, raw_lines_until_closed, record  # noqa: E402

DEV = "myrio-01"


def records(first, last):
    return b"".join(line_of(data_msg(s, record(s))) + b"\n" for s in range(first, last + 1))


class RegressTest(GatewayTestCase):
    auto_rig = False

    # was a bug, now fixed: see the test's name and docstring
    def test_max_rate_slows_a_device_down(self):
        """max_rate 10: 40 records pipelined at once take about 3 s to be acked (the first
        second's burst of 10, then 10 per second), not a few milliseconds."""
        self.start_rig({"max_rate": 10})
        c, _ = self.session(DEV)
        t0 = time.monotonic()
        c.send_raw(records(1, 40))
        for seq in range(1, 41):
            self.assertEqual(c.recv_json(20), {"type": "ack", "seq": seq})
        self.assertGreaterEqual(time.monotonic() - t0, 2.5)

    # was a bug, now fixed: see the test's name and docstring
    def test_a_paused_connection_is_not_idle(self):
        """Broker down, the window full: the gateway stops reading this agent. The agent
        keeps pinging; the gateway must not close it as 'idle past idle_timeout'."""
        self.start_rig({"idle_timeout": 2, "window": 4})
        c, _ = self.session(DEV)
        self.broker.stop()
        self.gw.wait_for_line(r"lost the broker", 20)
        c.send_raw(records(1, 4))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            c.send_json({"type": "ping"})
            try:
                reply = c.recv_json(0.5)
            except RigTimeout:
                continue
            self.assertNotEqual(reply.get("code"), "timeout", reply)

    # was a bug, now fixed: see the test's name and docstring
    def test_line_too_long_after_a_pause(self):
        """window 1: a too-long line kept by the framer while reading was paused still gets
        line_too_long and a close, like one that arrives while reading."""
        self.start_rig({"max_line": 256, "window": 1})
        c, _ = self.session(DEV)
        big = b'{"type":"data","seq":3,"data":{"x":"' + b"a" * 400 + b'"}}\n'
        c.send_raw(records(1, 2) + big)
        self.assertClosedWithError(c, "line_too_long", timeout=5,
                                   before=[{"type": "ack", "seq": 1}, {"type": "ack", "seq": 2}])

    # was a bug, now fixed: see the test's name and docstring
    def test_offline_status_while_records_fill_max_inflight(self):
        """A device that disconnects while its records occupy every publish slot still ends
        with a retained {"online":false} status once the broker has caught up."""
        self.start_rig({"max_inflight": 1})
        c, _ = self.session(DEV)
        topic = self.gw.topic(DEV, "status")
        self.retained(topic, match=lambda m: m.json().get("online") is True)
        os.kill(self.broker.pid, signal.SIGSTOP)  # no PUBACK: the one slot stays taken
        try:
            c.send_raw(records(1, 3) + b'{"type":"ping"}\n')
            # The pong comes after the records were read and the first was published.
            self.assertEqual(c.recv_json(10), {"type": "pong"})
            c.close()
            self.gw.wait_for_line(r"myrio-01: closing", 10)
        finally:
            os.kill(self.broker.pid, signal.SIGCONT)
        self.retained(topic, match=lambda m: m.json().get("online") is False, timeout=10)

    # was a bug, now fixed: see the test's name and docstring
    def test_no_line_longer_than_max_line_to_the_agent(self):
        """A command bigger than max_line (the agent's too, by default) is not sent: the
        agent would drop the connection, get it again after the reconnect, forever."""
        self.start_rig()
        c, _ = self.session(DEV)
        reader = edsrig.MqttClient(self.broker, edsrig.READER_USER, edsrig.READER_PASSWORD)
        self.addCleanup(reader.close)
        reader.publish(self.gw.topic(DEV, "cmd"), json.dumps({"blob": "x" * 70000}), qos=1)
        reader.publish(self.gw.topic(DEV, "cmd"), json.dumps({"small": 1}), qos=1)
        while True:  # until the small command, which comes after the big one
            line = c.recv_line(10)
            self.assertLessEqual(len(line) + 1, 65536, "a %d-byte line" % (len(line) + 1))
            if json.loads(line).get("data") == {"small": 1}:
                break

    # was a bug, now fixed: see the test's name and docstring
    def test_entry_after_a_torn_state_line_survives(self):
        """A crash left half a line at the end of state.log: the next entry must not be
        glued onto it (and lost at the next restart)."""
        self.start_rig(start=False)
        os.makedirs(self.gw.state_dir, exist_ok=True)
        with open(os.path.join(self.gw.state_dir, "state.log"), "w") as f:
            f.write("myrio-01 s1 12\nmyrio-01 s1 1")
        self.gw.start()
        c, welcome = self.session(DEV)
        self.assertEqual(welcome["last_seq"], 12)
        c.send_json(data_msg(13, record(13)))
        self.assertEqual(c.recv_json(10), {"type": "ack", "seq": 13})
        c.close()
        self.gw.stop()
        self.gw.start()
        _, welcome = self.session(DEV)
        self.assertEqual(welcome["last_seq"], 13)

    # was a bug, now fixed: see the test's name and docstring
    def test_compaction_keeps_command_only_ids_out_of_the_journal(self):
        """A command for an id that never connected gets no status, also after the state
        journal was compacted and the gateway restarted."""
        self.start_rig({"window": 1024, "stats_interval": 0.2})
        reader = edsrig.MqttClient(self.broker, edsrig.READER_USER, edsrig.READER_PASSWORD)
        self.addCleanup(reader.close)
        reader.publish(self.gw.topic("ghost-1", "cmd"), '{"x":1}', qos=1)
        # The gateway has taken it (ghost-1 is its first device entry) once stats count it.
        self.sub.wait_for_message(self.gw.topic("_gateway", "stats"), 10,
                                  lambda m: m.json()["cmds_in"] >= 1)
        # A 64-character stream makes each journal line about 80 bytes. The gateway writes
        # one line per device per batch, so one record per round trip grows the journal
        # by a line each; past the 1 MiB threshold it is rewritten (compacted) and its size
        # drops below its peak.
        c, _ = self.session(DEV, stream="s" * 64)
        state = os.path.join(self.gw.state_dir, "state.log")
        seq, peak = 1, 0
        while seq <= 30000:
            c.send_raw(records(seq, seq))
            c.recv_json(10)
            seq += 1
            if seq % 100:
                continue
            size = os.path.getsize(state)
            if size < peak:
                break
            peak = size
        self.assertLess(seq, 30000, "state.log was never compacted")
        c.close()
        self.gw.stop()
        self.sub.clear()
        self.gw.start()
        # On connect the gateway publishes every known device's status in index order:
        # ghost-1 (index 0) would come before myrio-01.
        self.sub.wait_for_message(self.gw.topic(DEV, "status"), 10)
        self.assertEqual(self.sub.messages(self.gw.topic("ghost-1", "status")), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
