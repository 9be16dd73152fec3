#!/usr/bin/python3
"""Clients that send without ever reading, while a well-behaved agent (myrio-01) sends
records: authenticated devices that pipeline thousands of records and never read their
acks, and a flood of pings whose pongs are never read. The gateway must stop reading them
(its output to them and the records in flight are bounded: window + TCP backpressure), so
its memory stays flat, the good agent keeps flowing, and once the flooders read again they
get every reply, in order, and their records are all published."""

import os
import select
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edsrig import wait_until  # noqa: E402
from gwrig import data_msg, line_of, record  # noqa: E402
from hostile import (ASAN, SLOW, HostileTestCase, connect, hello_line,  # noqa: E402
                     scaled)

# The flooders' receive buffer: small, so that not reading fills it after a few KiB; and an
# Ethernet-like MSS: over loopback (64 KiB segments) Linux lets the gateway's socket send
# buffer grow to tcp_wmem's maximum (4 MiB, some 180000 unread acks) before the gateway
# itself has to hold anything, which only makes the test slower.
RCVBUF = 4096
MSS = 536
FLAT_KB = (8 if ASAN else 2) * 1024  # VmRSS change allowed while the flood is stalled


def record_lines(first, count):
    return b"".join(line_of(data_msg(seq, record(seq))) + b"\n"
                    for seq in range(first, first + count))


class Flooder:
    """A connection that sends a stream of lines without reading (non-blocking)."""

    def __init__(self, port, device, password, make_lines):
        self.sock = connect(port, rcvbuf=RCVBUF, sndbuf=65536, mss=MSS)
        self.sock.sendall(hello_line(device, password, "flood"))
        self.sock.settimeout(10 * SLOW)
        welcome = self.sock.recv(200)
        if not welcome.startswith(b'{"type":"welcome"') or not welcome.endswith(b"\n"):
            raise AssertionError("%s: no welcome: %r" % (device, welcome))
        self.sock.setblocking(False)
        self.device = device
        self.make_lines = make_lines  # (first line number, count) -> bytes
        self.pending = b""
        self.lines_made = 0
        self.sent = 0  # bytes
        self.complete = 0  # lines sent whole
        self.mid_line = False  # the last send ended inside a line

    def fileno(self):
        return self.sock.fileno()

    def send_some(self, max_lines):
        """One non-blocking send; returns bytes the kernel took (0: it would block)."""
        if not self.pending and self.lines_made < max_lines:
            count = min(500, max_lines - self.lines_made)
            self.pending = self.make_lines(self.lines_made + 1, count)
            self.lines_made += count
        if not self.pending:
            return 0
        try:
            n = self.sock.send(self.pending)
        except BlockingIOError:
            return 0
        self.complete += self.pending[:n].count(b"\n")
        self.mid_line = self.pending[n - 1:n] != b"\n"
        self.pending = self.pending[n:]
        self.sent += n
        return n

    def read_all_replies(self, timeout):
        """Reads again: sends the rest of a line the stall cut (while reading, or neither
        side would move), then reads one reply per line sent; returns them."""
        tail = b""
        if self.mid_line:
            tail = self.pending[:self.pending.index(b"\n") + 1]
            self.complete += 1
        buf = b""
        deadline = time.monotonic() + timeout
        while buf.count(b"\n") < self.complete:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s: %d of %d replies after %.0f s" % (
                    self.device, buf.count(b"\n"), self.complete, timeout))
            readable, writable, _ = select.select([self.sock], [self.sock] if tail else [], [],
                                                  left)
            if writable:
                try:
                    tail = tail[self.sock.send(tail):]
                except BlockingIOError:
                    pass
            if readable:
                try:
                    chunk = self.sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                if not chunk:
                    raise AssertionError("%s: closed after %d replies" % (
                        self.device, buf.count(b"\n")))
                buf += chunk
        return buf.split(b"\n")[:-1]

    def close(self):
        self.sock.close()


class NeverReadsTest(HostileTestCase):
    gw_options = {"stats_interval": 1, "idle_timeout": 0}

    def flood_until_stalled(self, flooders, max_lines, quiet=2.0):
        """Sends on every flooder until none has taken a byte for `quiet` s (the gateway and
        the kernel buffers stopped taking them; shorter pauses happen while the broker
        catches up); bounded by max_lines each and 30 s."""
        t0 = time.monotonic()
        last_progress = t0
        while time.monotonic() - last_progress < quiet * SLOW:
            self.assertLess(time.monotonic() - t0, 30 * SLOW,
                            "the gateway kept reading a client that never reads for 30 s")
            # Not select(): it reports a TCP socket writable only once a good part of its
            # buffer is free; a plain send() takes any free byte.
            select.select([], flooders, [], 0.05)
            for f in flooders:
                while f.send_some(max_lines):
                    last_progress = time.monotonic()
            if all(f.lines_made >= max_lines and not f.pending for f in flooders):
                self.fail("the gateway took all %d lines of each flooder without their "
                          "replies being read" % max_lines)
        return time.monotonic() - t0

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
        NeverReadsTest.flood_until_stalled(self, [f], max_lines)
        t_stall = time.monotonic()
        rss_stall = self.mem.now()
        sent = f.sent
        self.agent.progress(100)  # about a second
        self.assertEqual(f.send_some(max_lines), 0, "the gateway resumed reading")
        self.assertEqual(f.sent, sent)
        samples = self.mem.between(t_stall, time.monotonic())
        self.assertLess(max(samples) - min(samples), FLAT_KB)
        self.figure("ping flood stalled after %d pings (%d bytes); VmRSS %d kB at stall, "
                    "baseline %d kB" % (f.complete, f.sent, rss_stall, self.mem.baseline))
        replies = f.read_all_replies(30 * SLOW)
        self.assertEqual(set(replies), {b'{"type":"pong"}'})
        self.assertEqual(len(replies), f.complete)
        self.settle()


if __name__ == "__main__":
    unittest.main()
