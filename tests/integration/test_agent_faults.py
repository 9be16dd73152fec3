#!/usr/bin/python3
"""eds-agent under faults, against the real eds-gateway and mosquitto: the gateway killed
(SIGKILL) and restarted mid-stream, the broker restarted mid-stream, the agent killed
(SIGKILL) and restarted on its spool, the gateway down when the agent starts (backoff,
then delivery). Every record is identified by its `sample` counter; the broker must see
each exactly once, in order."""

import os
import re
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edsrig import wait_until  # noqa: E402
from test_agent_delivery import CONNECTED, DEV, AgentTestCase, ndjson  # noqa: E402


def delivered(test):
    return len(test.payloads(DEV))


class GatewayCrashTest(AgentTestCase):
    def test_gateway_sigkill_and_restart_mid_stream(self):
        total = 3000
        p = self.start_agent("--spool", self.spool_dir(), "--simulate", 500, "--count", total)
        wait_until(lambda: delivered(self) >= 800, 20, "800 records on the broker")
        mark = len(p.lines())
        self.gw.kill()
        p.wait_for_line(r"reconnecting in", start=mark)
        self.assertLess(delivered(self), total)
        self.gw.start()
        self.assertEqual(p.wait(60), 0, p.output())
        self.wait_samples(total)
        self.barrier()
        got = self.samples()
        # Nothing lost, first arrivals in order.
        first = list(dict.fromkeys(got))
        self.assertEqual(first, list(range(1, total + 1)))
        # The agent resent only what the restarted gateway's welcome did not cover
        # (sample == seq here). A SIGKILLed gateway may have published records it had not
        # yet journaled: those come twice, and only those, all after its last_seq.
        lasts = [int(x) for x in re.findall(r"gateway has up to seq (\d+)", p.output()[
            len("\n".join(p.lines()[:mark])):])]
        self.assertTrue(lasts, "no reconnect seen")
        dups = sorted(x for x in set(got) if got.count(x) > 1)
        self.assertTrue(all(lasts[-1] < d <= lasts[-1] + 64 for d in dups), (dups, lasts))
        if dups:
            sys.stderr.write("note: %d records published twice by the SIGKILLed gateway "
                             "(after its journaled last_seq %d): %s\n" % (len(dups), lasts[-1],
                                                                          dups))

    def test_gateway_sigterm_and_restart_memory_queue(self):
        # Without a spool the memory queue alone carries the records over the gap.
        total = 2000
        p = self.start_agent("--simulate", 400, "--count", total)
        wait_until(lambda: delivered(self) >= 500, 20, "500 records on the broker")
        mark = len(p.lines())
        self.gw.stop()
        p.wait_for_line(r"reconnecting in", start=mark)
        self.gw.start()
        self.assertEqual(p.wait(60), 0, p.output())
        self.assert_once_in_order(total)


class BrokerRestartTest(AgentTestCase):
    # Exactly once across a broker restart is what qos 2 promises (gateway and subscriber):
    # at qos 1 a record in flight when the broker went may arrive twice, as MQTT allows.
    gw_options = {"qos": "2"}

    def start_rig(self, options=None, **kw):
        return super().start_rig(options, durable=2, **kw)

    def test_broker_restart_mid_stream(self):
        total = 3000
        p = self.start_agent("--spool", self.spool_dir(), "--simulate", 500, "--count", total)
        wait_until(lambda: delivered(self) >= 800, 20, "800 records on the broker")
        self.broker.stop()
        self.broker.start()
        self.assertEqual(p.wait(90), 0, p.output())
        self.assert_once_in_order(total, timeout=60)


class AgentCrashTest(AgentTestCase):
    def test_agent_sigkill_while_delivering_restart_on_spool(self):
        total = 3000
        # window 1: one round trip per record, so delivery outlasts reading stdin
        p = self.start_agent("--spool", self.spool_dir(), "--window", 1,
                             stdin=subprocess.PIPE)
        p.proc.stdin.write(ndjson(1, total))
        p.proc.stdin.close()
        p.wait_for_line(r"inputs ended; delivering the \d+ queued records?", timeout=30)
        p.signal(signal.SIGKILL)
        p.wait()
        sent = delivered(self)
        self.assertGreater(sent, 0)
        self.assertLess(sent, total, "delivery finished before the kill: nothing tested")
        p2 = self.start_agent("--spool", self.spool_dir())
        p2.wait_for_line(r"spool .*: stream [0-9a-f]+, \d+ records? to deliver")
        self.assertEqual(p2.wait(60), 0, p2.output())
        self.assert_once_in_order(total)

    def test_agent_sigkill_while_reading_leaves_no_gap(self):
        # Killed while records still stream in: what it had accepted is delivered after the
        # restart; what it had not read is not. The broker holds 1..K, no gap, no repeat.
        p = self.start_agent("--spool", self.spool_dir(), stdin=subprocess.PIPE)
        p.wait_for_line(CONNECTED % DEV)
        n = 0
        while delivered(self) < 300:
            p.proc.stdin.write(ndjson(n + 1, n + 50))
            p.proc.stdin.flush()
            n += 50
            self.assertLess(n, 100000)
        p.signal(signal.SIGKILL)
        p.wait()
        try:
            p.proc.stdin.close()
        except BrokenPipeError:
            pass
        p2 = self.start_agent("--spool", self.spool_dir())
        self.assertEqual(p2.wait(60), 0, p2.output())
        self.barrier()
        got = self.samples()
        self.assertGreaterEqual(len(got), 300)
        self.assertEqual(got, list(range(1, len(got) + 1)))


class BackoffTest(AgentTestCase):
    def test_gateway_down_at_start_backoff_then_delivery(self):
        self.gw.stop()
        p = self.start_agent("--spool", self.spool_dir(), stdin=subprocess.PIPE)
        p.proc.stdin.write(ndjson(1, 50))
        p.proc.stdin.close()
        # reconnect_min 0.1 s doubling to reconnect_max 1 s, each drawn from [d/2, d]
        wait_until(lambda: len(re.findall(r"reconnecting in", p.output())) >= 6, 20,
                   "six reconnect attempts")
        delays = [float(x) for x in re.findall(r"reconnecting in ([0-9.]+) s", p.output())]
        self.assertLessEqual(delays[0], 0.15)
        self.assertTrue(all(d <= 1.05 for d in delays), delays)
        self.assertGreaterEqual(max(delays), 0.45, delays)
        self.gw.start()
        self.assertEqual(p.wait(30), 0, p.output())
        self.assert_once_in_order(50)


if __name__ == "__main__":
    unittest.main()
