#!/usr/bin/python3
"""eds-gateway speaks protocol v1 byte for byte: records out to MQTT in order and
byte-correct, nacks with Cerberus errors, bad_json / bad_message, ping, pipelining, and
the stats topic. Each test starts its own mosquitto and gateway (gwrig)."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gwrig import GatewayTestCase, compact, data_msg, line_of, record  # noqa: E402

SPEC_OK = {"timestamp": "2026-11-24T10:00:00Z", "day-ahead-price": 81.4, "power_factor": 0.97}
SPEC_BAD = {"timestamp": "2026-11-24T10:00:01Z", "day-ahead-price": -3, "power_factor": 1.2}


class RecordsTest(GatewayTestCase):
    def test_spec_example_session_byte_for_byte(self):
        c, welcome = self.session("myrio-01", "s3cret", "7f3a")
        self.assertEqual(welcome["last_seq"], 0)
        c.send_raw(b'{"type":"data","seq":42,"data":{"timestamp":"2026-11-24T10:00:00Z",'
                   b'"day-ahead-price":81.4,"power_factor":0.97}}\n'
                   b'{"type":"data","seq":43,"data":{"timestamp":"2026-11-24T10:00:01Z",'
                   b'"day-ahead-price":-3,"power_factor":1.2}}\n')
        self.assertEqual(c.recv_line(), b'{"type":"ack","seq":42}')
        self.assertEqual(c.recv_line(), b'{"type":"nack","seq":43,"errors":{"day-ahead-price":'
                         b'["min value is 0.0"],"power_factor":["must be between 0.0 and 1.0"]}}')
        self.assertEqual(self.wait_payloads("myrio-01", 1), [line_of(SPEC_OK)])
        rejected = self.wait_payloads("myrio-01", 1, "rejected")
        self.assertEqual(rejected, [
            b'{"seq":43,"errors":{"day-ahead-price":["min value is 0.0"],"power_factor":'
            b'["must be between 0.0 and 1.0"]},"data":' + line_of(SPEC_BAD) + b'}'])
        # The welcome told last_seq 0; the device's seq 43 was handled (nacked) too.
        c.close()
        c2, welcome = self.session("myrio-01", "s3cret", "7f3a")
        self.assertEqual(welcome["last_seq"], 43)
        self.assertEqual(self.payloads("myrio-01"), [line_of(SPEC_OK)])

    def test_valid_records_arrive_in_order_and_byte_correct(self):
        c, _ = self.session()
        n = 200
        sent = []
        lines = []
        for seq in range(1, n + 1):
            r = record(seq)
            # Key order other than alphabetical, extra fields, strings that need escaping,
            # non-ASCII text (raw and escaped), nesting, numbers spelled as the agent
            # spelled them (51.0 stays 51.0; an integer past 2^53 is not rounded).
            r["zeta"] = seq
            r["note"] = 'quote " backslash \\ tab \t newline \n unicode \u00e9\u20ac'
            r["nested"] = {"b": [1, 2, {"c": None}], "a": True, "e": -0.25}
            data = compact(r).encode("utf-8")
            data = data[:-1] + b',"energy_wh":%d,"exp":1.5e3,"esc":"\\u00e9\\/"}' % (
                2 ** 60 + seq)
            sent.append(data)
            lines.append(b'{"type":"data","seq":%d,"data":%s}\n' % (seq, data))
        c.send_raw(b"".join(lines))
        for seq in range(1, n + 1):
            self.assertEqual(c.recv_line(), b'{"type":"ack","seq":%d}' % seq)
        # Every acked record is on the broker already; in seq order, each once.
        got = self.wait_payloads("myrio-01", n)
        self.assertEqual(got, sent)
        self.assertEqual(len(self.payloads("myrio-01")), n)
        # Acked data topics carry QoS 1 by default.
        self.assertEqual({m.qos for m in self.sub.messages("energy/myrio-01/data")}, {1})

    def test_whitespace_in_the_record_is_compacted(self):
        c, _ = self.session()
        c.send_raw(b'{ "type" : "data", "data" : { "timestamp" : "2026-11-24T10:00:00Z" ,\t'
                   b'"list": [ 1 , 2.50 ], "s": " a  b " } , "seq" : 1 }\r\n')
        self.assertEqual(c.recv_line(), b'{"type":"ack","seq":1}')
        self.assertEqual(self.wait_payloads("myrio-01", 1),
                         [b'{"timestamp":"2026-11-24T10:00:00Z","list":[1,2.50],"s":" a  b "}'])

    def test_data_member_found_among_decoys(self):
        c, _ = self.session()
        # Other members before "data" hold a nested "data" key, brackets and quotes inside
        # strings; the published record is the top-level "data", compacted.
        c.send_raw(b'{"x":{"data":{"no":1}},"s":"}{\\"data\\":[","type":"data","l":[{"data":2}],'
                   b'"seq":1,"data":{"timestamp":"2026-11-24T10:00:00Z","a":"]}"},"z":{"data":3}}\n')
        self.assertEqual(c.recv_line(), b'{"type":"ack","seq":1}')
        # A key spelled with an escape is the same key.
        c.send_raw(b'{"type":"data","seq":2,"d\\u0061ta":{"timestamp":"2026-11-24T10:00:01Z"}}\n')
        self.assertEqual(c.recv_line(), b'{"type":"ack","seq":2}')
        self.assertEqual(self.wait_payloads("myrio-01", 2), [
            b'{"timestamp":"2026-11-24T10:00:00Z","a":"]}"}',
            b'{"timestamp":"2026-11-24T10:00:01Z"}'])

    def test_largest_seq(self):
        c, _ = self.session()
        big = 2 ** 53 - 1
        c.send_json(data_msg(big - 1, record(1)))
        c.send_json(data_msg(big, record(2)))
        self.assertEqual(c.recv_line(), b'{"type":"ack","seq":9007199254740990}')
        self.assertEqual(c.recv_line(), b'{"type":"ack","seq":9007199254740991}')
        c.send_raw(b'{"type":"data","seq":9007199254740992,"data":{}}\n')
        self.assertEqual(c.recv_json()["code"], "bad_message")
        c.close()
        c, w = self.session()
        self.assertEqual(w["last_seq"], big)

    def test_two_devices_each_get_their_own_topic_in_order(self):
        a, _ = self.session("myrio-01")
        b, _ = self.session("myrio-02")
        for seq in range(1, 51):
            a.send_json(data_msg(seq, record(seq)))
            b.send_json(data_msg(seq, record(1000 + seq)))
        for seq in range(1, 51):
            self.assertEqual(a.recv_json(), {"type": "ack", "seq": seq})
            self.assertEqual(b.recv_json(), {"type": "ack", "seq": seq})
        self.assertEqual(self.wait_payloads("myrio-01", 50),
                         [line_of(record(s)) for s in range(1, 51)])
        self.assertEqual(self.wait_payloads("myrio-02", 50),
                         [line_of(record(1000 + s)) for s in range(1, 51)])

    def test_invalid_record_is_nacked_and_published_to_rejected(self):
        c, _ = self.session()
        bad = {"day-ahead-price": "cheap", "power_factor": 0.5}  # no timestamp, wrong type
        c.send_json(data_msg(1, bad))
        reply = c.recv_line()
        self.assertRegex(reply, rb'^\{"type":"nack","seq":1,"errors":\{.*\}\}$')
        errors = json.loads(reply)["errors"]
        self.assertEqual(errors, {"timestamp": ["required field"],
                                  "day-ahead-price": ["must be of float type"]})
        rejected = self.wait_payloads("myrio-01", 1, "rejected")[0]
        self.assertEqual(json.loads(rejected), {"seq": 1, "errors": errors, "data": bad})
        # Nacked records never reach the data topic; the connection goes on.
        c.send_json(data_msg(2, record(2)))
        self.assertEqual(c.recv_json(), {"type": "ack", "seq": 2})
        self.assertEqual(self.wait_payloads("myrio-01", 1), [line_of(record(2))])

    def test_pipelining_1000_records_then_reading_all_replies_in_order(self):
        c, _ = self.session()
        n = 1000
        lines = []
        for seq in range(1, n + 1):
            r = record(seq)
            if seq % 10 == 0:
                r["power_factor"] = 2.0  # every tenth is invalid: nacked, in its place
            lines.append(line_of(data_msg(seq, r)) + b"\n")
        c.send_raw(b"".join(lines))  # all of it before reading any reply
        for seq in range(1, n + 1):
            if seq % 10 == 0:
                self.assertEqual(c.recv_line(), b'{"type":"nack","seq":%d,"errors":'
                                 b'{"power_factor":["must be between 0.0 and 1.0"]}}' % seq)
            else:
                self.assertEqual(c.recv_line(), b'{"type":"ack","seq":%d}' % seq)
        valid = [line_of(record(s)) for s in range(1, n + 1) if s % 10]
        self.assertEqual(self.wait_payloads("myrio-01", len(valid)), valid)
        rejected = self.wait_payloads("myrio-01", n // 10, "rejected")
        self.assertEqual([json.loads(p)["seq"] for p in rejected], list(range(10, n + 1, 10)))


class LinesTest(GatewayTestCase):
    def test_ping_pong(self):
        c, _ = self.session()
        c.send_raw(b'{"type":"ping"}\n')
        self.assertEqual(c.recv_line(), b'{"type":"pong"}')
        # CR before LF and empty lines are fine.
        c.send_raw(b'\n\r\n{"type":"ping"}\r\n')
        self.assertEqual(c.recv_line(), b'{"type":"pong"}')

    def test_bad_json_is_not_fatal_and_goes_to_rejected(self):
        c, _ = self.session()
        for bad in (b"this is not json", b'[1,2,3]', b'"a string"', b'{"type":"data",'):
            c.send_raw(bad + b"\n")
            err = c.recv_json()
            self.assertEqual(err["type"], "error")
            self.assertEqual(err["code"], "bad_json", bad)
        c.send_json(data_msg(1, record(1)))
        self.assertEqual(c.recv_line(), b'{"type":"ack","seq":1}')
        rejected = [json.loads(p) for p in self.wait_payloads("myrio-01", 4, "rejected")]
        self.assertEqual([r["error"] for r in rejected], ["bad_json"] * 4)
        self.assertEqual([r["line"] for r in rejected],
                         ["this is not json", "[1,2,3]", '"a string"', '{"type":"data",'])
        for r in rejected:
            self.assertIsInstance(r.get("reason"), str)

    def test_bad_message_is_not_fatal_and_goes_to_rejected(self):
        c, _ = self.session()
        bad_lines = [b'{"type":"data","data":{}}',           # no seq
                     b'{"type":"data","seq":0,"data":{}}',   # seq out of range
                     b'{"type":"data","seq":1,"data":[1]}',  # data not an object
                     b'{"type":"frobnicate"}',               # unknown type
                     b'{"seq":1}']                           # no type
        for bad in bad_lines:
            c.send_raw(bad + b"\n")
            err = c.recv_json()
            self.assertEqual((err["type"], err["code"]), ("error", "bad_message"), bad)
        c.send_json(data_msg(1, record(1)))
        self.assertEqual(c.recv_line(), b'{"type":"ack","seq":1}')
        rejected = [json.loads(p) for p in self.wait_payloads("myrio-01", 5, "rejected")]
        self.assertEqual([r["error"] for r in rejected], ["bad_message"] * 5)
        self.assertEqual([r["line"].encode() for r in rejected], bad_lines)

    def test_rejected_line_is_truncated_to_1_KiB(self):
        c, _ = self.session()
        c.send_raw(b"x" * 5000 + b"\n")
        self.assertEqual(c.recv_json()["code"], "bad_json")
        r = json.loads(self.wait_payloads("myrio-01", 1, "rejected")[0])
        self.assertEqual(r["line"], "x" * 1024)

    def test_100_bad_lines_in_a_row_close_with_bad_message(self):
        c, _ = self.session()
        # 99 in a row, then a good message resets the count.
        c.send_raw(b"nope\n" * 99 + b'{"type":"ping"}\n')
        for _ in range(99):
            self.assertEqual(c.recv_json()["code"], "bad_json")
        self.assertEqual(c.recv_line(), b'{"type":"pong"}')
        # 99 more stay open; the 100th closes.
        c.send_raw(b"nope\n" * 99)
        for _ in range(99):
            self.assertEqual(c.recv_json()["code"], "bad_json")
        c.send_raw(b"nope\n")
        got = c.wait_closed()
        self.assertTrue(got, "closed without an error line")
        self.assertEqual(got[-1]["code"], "bad_message", got)
        self.assertEqual(got[-1]["type"], "error")
        self.assertTrue(all(g["code"] in ("bad_json", "bad_message") for g in got), got)


class StatsTest(GatewayTestCase):
    gw_options = {"stats_interval": 0.5}

    def test_stats_counters_match_what_was_sent(self):
        c, _ = self.session()
        for seq in range(1, 11):
            c.send_json(data_msg(seq, record(seq)))
        c.send_json(data_msg(11, {"power_factor": 3}))
        c.send_raw(b"junk\n")
        # The error for the junk line may come before the acks (it answers no data).
        replies = [c.recv_json() for _ in range(12)]
        errors = [r for r in replies if r["type"] == "error"]
        self.assertEqual([e["code"] for e in errors], ["bad_json"])
        replies.remove(errors[0])
        self.assertEqual(replies[:10], [{"type": "ack", "seq": s} for s in range(1, 11)])
        self.assertEqual(replies[10]["type"], "nack")
        c.send_json(data_msg(5, record(5)))  # a duplicate
        self.assertEqual(c.recv_json(), {"type": "ack", "seq": 5, "duplicate": True})
        bad = self.gw.connect()
        bad.send_json({"type": "hello", "device": "myrio-02", "password": "wrong", "proto": 1})
        self.assertEqual(bad.wait_closed()[0]["code"], "auth_failed")
        bad.close()

        def settled(msgs):
            for m in reversed(msgs):
                if m.topic == "energy/_gateway/stats":
                    s = m.json()
                    return s if s["acked"] == 10 and s["auth_failures"] == 1 and \
                        s["connections"] == 1 else None
            return None
        stats = self.sub.wait_for(settled, what="stats with acked 10")
        self.assertEqual(stats["messages_in"], 12)
        self.assertEqual(stats["rejected"], 1)
        self.assertEqual(stats["duplicates"], 1)
        self.assertEqual(stats["bad_lines"], 1)
        self.assertEqual(stats["connections_total"], 2)
        self.assertEqual(stats["devices_online"], 1)
        self.assertEqual(stats["broker"], "connected")
        self.assertGreater(stats["bytes_in"], 0)
        self.assertGreater(stats["bytes_out"], 0)


if __name__ == "__main__":
    unittest.main()
