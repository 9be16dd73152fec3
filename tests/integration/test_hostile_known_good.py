#!/usr/bin/python3
"""Known-good addresses (docs/security.md, "squat the login") across gateway restarts, with
a small gateway (max_clients 128, so max_unauthenticated is 32) and a flood of connections
that never say hello from 250 loopback addresses (more than the cap):

- a device logs in once from 127.0.0.3; the gateway writes its address to
  state_dir/known_good within the batch time; after a kill -9 and a restart, and again after
  a SIGTERM and a restart, the gateway loads it (its log says how many), and the device's
  reconnects, hello 200 ms after connect, all get in during the flood, and every record it
  sent is acked and on the broker once, in order.
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edsrig import wait_until  # noqa: E402
from gwrig import line_of, record  # noqa: E402
from hostile import SLOW, HostileTestCase, connect, hello_line, stats_messages  # noqa: E402
import test_hostile_squat as squat  # noqa: E402

DEVICE_SOURCE = squat.LOGIN_SOURCE  # 127.0.0.3


class KnownGoodRestartTest(HostileTestCase):
    gw_options = {"stats_interval": 1, "max_clients": 128}  # max_unauthenticated: 32
    start_agent = False
    RECONNECTS = 8
    HELLO_DELAY = 0.2  # connect to hello: a slow link or a TLS handshake

    # myrio-03 from 127.0.0.3: connect, hello HELLO_DELAY s later, one record (the next
    # after the welcome's last_seq), its ack: (welcome or what came instead, seq, ack).
    session = squat.ConnectFloodTest.session
    reconnect = squat.ConnectFloodTest.reconnect

    def known_good_file(self):
        try:
            with open(os.path.join(self.gw.state_dir, "known_good")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def flood_and_reconnect(self, sent):
        # Stats of this gateway run only (a restarted gateway counts from 0).
        first = len(stats_messages(self.sub))
        flood = squat.ConnectFlood(self.gw.port).start()
        self.addCleanup(flood.stop)
        before = wait_until(lambda: [d for d in stats_messages(self.sub)[first:]
                                     if d["preauth_evicted"] >= 200], 20 * SLOW,
                            "preauth_evicted >= 200")[-1]
        failures = []
        t0 = time.monotonic()
        for _ in range(self.RECONNECTS):
            self.reconnect(flood, sent, failures)
        took = time.monotonic() - t0
        running = flood.running()
        flood.stop()
        self.assertTrue(running, "the flood ended before the last reconnect")
        docs = stats_messages(self.sub)
        evicted = docs[-1]["preauth_evicted"] - before["preauth_evicted"]
        # The cap (32) turned over many times during each reconnect's 200 ms: a connection
        # from an address not known-good would have been closed before its hello.
        self.assertGreater(evicted, 32 * self.RECONNECTS)
        self.assertEqual(failures, [], "%d of %d reconnects refused" % (
            len(failures), self.RECONNECTS))
        return flood, evicted, took

    def restart_and_flood(self, kill, sent):
        mark = len(self.gw.output().splitlines())
        self.gw.restart(kill=kill)
        loaded = [ln for ln in self.gw.output().splitlines()[mark:]
                  if "known-good addresses:" in ln and "loaded" in ln]
        self.assertTrue(loaded and "known-good addresses: 1 loaded" in loaded[-1], loaded)
        flood, evicted, took = self.flood_and_reconnect(sent)
        self.figure("after %s and a restart: %d of %d reconnects of a known device (hello "
                    "200 ms after connect) got in in %.1f s during a flood of %d connections "
                    "from 250 addresses (%.0f a second, preauth_evicted %d meanwhile)" % (
                        "kill -9" if kill else "SIGTERM", self.RECONNECTS, self.RECONNECTS,
                        took, flood.opened, flood.opened / max(flood.took, 1e-3), evicted))

    def test_known_device_gets_in_after_restart(self):
        welcome, seq, ack = self.session(None)
        self.assertEqual(ack, b'{"type":"ack","seq":%d}' % (seq or 0), welcome)
        sent = [seq]
        # Written in a batch (gw_goodfile.h: within 2 s), not at each login.
        wait_until(lambda: "%s " % DEVICE_SOURCE in self.known_good_file(), 10 * SLOW,
                   "127.0.0.3 in state_dir/known_good")
        line = [ln for ln in self.known_good_file().splitlines()
                if ln.startswith(DEVICE_SOURCE + " ")][0]
        self.assertLessEqual(abs(int(line.split()[1]) - time.time()), 30, line)

        self.restart_and_flood(True, sent)
        self.restart_and_flood(False, sent)

        topic = "energy/myrio-03/data"
        got = [m.payload for m in self.sub.wait_for_count(topic, len(sent), 10 * SLOW)]
        self.assertEqual(got, [line_of(record(q)) for q in sent])
        self.assertTrue(self.gw.running())


def wide_addr(i):
    """The reviewer's flood: 2,000 addresses, 127.1.0.1 .. 127.1.7.250."""
    return "127.1.%d.%d" % (i // 250 % 8, 1 + i % 250)


class FirstLoginTest(HostileTestCase):
    """First logins from new addresses during a flood from 2,000 addresses (more than
    max_unauthenticated, 256 by default): such a login is not known-good, so only the rest
    of the eviction rule can keep it (docs/security.md)."""

    gw_options = {"stats_interval": 1}
    start_agent = False
    LOGINS = 20
    HELLO_DELAY = 0.2  # connect to hello: a slow link or a TLS handshake

    def first_login(self, source):
        s = connect(self.gw.port, source, timeout=5 * SLOW)
        try:
            time.sleep(self.HELLO_DELAY)  # the device's round trip, not a wait for the gateway
            s.sendall(hello_line("myrio-03", "pw-03", "first"))
            return squat.read_line(s, 5 * SLOW)
        finally:
            s.close()

    def test_first_logins_during_wide_flood(self):
        first = len(stats_messages(self.sub))
        flood = squat.ConnectFlood(self.gw.port, source_of=wide_addr).start()
        self.addCleanup(flood.stop)
        wait_until(lambda: [d for d in stats_messages(self.sub)[first:]
                            if d["preauth_evicted"] >= 4000], 20 * SLOW,
                   "the flood cycling through its 2,000 addresses")
        ok = 0
        replies = {}
        t0 = time.monotonic()
        for i in range(self.LOGINS):
            self.assertTrue(flood.running(), "the flood ended before the logins")
            reply = self.first_login("127.0.2.%d" % (1 + i))  # a new address each time
            ok += reply.startswith(b'{"type":"welcome"')
            key = reply[:40].decode(errors="replace")
            replies[key] = replies.get(key, 0) + 1
        took = time.monotonic() - t0
        running = flood.running()
        flood.stop()
        self.assertTrue(running, "the flood ended before the last login")
        self.figure("%d of %d first logins from new addresses (hello 200 ms after connect) "
                    "got in in %.1f s during a flood of %d connections from 2,000 addresses "
                    "(%.0f a second); replies %r" % (
                        ok, self.LOGINS, took, flood.opened,
                        flood.opened / max(flood.took, 1e-3), replies))
        self.assertGreaterEqual(ok, self.LOGINS, "first logins refused")


if __name__ == "__main__":
    unittest.main()
