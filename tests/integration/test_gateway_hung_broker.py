#!/usr/bin/python3
"""A hung broker: the test's own mosquitto is SIGSTOPped (by pid) with records in flight. The
gateway must notice within a bounded time (MQTT keepalive, broker_keepalive 5 s by default:
15 s or less), a connected agent keeps getting pongs meanwhile, and a reconnecting agent
whose welcome waits for records still in flight hears server_busy within auth_timeout
instead of silence. The broker is resumed (SIGCONT) at the end: every record arrives, none
is acked before the broker has it."""

import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edsrig import RigTimeout  # noqa: E402
from gwrig import (GatewayTestCase, agent_session, data_msg, hello, in_asan_build,  # noqa: E402
                   line_of, record)

SLOW = 3.0 if in_asan_build() else 1.0
DETECT_BOUND = 15.0  # the bound with the default broker_keepalive


class HungBrokerTest(GatewayTestCase):
    gw_options = {"auth_timeout": 3}  # broker_keepalive: the default

    def stop_broker(self):
        os.kill(self.broker.pid, signal.SIGSTOP)
        self.addCleanup(self.resume_broker)

    def resume_broker(self):
        if self.broker.proc is not None and self.broker.proc.running():
            os.kill(self.broker.pid, signal.SIGCONT)

    def test_stopped_broker_is_noticed_and_agents_hear_from_the_gateway(self):
        a, welcome = self.session("myrio-01", stream="hung")
        self.assertEqual(welcome["last_seq"], 0)
        for seq in range(1, 21):
            a.send_json(data_msg(seq, record(seq)))
        self.assertEqual([a.recv_json()["seq"] for _ in range(20)], list(range(1, 21)))
        pinger, _ = self.session("myrio-02", stream="ping")

        # Records in flight when the broker stops: no acks for them.
        mark = self.gw.mark()
        self.stop_broker()
        t_stop = time.monotonic()
        for seq in range(21, 41):
            a.send_json(data_msg(seq, record(seq)))

        # A connected agent gets pongs while the gateway waits for the broker.
        pong_times = []
        for _ in range(3):
            t = time.monotonic()
            pinger.send_json({"type": "ping"})
            self.assertEqual(pinger.recv_json(2 * SLOW), {"type": "pong"})
            pong_times.append(time.monotonic() - t)

        # myrio-01 reconnects while its records are in flight: told to retry, not left
        # waiting in silence.
        t_hello = time.monotonic()
        b = self.connect()
        b.send_json(hello("myrio-01", self.gw.devices["myrio-01"], "hung"))
        reply = b.recv_json(3 + 3 * SLOW)
        waited = time.monotonic() - t_hello
        self.assertEqual(reply.get("code"), "server_busy", reply)
        self.assertIn("broker", reply.get("message", ""))

        # The gateway notices the hung broker by itself, within the bound.
        self.gw.wait_for_line(r"lost the broker", DETECT_BOUND * SLOW, start=mark)
        detected = time.monotonic() - t_stop
        self.assertLess(detected, DETECT_BOUND * SLOW)
        # ...and still answers pings.
        pinger.send_json({"type": "ping"})
        self.assertEqual(pinger.recv_json(2 * SLOW), {"type": "pong"})

        # Resume: the agent comes back and everything arrives.
        self.resume_broker()
        self.gw.wait_for_line(r"connected to the broker", 30 * SLOW, start=mark)
        deadline = time.monotonic() + 30 * SLOW
        while True:  # its welcome waits for the old records to settle (bounded)
            try:
                c, welcome = agent_session(self.gw, "myrio-01", stream="hung")
                break
            except (AssertionError, RigTimeout, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.addCleanup(c.close)
        last = welcome["last_seq"]
        self.assertGreaterEqual(last, 20)
        for seq in range(last + 1, 41):
            c.send_json(data_msg(seq, record(seq)))
        acks = [c.recv_json(10 * SLOW) for _ in range(last + 1, 41)]
        self.assertEqual([x["seq"] for x in acks], list(range(last + 1, 41)))
        topic = self.gw.topic("myrio-01", "data")
        want = {line_of(record(s)) for s in range(1, 41)}
        # qos 1: what was in flight when the connection was given up may come twice
        self.sub.wait_for(lambda msgs: want <= {m.payload for m in msgs if m.topic == topic},
                          10 * SLOW, "all 40 records on the broker")
        got = self.payloads("myrio-01")
        self.assertEqual(set(got), want)
        sys.stderr.write(
            "FIGURES %s: broker SIGSTOPped with 20 records in flight: noticed after %.1f s "
            "(bound %.0f s); pongs in %s s meanwhile; a reconnecting agent heard server_busy "
            "after %.1f s; after SIGCONT the welcome said last_seq %d, all 40 records on the "
            "broker (%d messages)\n" % (
                self.id().split(".", 1)[-1], detected, DETECT_BOUND,
                ", ".join("%.3f" % t for t in pong_times), waited, last, len(got)))


if __name__ == "__main__":
    unittest.main()
