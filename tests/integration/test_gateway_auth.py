#!/usr/bin/python3
"""eds-gateway device authentication: the mosquitto_passwd file, invalid device ids,
hello first, proto version, auth_timeout, anonymous devices."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edsrig  # noqa: E402
from gwrig import Gateway, GatewayTestCase, data_msg, hello, record  # noqa: E402

LONG_ID = "d" * 64  # the longest valid id


class AuthTest(GatewayTestCase):
    gw_kwargs = {"devices": {"myrio-01": "s3cret", "myrio-02": "pw-02", LONG_ID: "long-pw"}}
    gw_options = {"auth_timeout": 1}

    def refused(self, msg, code="auth_failed"):
        c = self.connect()
        c.send_json(msg)
        return self.assertClosedWithError(c, code)

    def test_right_password_is_welcomed_and_marked_online(self):
        c, welcome = self.session("myrio-01", "s3cret")
        self.assertEqual(welcome, {"type": "welcome", "proto": 1, "last_seq": 0})
        st = self.sub.wait_for_message("energy/myrio-01/status").json()
        self.assertTrue(st["online"])

    def test_wrong_password(self):
        self.refused(hello("myrio-01", "S3cret"))
        self.refused(hello("myrio-01", "s3cret "))
        self.refused(hello("myrio-01", ""))
        self.refused(hello("myrio-01", None))  # no password at all
        self.refused(hello("myrio-01", "pw-02"))  # another device's password

    def test_unknown_device(self):
        self.refused(hello("myrio-99", "s3cret"))

    def test_invalid_device_ids_are_refused(self):
        for bad in ("a/b", "+", "#", "", "d" * 65, "-lead", ".x", "caf\u00e9", "a b",
                    "myrio-01/data"):
            with self.subTest(device=bad):
                self.refused(hello(bad, "s3cret"))
        # A \u0000 escape makes the line bad JSON for libeds (NUL in any string), but it is
        # still a hello with a bad device id: auth_failed, as the spec says.
        self.refused(hello("a\u0000b", "s3cret"), "auth_failed")
        # A hello whose device is not a string is refused the same way.
        self.refused({"type": "hello", "device": 7, "proto": 1}, "auth_failed")
        # None of them got a status (or anything else) on the broker: a status appears only
        # after a welcome, so after this one every earlier publish would have arrived.
        self.session(LONG_ID, "long-pw")
        self.sub.wait_for_message("energy/%s/status" % LONG_ID)
        self.assertEqual({m.topic for m in self.sub.messages() if m.topic.endswith("/status")},
                         {"energy/_gateway/status", "energy/%s/status" % LONG_ID})

    def test_device_id_of_64_characters_is_valid(self):
        c, _ = self.session(LONG_ID, "long-pw")
        c.send_json(data_msg(1, record(1)))
        self.assertEqual(c.recv_json(), {"type": "ack", "seq": 1})
        self.sub.wait_for_message("energy/%s/data" % LONG_ID)

    def test_data_before_hello_is_not_authenticated(self):
        self.refused(data_msg(1, record(1)), "not_authenticated")
        self.refused({"type": "ping"}, "not_authenticated")
        c = self.connect()
        c.send_raw(b"garbage\n")
        self.assertClosedWithError(c, "not_authenticated")

    def test_proto_2_is_unsupported(self):
        msg = hello("myrio-01", "s3cret")
        msg["proto"] = 2
        self.refused(msg, "unsupported_proto")

    def test_no_hello_within_auth_timeout(self):
        c = self.connect()
        t0 = time.monotonic()
        self.assertClosedWithError(c, "timeout", timeout=5)
        elapsed = time.monotonic() - t0
        self.assertGreaterEqual(elapsed, 0.9, "closed before auth_timeout (1 s)")
        # A partial hello (no newline yet) does not stop the clock either.
        c = self.connect()
        c.send_raw(b'{"type":"hello","device":"myrio-01"')
        self.assertClosedWithError(c, "timeout", timeout=5)

    def test_failed_auth_is_logged_without_the_password(self):
        self.refused(hello("myrio-01", "very-secret-guess"))
        self.gw.wait_for_line(r"authentication failed for device myrio-01")
        self.assertNotIn("very-secret-guess", self.gw.output())


class AnonymousTest(unittest.TestCase):
    def setUp(self):
        self.broker = edsrig.Broker()
        self.addCleanup(self.broker.close)

    def test_without_password_file_anonymous_must_be_explicit(self):
        gw = Gateway(self.broker, password_file=False, start=False)
        self.addCleanup(gw.close)
        p = edsrig.Process(gw.argv(), name="eds-gateway")
        self.assertEqual(p.wait(10), 2)
        self.assertRegex(p.output(), r"allow_anonymous")

    def test_allow_anonymous_true_accepts_devices_without_password(self):
        gw = Gateway(self.broker, password_file=False, options={"allow_anonymous": True})
        self.addCleanup(gw.close)
        c = gw.connect()
        self.addCleanup(c.close)
        c.send_json(hello("anything-1"))
        self.assertEqual(c.recv_line(), b'{"type":"welcome","proto":1,"last_seq":0}')
        # Device ids are still checked.
        c2 = gw.connect()
        self.addCleanup(c2.close)
        c2.send_json(hello("bad/id"))
        got = c2.wait_closed()
        self.assertEqual([g["code"] for g in got], ["auth_failed"])


if __name__ == "__main__":
    unittest.main()
