#!/usr/bin/python3
"""eds-gateway's life cycle: device status online/offline (retained), the gateway's own
status and will, graceful shutdown (shutting_down, offline, exit 0), a crash (SIGKILL) and
restart leaving no stale online device, and a valgrind-clean short run."""

import datetime
import json
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edsrig  # noqa: E402
from gwrig import Gateway, GatewayTestCase, data_msg, hello, in_asan_build, record  # noqa: E402

DEV = "myrio-01"
ONLINE = lambda m: m.json()["online"]  # noqa: E731
OFFLINE = lambda m: not m.json()["online"]  # noqa: E731
RFC3339 = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"


def parse_since(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)


class StatusTest(GatewayTestCase):
    def assertRecent(self, since):
        self.assertRegex(since, RFC3339)
        now = datetime.datetime.now(datetime.timezone.utc)
        self.assertLess(abs((now - parse_since(since)).total_seconds()), 60, since)

    def test_status_online_then_offline_retained(self):
        c, _ = self.session(DEV)
        port = c.sock.getsockname()[1]
        msg = self.retained("energy/%s/status" % DEV, ONLINE)
        self.assertRegex(msg.payload, rb'^\{"online":true,"since":"[^"]+","peer":"[^"]+"\}$')
        st = msg.json()
        self.assertEqual(st["peer"], "127.0.0.1:%d" % port)
        self.assertRecent(st["since"])
        c.close()
        msg = self.retained("energy/%s/status" % DEV, OFFLINE)
        self.assertRegex(msg.payload, rb'^\{"online":false,"since":"[^"]+"\}$')
        self.assertRecent(msg.json()["since"])

    def test_gateway_status_online_and_offline_by_will_after_sigkill(self):
        self.retained("energy/_gateway/status", ONLINE)
        self.gw.kill()
        # The broker publishes the will when it notices the dead connection (socket closed).
        self.sub.wait_for_message("energy/_gateway/status",
                                  match=lambda m: m.payload == b'{"online":false}')
        self.assertEqual(self.retained("energy/_gateway/status").payload, b'{"online":false}')

    def test_after_sigkill_and_restart_no_device_stays_online_that_is_not_connected(self):
        a, _ = self.session("myrio-01", stream="sa")
        a.send_json(data_msg(1, record(1)))
        a.recv_json()
        b, _ = self.session("myrio-02", stream="sb")
        # myrio-03 says hello with the default stream and sends nothing.
        c3 = self.connect()
        c3.send_json(hello("myrio-03", "pw-03"))
        self.assertEqual(json.loads(c3.recv_line())["type"], "welcome")
        for dev in ("myrio-01", "myrio-02", "myrio-03"):
            self.retained("energy/%s/status" % dev, ONLINE)
        self.gw.kill()
        for c in (a, b, c3):
            c.close()
        self.sub.clear()
        self.gw.start()
        a, _ = self.session("myrio-01", stream="sa")  # only myrio-01 comes back
        self.sub.wait_for(lambda ms: {m.topic for m in ms} >= {
            "energy/myrio-02/status", "energy/myrio-03/status"},
            what="statuses of myrio-02 and myrio-03 after the restart")
        self.assertTrue(self.retained("energy/myrio-01/status", ONLINE).json()["online"])
        self.assertFalse(self.retained("energy/myrio-02/status").json()["online"])
        self.assertFalse(self.retained("energy/myrio-03/status").json()["online"])
        self.assertTrue(self.retained("energy/_gateway/status").json()["online"])


class BrokerCrashStatusTest(GatewayTestCase):
    def test_statuses_are_published_again_after_a_broker_crash(self):
        c, _ = self.session(DEV)
        peer = "127.0.0.1:%d" % c.sock.getsockname()[1]
        self.retained("energy/%s/status" % DEV, ONLINE)
        self.sub.close()
        mark = self.gw.mark()
        self.broker.kill()  # SIGKILL: whatever mosquitto had not saved is gone
        for p in os.listdir(self.broker.persist_dir):  # and nothing was saved
            os.unlink(os.path.join(self.broker.persist_dir, p))
        self.broker.start()
        self.gw.wait_for_line(r"connected to the broker", timeout=40, start=mark)
        self.sub = edsrig.Subscriber(self.broker, "energy/#")
        self.addCleanup(self.sub.close)
        st = self.retained("energy/%s/status" % DEV,
                           lambda m: m.json().get("peer") == peer).json()
        self.assertTrue(st["online"])
        self.assertTrue(self.retained("energy/_gateway/status").json()["online"])
        # The agent's connection survived it all.
        c.send_json(data_msg(1, record(1)))
        self.assertEqual(c.recv_json(timeout=20), {"type": "ack", "seq": 1})


class ShutdownTest(GatewayTestCase):
    gw_options = {"shutdown_timeout": 2}

    def test_sigterm_sends_shutting_down_marks_offline_and_exits_0(self):
        a, _ = self.session("myrio-01")
        b, _ = self.session("myrio-02")
        a.send_json(data_msg(1, record(1)))
        self.assertEqual(a.recv_json(), {"type": "ack", "seq": 1})
        self.gw.proc.signal(15)
        self.assertClosedWithError(a, "shutting_down")
        self.assertClosedWithError(b, "shutting_down")
        self.assertEqual(self.gw.stop(), 0)
        for dev in ("myrio-01", "myrio-02"):
            st = self.retained("energy/%s/status" % dev)
            self.assertFalse(st.json()["online"], dev)
        self.assertEqual(self.retained("energy/_gateway/status").payload, b'{"online":false}')
        self.assertFalse(edsrig.can_connect(self.gw.port))

    def test_sigterm_finishes_records_in_flight_first(self):
        c, _ = self.session()
        n = 300
        c.send_raw(b"".join(json.dumps(data_msg(s, record(s)), separators=(",", ":")).encode()
                            + b"\n" for s in range(1, n + 1)))
        self.assertEqual(c.recv_json(), {"type": "ack", "seq": 1})
        self.gw.proc.signal(15)
        got = c.wait_closed()
        self.assertEqual(got[-1]["code"], "shutting_down")
        acks = [g["seq"] for g in got[:-1]]
        self.assertEqual(acks, list(range(2, len(acks) + 2)), "acks in order")
        self.assertEqual(self.gw.stop(), 0)
        # Every acked record is on the broker.
        acked = len(acks) + 1
        self.assertGreaterEqual(len(self.wait_payloads(DEV, acked)), acked)

    def test_sigint_stops_cleanly_too(self):
        c, _ = self.session()
        self.gw.proc.signal(2)
        self.assertClosedWithError(c, "shutting_down")
        self.assertEqual(self.gw.stop(), 0)

    def test_sigterm_with_broker_down_exits_within_shutdown_timeout(self):
        c, _ = self.session()
        mark = self.gw.mark()
        self.broker.stop()
        self.gw.wait_for_line("lost the broker", start=mark)
        c.send_json(data_msg(1, record(1)))  # cannot be confirmed
        c.send_json({"type": "ping"})
        self.assertEqual(c.recv_line(), b'{"type":"pong"}')
        self.gw.proc.signal(15)
        # After shutdown_timeout (2 s) the gateway stops; the unconfirmed record is not acked.
        got = c.wait_closed(timeout=15)
        self.assertEqual([g["code"] for g in got], ["shutting_down"])
        self.assertEqual(self.gw.stop(), 0)
        self.broker.start()
        self.gw.start()
        c, w = self.session()
        self.assertEqual(w["last_seq"], 0)


@unittest.skipIf(in_asan_build(), "valgrind does not run sanitizer builds")
class ValgrindTest(GatewayTestCase):
    auto_rig = False

    def test_short_run_is_valgrind_clean(self):
        self.start_rig(valgrind=True)
        # It really runs under valgrind's memcheck (valgrind -q prints nothing when clean).
        self.assertIn("memcheck", os.readlink("/proc/%d/exe" % self.gw.pid))
        c, _ = self.session()
        for s in range(1, 6):
            c.send_json(data_msg(s, record(s)))
        c.send_json(data_msg(6, {"power_factor": 5}))
        c.send_raw(b"not json\n")
        replies = [c.recv_json(timeout=30) for _ in range(7)]
        self.assertEqual(sorted(r["type"] for r in replies), ["ack"] * 5 + ["error", "nack"])
        self.gw.sighup()
        self.gw.proc.signal(15)
        self.assertClosedWithError(c, "shutting_down", timeout=30)
        rc = self.gw.stop(expect=None)
        out = self.gw.output()
        self.assertEqual(rc, 0, "valgrind exit code (99 = errors or definite leaks):\n" + out)
        self.assertNotRegex(out, r"definitely lost: [1-9]")
        self.assertNotRegex(out, r"Invalid (read|write)|uninitialised")


if __name__ == "__main__":
    unittest.main()
