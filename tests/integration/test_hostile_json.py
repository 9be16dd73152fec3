#!/usr/bin/python3
"""Hostile lines from an authenticated device (myrio-02), each while a well-behaved agent
(myrio-01) sends records: invalid UTF-8, JSON nested thousands deep, 1e999 and -0,
duplicate keys, NUL escapes and raw NUL bytes, wrong types in every protocol field, and
device ids that try to inject into MQTT topics. Bad lines are not fatal: each gets its
error, goes to the rejected topic as a valid JSON document, and the attacker's connection
stays usable; the good agent loses nothing and memory stays bounded."""

import json
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edsrig  # noqa: E402
from gwrig import agent_session, line_of  # noqa: E402
from hostile import SLOW, HostileTestCase, connect, error_codes, read_until_closed  # noqa: E402

GOOD = {"timestamp": "2026-11-24T10:00:00Z", "day-ahead-price": 81.4, "power_factor": 0.97}
GOOD_TEXT = line_of(GOOD)[1:-1]  # the members, without the braces


def data_line(data_text, seq=1):
    return b'{"type":"data","seq":%d,"data":%s}' % (seq, data_text)


def expected_rejected_line(raw):
    """What the rejected topic's "line" holds for a raw line: its first 1 KiB, as text when
    that is valid UTF-8, else byte by byte (each byte a \\u00XX escape)."""
    b = raw[:1024]
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


class BadLinesCase(HostileTestCase):
    """The attacker: myrio-02, authenticated."""

    def setUp(self):
        super().setUp()
        self.bad, _ = agent_session(self.gw, "myrio-02", stream="attack")
        self.addCleanup(self.bad.close)
        self.sent_bad = []  # (raw line, code), in order

    def expect_error(self, raw, code, reason=None):
        """Sends one line; the reply is exactly one non-fatal error with this code."""
        self.bad.send_raw(raw + b"\n")
        reply = self.bad.recv_line(5 * SLOW)
        self.assertRegex(reply, rb'^\{"type":"error","code":"%s","message":"(?:[^"\\]|\\.)*"\}$'
                         % code.encode(), "reply to %r" % raw[:200])
        if reason:
            self.assertRegex(json.loads(reply)["message"], reason)
        self.sent_bad.append((raw, code))
        if len(self.sent_bad) % 50 == 0:
            self.ping()  # 100 bad lines in a row would close the connection
        return json.loads(reply)

    def ping(self):
        self.bad.send_raw(b'{"type":"ping"}\n')
        self.assertEqual(self.bad.recv_line(5 * SLOW), b'{"type":"pong"}')

    def check_rejected(self, no_data=False):
        """The attacker is still connected, and every bad line is on myrio-02/rejected as a
        valid JSON document naming its error and holding the line (no_data: and nothing of
        the attacker's reached its data topic)."""
        self.ping()
        n = len(self.sent_bad)
        try:
            msgs = self.sub.wait_for_count("energy/myrio-02/rejected", n, 10 * SLOW)
        except AssertionError:
            got = [json.loads(m.payload)["line"] for m in
                   self.sub.messages("energy/myrio-02/rejected")]
            missing = [raw for raw, _ in self.sent_bad if expected_rejected_line(raw) not in got]
            self.fail("%d of %d bad lines not on the rejected topic: %r" % (
                n - len(got), n, missing))
        for (raw, code), m in zip(self.sent_bad, msgs):
            doc = json.loads(m.payload.decode("utf-8"))  # strict: valid UTF-8 and JSON
            self.assertEqual(sorted(doc), ["error", "line", "reason"])
            self.assertEqual(doc["error"], code)
            self.assertEqual(doc["line"], expected_rejected_line(raw))
        st = self.stats(lambda d: d["bad_lines"] >= n, "bad_lines >= %d" % n)
        self.assertEqual(st["bad_lines"], n)
        if no_data:
            self.assertEqual(self.sub.messages("energy/myrio-02/data"), [])
        return st


class InvalidUtf8Test(BadLinesCase):
    def test_invalid_utf8_in_data_lines(self):
        for bad in (b"\xff\xfe", b"\xc0\xaf",  # not UTF-8 at all; an overlong "/"
                    b"\xe0\x80\xaf", b"\xed\xa0\x80",  # overlong; a UTF-16 surrogate
                    b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80",  # past U+10FFFF; 5 bytes
                    b"\xe2\x82", b"\x80", b"caf\xe9"):  # cut short; lone continuation; Latin-1
            self.expect_error(data_line(b'{"timestamp":"%s"}' % bad), "bad_json", "UTF-8")
            self.expect_error(data_line(b'{"%s":1,%s}' % (bad, GOOD_TEXT)), "bad_json", "UTF-8")
        # Outside any string, and cut at the end of the line.
        self.expect_error(b'{"type":"data","seq":1,"data":{}}\xc3', "bad_json")
        # An escaped lone surrogate is not a character either.
        self.expect_error(data_line(b'{"timestamp":"\\ud800"}'), "bad_json")
        self.check_rejected()
        self.settle()


class DeepNestingTest(BadLinesCase):
    def test_json_nested_thousands_deep(self):
        lines = [
            data_line(b'{"a":' * 5000 + b"1" + b"}" * 5000),
            data_line(b"[" * 30000 + b"]" * 30000),
            data_line(b'{"x":' + b"[" * 60000),  # never closed
            b"[" * 65000,  # not even an object
            b'{"type":"ping","x":' + b"[" * 20000 + b"]" * 20000 + b"}",
        ]
        for i in range(4):  # again and again: nothing may leak or pile up
            for line in lines:
                self.assertLess(len(line), 65536)
                self.expect_error(line, "bad_json")
        # Nested 900 deep but otherwise a valid record: answered (in order) like any record.
        deep = data_line(b"{%s,\"x\":%s}" % (GOOD_TEXT, b"[" * 900 + b"]" * 900), seq=1)
        self.bad.send_raw(deep + b"\n")
        reply = json.loads(self.bad.recv_line(5 * SLOW))
        self.assertIn(reply["type"], ("ack", "nack"), reply)
        self.assertEqual(reply["seq"], 1)
        if reply["type"] == "ack":
            self.assertEqual(self.sub.wait_for_message("energy/myrio-02/data").payload,
                             deep[len(b'{"type":"data","seq":1,"data":'):-1])
        self.check_rejected()
        self.figure("deep nesting: %d lines (5000-deep objects, 30000-deep arrays, unclosed "
                    "60000) all bad_json; a valid record with a 900-deep member: %s" % (
                        len(self.sent_bad), reply["type"]))
        self.settle()


class NumbersTest(BadLinesCase):
    def test_numbers_out_of_range_and_negative_zero(self):
        for num in (b"1e999", b"-1e999", b"1E400", b"123456789e400"):
            self.expect_error(data_line(b'{"timestamp":"2026-11-24T10:00:00Z",'
                                        b'"day-ahead-price":%s}' % num), "bad_json",
                              "out of range")
            self.expect_error(data_line(b'{%s,"nested":[1,{"v":%s}]}' % (GOOD_TEXT, num)),
                              "bad_json", "out of range")
        self.expect_error(b'{"type":"data","seq":1e999,"data":{}}', "bad_json")
        self.expect_error(b'{"type":"ack","id":-1e999}', "bad_json")
        # -0 is a number: accepted, and published spelled as sent.
        sent = []
        for seq, num in ((1, b"-0"), (2, b"-0.0"), (3, b"-0e0")):
            data = b'{"timestamp":"2026-11-24T10:00:00Z","day-ahead-price":%s}' % num
            self.bad.send_raw(data_line(data, seq) + b"\n")
            self.assertEqual(self.bad.recv_line(5 * SLOW), b'{"type":"ack","seq":%d}' % seq)
            sent.append(data)
        got = [m.payload for m in self.sub.wait_for_count("energy/myrio-02/data", 3)]
        self.assertEqual(got, sent)
        # ... but not as a seq (seq is 1..2^53-1).
        self.expect_error(b'{"type":"data","seq":-0,"data":{}}', "bad_message")
        self.check_rejected()
        self.settle()


class LenientSpellingsTest(BadLinesCase):
    def test_what_cjson_accepted_and_rfc_8259_does_not(self):
        # Before the strict parser these were acked and published as invalid JSON.
        for num in (b"01", b"-01", b"-.5", b".5", b"1.", b"+1", b"1.e3", b"0x1", b"NaN"):
            self.expect_error(data_line(b'{%s,"v":%s}' % (GOOD_TEXT, num)), "bad_json")
        self.expect_error(b'{"type":"data","seq":01,"data":{%s}}' % GOOD_TEXT, "bad_json")
        for text in (b'"a\tb"', b'"a\x01b"', b'"a\x1fb"'):  # raw control characters
            self.expect_error(data_line(b'{%s,"note":%s}' % (GOOD_TEXT, text)), "bad_json")
        for ws in (b"\x0c", b"\x0b", b"\xc2\xa0"):  # form feed, vertical tab, NBSP
            self.expect_error(data_line(b'{%s,%s"v":1}' % (GOOD_TEXT, ws)), "bad_json")
        self.expect_error(data_line(b'{%s,"v":1,}' % GOOD_TEXT), "bad_json")
        self.check_rejected(no_data=True)
        # The same records spelled strictly are taken, and published as written.
        sent = []
        for seq, num in ((1, b"0.5"), (2, b"-0.5"), (3, b"1.0e3"), (4, b"123456789012345678901")):
            data = b'{%s,"v":%s}' % (GOOD_TEXT, num)
            self.bad.send_raw(data_line(data, seq) + b"\n")
            self.assertEqual(self.bad.recv_line(5 * SLOW), b'{"type":"ack","seq":%d}' % seq)
            sent.append(data)
        got = [m.payload for m in self.sub.wait_for_count("energy/myrio-02/data", len(sent))]
        self.assertEqual(got, sent)
        self.settle()


class DuplicateKeysTest(BadLinesCase):
    def test_duplicate_keys_at_any_level(self):
        for line in (
                b'{"type":"data","seq":1,"seq":2,"data":{%s}}' % GOOD_TEXT,
                b'{"type":"data","type":"ping","seq":1,"data":{%s}}' % GOOD_TEXT,
                b'{"type":"data","seq":1,"data":{},"data":{%s}}' % GOOD_TEXT,
                data_line(b'{%s,"power_factor":0.5}' % GOOD_TEXT),
                data_line(b'{%s,"m":{"a":1,"b":2,"a":3}}' % GOOD_TEXT),
                data_line(b'{%s,"m":[{"a":1},{"b":1,"b":1}]}' % GOOD_TEXT),
                # The same key spelled differently: equal once unescaped.
                b'{"type":"data","seq":1,"s\\u0065q":2,"data":{%s}}' % GOOD_TEXT,
                data_line(b'{%s,"power\\u005ffactor":0.5}' % GOOD_TEXT),
                b'{"type":"ping","type":"ping"}'):
            self.expect_error(line, "bad_json", "duplicate key")
        self.check_rejected(no_data=True)
        self.settle()


class NulTest(BadLinesCase):
    def test_nul_escapes_and_raw_nul_bytes(self):
        for line in (data_line(b'{"timestamp":"2026\\u0000-11-24T10:00:00Z"}'),
                     data_line(b'{%s,"note":"a\\u0000b"}' % GOOD_TEXT),
                     data_line(b'{%s,"a\\u0000b":1}' % GOOD_TEXT),
                     data_line(b'{%s,"list":["\\u0000"]}' % GOOD_TEXT),
                     b'{"type":"ping\\u0000"}'):
            self.expect_error(line, "bad_json", r"\\u0000")
        for line in (data_line(b'{%s,"note":"a\x00b"}' % GOOD_TEXT),
                     data_line(b'{%s}' % GOOD_TEXT) + b"\x00",
                     b"\x00" + data_line(b'{%s}' % GOOD_TEXT),
                     b'{"type":"ping"}\x00\x00\x00',
                     b"\x00"):
            self.expect_error(line, "bad_json", "NUL")
        self.check_rejected(no_data=True)
        self.settle()


class WrongTypesTest(BadLinesCase):
    VALUES = [b'"1"', b"1.5", b"true", b"false", b"null", b"[]", b"[1]", b"{}", b'{"a":1}',
              b"-1", b"0", b"9007199254740992"]

    def test_wrong_types_in_every_field_after_hello(self):
        for v in self.VALUES:
            self.expect_error(b'{"type":"data","seq":%s,"data":{%s}}' % (v, GOOD_TEXT),
                              "bad_message", "seq")
            if v not in (b"{}", b'{"a":1}'):
                self.expect_error(b'{"type":"data","seq":1,"data":%s}' % v, "bad_message",
                                  "data")
            if v != b"0":  # ack ids are 0..2^53-1; an id never sent is ignored
                self.expect_error(b'{"type":"ack","id":%s}' % v, "bad_message", "id")
            self.expect_error(b'{"type":%s,"seq":1,"data":{}}' % v, "bad_message", "type")
        for line in (b'{"type":"data","data":{}}', b'{"type":"data","seq":1}',
                     b'{"type":"ack"}', b'{"seq":1,"data":{}}', b"{}",
                     b'{"type":"DATA","seq":1,"data":{}}', b'{"type":"data ","seq":1,"data":{}}',
                     b'{"type":"pong"}', b'{"type":"welcome","proto":1,"last_seq":0}',
                     b'{"type":"error","code":"x","message":"y"}', b'{"type":""}'):
            self.expect_error(line, "bad_message")
        # A second hello, even a correct one for another device, is not valid now (the
        # gateway does not publish it to rejected: it holds a password).
        self.bad.send_json({"type": "hello", "device": "myrio-01", "password": "s3cret",
                            "proto": 1})
        self.assertEqual(json.loads(self.bad.recv_line(5 * SLOW))["code"], "bad_message")
        st = self.check_rejected()
        self.figure("%d bad_message lines answered and published to rejected; bad_lines %d" % (
            len(self.sent_bad), st["bad_lines"]))
        self.settle()

    def test_wrong_types_in_hello_are_refused(self):
        fields = {"device": b'"myrio-02"', "password": b'"pw-02"', "stream": b'"s"',
                  "proto": b"1"}
        refused = 0
        for field in fields:
            for v in self.VALUES + [b'""', b'"x"*65', b'"a b"', b'"a\\nb"', b"1e999"]:
                if field == "password" and v == b'"x"*65':
                    continue
                if field == "stream" and v in (b'"1"', b'"x"'):
                    continue  # valid stream ids
                members = dict(fields)
                members[field] = b'"' + b"x" * 65 + b'"' if v == b'"x"*65' else v
                line = b'{"type":"hello",%s}' % b",".join(
                    b'"%s":%s' % (k.encode(), members[k]) for k in members)
                # Each from its own address: wrong passwords from one address would be
                # answered ever more slowly (tested in test_hostile_conn.py).
                s = connect(self.gw.port, source="127.0.1.%d" % (refused % 250 + 1))
                s.sendall(line + b"\n")
                data, _, _ = read_until_closed(s, 5 * SLOW)
                s.close()
                codes = error_codes(data)
                # Fatal before hello: refused, never welcomed (the gateway answers
                # not_authenticated for a hello that is not a valid message, auth_failed for
                # a bad id or password, unsupported_proto for a proto it does not speak).
                self.assertEqual(len(codes), 1, (line, data))
                self.assertIn(codes[0], ("not_authenticated", "auth_failed",
                                         "unsupported_proto"), (line, data))
                self.assertNotIn(b"welcome", data)
                refused += 1
        self.agent.progress(10)
        self.figure("%d malformed hellos refused" % refused)
        self.settle()


class BadJsonFloodCountedTest(BadLinesCase):
    """A bad_json flood faster than the publisher takes the rejected copies (max_inflight
    2): every copy is either on the rejected topic or counted in rejected_skipped (issue
    15: about 80% were skipped with no counter), and the attacker got every error."""
    gw_options = {"stats_interval": 1, "max_inflight": 2}

    def test_every_rejected_copy_is_published_or_counted(self):
        rounds, per_round = 40, 49  # a ping every 49: 100 bad lines in a row would close
        batch = b"".join(b'{"type":"data","seq":%d,' % i + b"\n" for i in range(per_round))
        for _ in range(rounds):
            self.bad.send_raw(batch + b'{"type":"ping"}\n')
        n = rounds * per_round
        errors = 0
        for _ in range(rounds):
            for _ in range(per_round):
                self.assertIn(b'"code":"bad_json"', self.bad.recv_line(10 * SLOW))
                errors += 1
            self.assertEqual(self.bad.recv_line(10 * SLOW), b'{"type":"pong"}')
        self.assertEqual(errors, n)
        st = self.stats(lambda d: d["bad_lines"] >= n, "bad_lines >= %d" % n)
        self.assertEqual(st["bad_lines"], n)
        topic = "energy/myrio-02/rejected"
        self.sub.wait_for_count(topic, n - st["rejected_skipped"], 10 * SLOW)
        got = len(self.sub.messages(topic))
        self.assertEqual(got + st["rejected_skipped"], n,
                         "rejected copies neither published nor counted")
        self.figure("bad_json flood of %d lines with max_inflight 2: %d copies on the rejected "
                    "topic, rejected_skipped %d" % (n, got, st["rejected_skipped"]))


class TopicInjectionTest(HostileTestCase):
    IDS = ["a/b", "+", "#", "a\u0000b", "d" * 65, "", "myrio-01/data", "../x", "$SYS",
           "myrio-01/+", "energy/#", "a b", "caf\u00e9", "x\ny", "/", "myrio\u200b-01",
           "myrio-01\u0000", "\u0000", "a" * 1000]
    start_agent = False

    def test_device_ids_that_try_topic_injection(self):
        spy = edsrig.Subscriber(self.broker, "#")  # a reader: may read energy/#
        self.addCleanup(spy.close)
        self.begin()
        for dev in self.IDS:
            for password in ("pw-02", None):
                msg = {"type": "hello", "device": dev, "proto": 1, "stream": "inj"}
                if password:
                    msg["password"] = password
                s = connect(self.gw.port)
                s.sendall(json.dumps(msg).encode() + b"\n")
                data, _, _ = read_until_closed(s, 5 * SLOW)
                s.close()
                codes = error_codes(data)
                # auth_failed, also for a \u0000 escape (bad JSON for libeds, still a hello).
                self.assertEqual(codes, ["auth_failed"], (dev, data))
        self.agent.progress(20)
        st = self.stats(lambda d: d["auth_failures"] >= 2 * (len(self.IDS) - 3),
                        "auth_failures")
        n = self.settle()
        # Everything that reached the broker is in the gateway's own topics.
        ok = re.compile(r"^energy/(_gateway/(status|stats)|myrio-01/(status|data))$")
        topics = {m.topic for m in spy.messages()}
        self.assertEqual({t for t in topics if not ok.match(t)}, set())
        self.assertIn("energy/myrio-01/data", topics)
        self.assertEqual(len(spy.messages("energy/myrio-01/data")), n)
        self.figure("%d hostile ids refused (auth_failures %d); topics seen on '#': %s" % (
            2 * len(self.IDS), st["auth_failures"], sorted(topics)))


if __name__ == "__main__":
    unittest.main()
