#!/usr/bin/python3
"""Clients that send without ever reading, while a well-behaved agent (myrio-01) sends
records: authenticated devices that pipeline thousands of records and never read their
acks, and a flood of pings whose pongs are never read. The gateway must stop reading them
(its output to them and the records in flight are bounded: window + TCP backpressure), so
its memory stays flat, the good agent keeps flowing, and once the flooders read again they
get every reply, in order, and their records are all published."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edsrig import wait_until  # noqa: E402
from gwrig import line_of, record  # noqa: E402
from hostile import FLAT_KB, SLOW, Flooder, HostileTestCase, record_lines, scaled  # noqa: E402

class NeverReadsTest(HostileTestCase):
    gw_options = {"stats_interval": 1, "idle_timeout": 0}

    def test_devices_that_never_read_their_acks(self):
        devices = [("myrio-02", "pw-02"), ("myrio-03", "pw-03")]
        max_lines = scaled(200000, 50000)
        flooders = [Flooder(self.gw.port, d, p, record_lines) for d, p in devices]
        for f in flooders:
            self.addCleanup(f.close)
        took = self.flood_until_stalled(flooders, max_lines)
        # Stalled: what they sent stays sent (the gateway pauses reading them).
        first = self.stats(lambda d: True, "stats")
        t_stall = time.monotonic()
        rss_stall = self.mem.now()
        self.agent.progress(30)
        sent_before = [f.sent for f in flooders]
        for f in flooders:
            self.assertEqual(f.send_some(max_lines), 0, "the gateway resumed reading")
        later = self.stats(lambda d: d["uptime"] >= first["uptime"] + 2, "stats 2 s later")
        good = self.agent.acked
        # Only the good agent's records came in meanwhile (about 100 a second, acked at
        # once: up to its window of them may be read but not acked yet).
        self.assertEqual([f.sent for f in flooders], sent_before)
        grew = later["messages_in"] - first["messages_in"]
        self.assertLessEqual(grew, later["acked"] - first["acked"] + self.agent.window)
        samples = self.mem.between(t_stall, time.monotonic())
        self.assertLess(max(samples) - min(samples), FLAT_KB,
                        "VmRSS not flat while the flood stalled: %d..%d kB" % (
                            min(samples), max(samples)))
        self.figure("2 devices pipelining without reading: stalled after %.1f s with %s "
                    "records (%s bytes) sent; VmRSS at stall %d kB (baseline %d), range "
                    "%d..%d kB over the next %.1f s; messages_in +%d meanwhile (good agent "
                    "acked %d)" % (took, "/".join(str(f.complete) for f in flooders),
                                   "/".join(str(f.sent) for f in flooders), rss_stall,
                                   self.mem.baseline, min(samples), max(samples),
                                   time.monotonic() - t_stall, grew, good))
        # Now they read: every record they sent is acked, in order, and published once.
        for f in flooders:
            replies = f.read_all_replies(30 * SLOW)
            self.assertEqual(replies, [b'{"type":"ack","seq":%d}' % s
                                       for s in range(1, f.complete + 1)])
        for f in flooders:
            topic = "energy/%s/data" % f.device
            wait_until(lambda: len(self.sub.messages(topic)) >= f.complete, 30 * SLOW,
                       "%d records on %s" % (f.complete, topic))
            got = [m.payload for m in self.sub.messages(topic)]
            self.assertEqual(got, [line_of(record(s)) for s in range(1, f.complete + 1)])
        self.settle()


class PingFloodTest(HostileTestCase):
    gw_options = {"stats_interval": 1, "idle_timeout": 0}

    def test_pings_without_reading_pongs(self):
        max_lines = scaled(500000, 100000)
        f = Flooder(self.gw.port, "myrio-02", "pw-02",
                    lambda first, count: b'{"type":"ping"}\n' * count)
        self.addCleanup(f.close)
        self.flood_until_stalled([f], max_lines)
        t_stall = time.monotonic()
        rss_stall = self.mem.now()
        samples = self.assert_stays_stalled(f, max_lines, t_stall)
        self.figure("ping flood stalled after %d pings (%d bytes); VmRSS %d kB at stall, "
                    "baseline %d kB" % (f.complete, f.sent, rss_stall, self.mem.baseline))
        replies = f.read_all_replies(30 * SLOW)
        self.assertEqual(set(replies), {b'{"type":"pong"}'})
        self.assertEqual(len(replies), f.complete)
        self.settle()


class RecordFloodTest(HostileTestCase):
    MAX_RATE = 100
    gw_options = {"stats_interval": 1, "max_rate": MAX_RATE}
    agent_kwargs = {"rate": 40}  # the good agent stays below max_rate

    def test_a_device_past_max_rate_is_read_more_slowly(self):
        n = 400
        f = Flooder(self.gw.port, "myrio-02", "pw-02", record_lines)
        self.addCleanup(f.close)
        t0 = time.monotonic()
        while f.lines_made < n or f.pending:  # all at once (it reads nothing meanwhile)
            f.send_some(n)
            if f.pending:
                wait_until(lambda: f.send_some(n) or not f.pending, 10 * SLOW,
                           "the gateway to take more of the flood")
        replies = f.read_all_replies(30 * SLOW)
        took = time.monotonic() - t0
        self.assertEqual(replies, [b'{"type":"ack","seq":%d}' % s for s in range(1, n + 1)])
        # A second's worth at once, then MAX_RATE a second.
        floor = (n - self.MAX_RATE) / float(self.MAX_RATE)
        self.assertGreaterEqual(took, floor * 0.9, "%d records in %.2f s" % (n, took))
        st = self.stats(lambda d: d["rate_limited"] > 0, "rate_limited")
        self.figure("%d records at once with max_rate %d: all acked in %.2f s (floor %.1f s); "
                    "rate_limited %d; the good agent at 40/s kept its pace" % (
                        n, self.MAX_RATE, took, floor, st["rate_limited"]))
        self.settle(max_latency=1.0 * SLOW)


if __name__ == "__main__":
    unittest.main()
