#!/usr/bin/python3
"""eds-gateway's fatal errors after authentication: idle timeout, line_too_long, replaced,
server_busy (shutting_down is in test_gateway_lifecycle.py)."""

import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gwrig import GatewayTestCase, data_msg, hello, line_of, record, wait_until  # noqa: E402


class IdleTimeoutTest(GatewayTestCase):
    gw_options = {"idle_timeout": 1}

    def test_idle_past_idle_timeout_closes_with_timeout(self):
        c, _ = self.session()
        # Traffic keeps it open: pings for 2 s (twice idle_timeout), each answered.
        t_end = time.monotonic() + 2
        while time.monotonic() < t_end:
            c.send_json({"type": "ping"})
            self.assertEqual(c.recv_line(), b'{"type":"pong"}')
            self.assertRaises(edsrig_timeout(), c.recv_line, 0.3)  # nothing else comes
        t0 = time.monotonic()
        self.assertClosedWithError(c, "timeout", timeout=5)
        self.assertGreaterEqual(time.monotonic() - t0, 0.6, "closed long before idle_timeout")
        st = self.sub.wait_for_message("energy/myrio-01/status",
                                       match=lambda m: not m.json()["online"])
        self.assertEqual(sorted(st.json()), ["online", "since"])


def edsrig_timeout():
    import edsrig
    return edsrig.RigTimeout


class LineTooLongTest(GatewayTestCase):
    gw_options = {"max_line": 128}
    gw_kwargs = {"schema": None}

    def padded(self, seq, total):
        """A data line of exactly `total` bytes including the LF."""
        base = line_of(data_msg(seq, {"pad": ""}))
        return line_of(data_msg(seq, {"pad": "x" * (total - 1 - len(base))})) + b"\n"

    def test_line_of_max_line_is_accepted_one_more_is_fatal(self):
        c, _ = self.session()
        line = self.padded(1, 128)
        self.assertEqual(len(line), 128)
        c.send_raw(line)
        self.assertEqual(c.recv_line(), b'{"type":"ack","seq":1}')
        c.send_raw(self.padded(2, 129))
        self.assertClosedWithError(c, "line_too_long")
        # The record never reached the broker; the first did.
        self.assertEqual(len(self.wait_payloads("myrio-01", 1)), 1)

    def test_long_line_without_newline_is_fatal_too(self):
        c, _ = self.session()
        c.send_raw(b"{" + b" " * 4000)  # the gateway must not wait for the end of it
        self.assertClosedWithError(c, "line_too_long")

    def test_long_line_before_hello(self):
        c = self.connect()
        c.send_raw(b"x" * 300 + b"\n")
        self.assertClosedWithError(c, "line_too_long")


class ReplacedTest(GatewayTestCase):
    def test_second_connection_of_a_device_replaces_the_first(self):
        old, _ = self.session("myrio-01", stream="s1")
        old.send_json(data_msg(1, record(1)))
        self.assertEqual(old.recv_json(), {"type": "ack", "seq": 1})
        new, welcome = self.session("myrio-01", stream="s1")
        self.assertEqual(welcome["last_seq"], 1)
        self.assertClosedWithError(old, "replaced")
        new.send_json(data_msg(2, record(2)))
        self.assertEqual(new.recv_json(), {"type": "ack", "seq": 2})
        # The device is online with the new peer (the replaced connection did not mark it
        # offline after).
        new_peer = "127.0.0.1:%d" % new.sock.getsockname()[1]
        retained = self.retained("energy/myrio-01/status",
                                 lambda m: m.json().get("peer") == new_peer).json()
        self.assertTrue(retained["online"], retained)
        self.assertEqual(retained["peer"], new_peer)

    def test_other_devices_are_not_replaced(self):
        a, _ = self.session("myrio-01")
        b, _ = self.session("myrio-02")
        for c in (a, b):
            c.send_json({"type": "ping"})
            self.assertEqual(c.recv_line(), b'{"type":"pong"}')


class ServerBusyTest(GatewayTestCase):
    gw_options = {"max_clients": 2}

    def test_third_connection_gets_server_busy(self):
        a, _ = self.session("myrio-01")
        b = self.connect()  # not even authenticated: it counts
        c = self.connect()
        self.assertClosedWithError(c, "server_busy")
        b.send_json(hello("myrio-02", "pw-02"))
        self.assertEqual(json.loads(b.recv_line())["type"], "welcome")
        b.close()
        # Once the gateway has seen the close, there is room again.
        wait_until(self._third_welcomed, what="a connection accepted after one closed")
        a.send_json({"type": "ping"})
        self.assertEqual(a.recv_line(), b'{"type":"pong"}')

    def _third_welcomed(self):
        c = self.connect()
        c.send_json(hello("myrio-03", "pw-03"))
        reply = json.loads(c.recv_line())
        if reply["type"] == "welcome":
            return True
        self.assertEqual(reply["code"], "server_busy")
        return False


if __name__ == "__main__":
    unittest.main()
