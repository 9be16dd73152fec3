#!/usr/bin/python3
"""A hung broker: the test's own mosquitto is SIGSTOPped (by pid) with records in flight. The
gateway must notice within a bounded time (MQTT keepalive, broker_keepalive 4 s by default:
15 s or less), a connected agent keeps getting pongs meanwhile, and a reconnecting agent
whose welcome waits for records still in flight hears server_busy within auth_timeout
instead of silence. The broker is resumed (SIGCONT) at the end: every record arrives, none
is acked before the broker has it.

A broker that answers pings but confirms no publish (ackproxy.py between gateway and broker
drops PUBACK/PUBREC/PUBCOMP, passes PINGRESP): the keepalive never fires, the deadline on
outstanding publishes (broker_publish_timeout, 10 s by default) must. Once the proxy passes
confirmations again every record reaches the broker: at qos 1 at least once, at qos 2
exactly once."""

import json
import os
import re
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edsrig  # noqa: E402
from ackproxy import AckProxy  # noqa: E402
from edsrig import RigTimeout  # noqa: E402
from gwrig import (DurableSubscriber, Gateway, GatewayTestCase, agent_session,  # noqa: E402
                   data_msg, hello, in_asan_build, line_of, record)

SLOW = 3.0 if in_asan_build() else 1.0
DETECT_BOUND = 15.0  # the bound with the default broker_keepalive and publish timeout


def gateway_status(tc, match=lambda doc: doc["online"]):
    """The last _gateway/status document the subscriber got, once one matches."""
    topic = "%s/_gateway/status" % tc.gw.prefix
    tc.sub.wait_for_message(topic, 30 * SLOW, lambda m: match(m.json()))
    return tc.sub.messages(topic)[-1].json()


def assert_reconnect_shown(tc, before):
    """After the broker link came back: the retained status says so, a later broker_since
    and one more broker_reconnects than `before` at least, the gateway's since unchanged."""
    after = gateway_status(tc, lambda doc: doc["online"] and
                           doc["broker_reconnects"] > before["broker_reconnects"])
    tc.assertEqual(after["since"], before["since"])
    tc.assertGreater(after["broker_since"], before["broker_since"])  # RFC 3339, UTC
    tc.assertEqual(tc.retained("%s/_gateway/status" % tc.gw.prefix).json(), after)
    return after


def twenty_acked_and_a_pinger(tc, stream):
    """myrio-01 on stream with records 1..20 sent and acked, and myrio-02 connected to ping."""
    a, welcome = tc.session("myrio-01", stream=stream)
    tc.assertEqual(welcome["last_seq"], 0)
    for seq in range(1, 21):
        a.send_json(data_msg(seq, record(seq)))
    tc.assertEqual([a.recv_json()["seq"] for _ in range(20)], list(range(1, 21)))
    pinger, _ = tc.session("myrio-02", stream="ping")
    return a, pinger


class HungBrokerTest(GatewayTestCase):
    gw_options = {"auth_timeout": 3}  # broker_keepalive, broker_publish_timeout: the defaults
    # With records in flight both the keepalive and the deadline on publishes can notice a
    # stopped broker, whichever comes first (the deadline, in the runs measured).
    noticed_by = (r"mqtt: (connection to .* lost|publish failed \(connection lost|"
                  r"no confirmation from the broker)")

    def stop_broker(self):
        os.kill(self.broker.pid, signal.SIGSTOP)
        self.addCleanup(self.resume_broker)

    def resume_broker(self):
        if self.broker.proc is not None and self.broker.proc.running():
            os.kill(self.broker.pid, signal.SIGCONT)

    def test_stopped_broker_is_noticed_and_agents_hear_from_the_gateway(self):
        a, pinger = twenty_acked_and_a_pinger(self, "hung")
        status = gateway_status(self)
        self.assertEqual(status["broker_reconnects"], 0)

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
        # A ping before the welcome is read after it (docs/protocol.md): no pong first.
        b.send_json({"type": "ping"})
        reply = b.recv_json(3 + 3 * SLOW)
        waited = time.monotonic() - t_hello
        self.assertEqual(reply.get("code"), "server_busy", reply)
        self.assertIn("broker", reply.get("message", ""))

        # The gateway notices the hung broker by itself, within the bound.
        how = self.gw.wait_for_line(self.noticed_by, DETECT_BOUND * SLOW, start=mark)
        self.gw.wait_for_line(r"lost the broker", 2 * SLOW, start=mark)
        detected = time.monotonic() - t_stop
        self.assertLess(detected, DETECT_BOUND * SLOW)
        # ...and still answers pings.
        pinger.send_json({"type": "ping"})
        self.assertEqual(pinger.recv_json(2 * SLOW), {"type": "pong"})

        # Resume: the agent comes back and everything arrives.
        self.resume_broker()
        self.gw.wait_for_line(r"connected to the broker", 30 * SLOW, start=mark)
        status = assert_reconnect_shown(self, status)
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
            "FIGURES %s: broker SIGSTOPped with 20 records in flight: noticed after %.1f s by %r "
            "(bound %.0f s); pongs in %s s meanwhile; a reconnecting agent heard server_busy "
            "after %.1f s; after SIGCONT the welcome said last_seq %d, all 40 records on the "
            "broker (%d messages); status %s\n" % (
                self.id().split(".", 1)[-1], detected, how.group(1), DETECT_BOUND,
                ", ".join("%.3f" % t for t in pong_times), waited, last, len(got), status))


class HungBrokerKeepaliveOnlyTest(HungBrokerTest):
    """The same with no deadline on publishes: the MQTT keepalive alone notices."""

    gw_options = {"auth_timeout": 3, "broker_publish_timeout": 0}
    noticed_by = r"mqtt: (connection to .* lost|publish failed \(connection lost)"


class UnconfirmedPublishesTest(GatewayTestCase):
    """The broker link answers pings but confirms nothing (ackproxy)."""

    auto_rig = False

    def start_proxied_rig(self, options, qos):
        self._t0 = time.monotonic()
        self.broker = edsrig.Broker()
        self.addCleanup(self.broker.close)
        self.proxy = AckProxy(self.broker.host, self.broker.port)
        self.addCleanup(self.proxy.close)  # after the gateway stopped (cleanups run LIFO)
        if qos == 2:  # the reader's leg exactly once too
            self.sub = DurableSubscriber(self.broker, "energy/#", qos=2)
        else:
            self.sub = edsrig.Subscriber(self.broker, "energy/#")
        opts = {"qos": qos, "stats_interval": 1, "broker_port": self.proxy.port}
        opts.update(options)
        self.gw = Gateway(self.broker, options=opts)
        self.addCleanup(self._close_gateway)
        self.addCleanup(self.sub.close)

    def stats_with_timeouts(self, timeout):
        topic = "%s/_gateway/stats" % self.gw.prefix
        msg = self.sub.wait_for_message(
            topic, timeout, match=lambda m: json.loads(m.payload).get("broker_timeouts", 0) >= 1)
        return json.loads(msg.payload)

    def run_withheld(self, qos, deadline_s, options):
        self.start_proxied_rig(options, qos)
        a, pinger = twenty_acked_and_a_pinger(self, "acks")
        status = gateway_status(self)
        self.assertEqual(status["broker_reconnects"], 0)

        mark = self.gw.mark()
        self.proxy.withhold()
        t_withhold = time.monotonic()
        for seq in range(21, 41):
            a.send_json(data_msg(seq, record(seq)))
        # Nothing confirmed, nothing acked; the gateway still answers pings.
        pinger.send_json({"type": "ping"})
        self.assertEqual(pinger.recv_json(2 * SLOW), {"type": "pong"})
        with self.assertRaises(RigTimeout):
            a.recv_json(1.0)

        m = self.gw.wait_for_line(r"no confirmation from the broker for ([0-9.]+) s",
                                  (deadline_s + 5) * SLOW, start=mark)
        detected = time.monotonic() - t_withhold
        self.gw.wait_for_line(r"lost the broker; holding acks", 5 * SLOW, start=mark)
        # The deadline did it, not the keepalive (pings passed the proxy all along), and not
        # before the deadline.
        since = self.gw.output().splitlines()[mark:]
        self.assertFalse([x for x in since if re.search(r"mqtt: connection to .* lost", x)],
                         "the keepalive gave up the connection, not the deadline")
        self.assertGreaterEqual(float(m.group(1)), deadline_s)
        self.assertGreaterEqual(detected, deadline_s - 0.5)
        self.assertLess(detected, deadline_s + 3 * SLOW)
        self.assertGreater(self.proxy.withheld, 0)

        # The link confirms again: every record is acked, in order, and reaches the broker.
        self.proxy.heal()
        t_heal = time.monotonic()
        acks = [a.recv_json(30 * SLOW)["seq"] for _ in range(21, 41)]
        self.assertEqual(acks, list(range(21, 41)))
        recovered = time.monotonic() - t_heal
        topic = self.gw.topic("myrio-01", "data")
        want = [line_of(record(s)) for s in range(1, 41)]
        self.sub.wait_for(lambda msgs: set(want) <= {m.payload for m in msgs if m.topic == topic},
                          10 * SLOW, "all 40 records on the broker")
        stats = self.stats_with_timeouts(10 * SLOW)
        self.assertEqual(stats["broker"], "connected")
        # The reconnect the deadline made shows on the retained status.
        status = assert_reconnect_shown(self, status)
        # A record sent after them arrives after any duplicate of theirs (one connection,
        # per-topic order): then count.
        a.send_json(data_msg(41, record(41)))
        self.assertEqual(a.recv_json(10 * SLOW)["seq"], 41)
        last = line_of(record(41))
        self.sub.wait_for_message(topic, 10 * SLOW, match=lambda m: m.payload == last)
        got = [p for p in self.payloads("myrio-01") if p != last]
        if qos == 2:  # the subscriber is durable at qos 2: its leg is exactly once too
            self.assertEqual(sorted(got), sorted(want), "qos 2: each record exactly once")
        else:
            self.assertEqual(set(got), set(want))
        # Logged once per connection given up, and counted so.
        lines = [x for x in self.gw.output().splitlines()[mark:]
                 if "no confirmation from the broker" in x]
        self.assertEqual(len(lines), self.stats_with_timeouts(10 * SLOW)["broker_timeouts"])
        sys.stderr.write(
            "FIGURES %s: qos %d, broker_publish_timeout %d s, keepalive 4 s answered: "
            "noticed after %.1f s (logged %s s); %d confirmations withheld over %d proxy "
            "connections; acks 21..40 within %.1f s of healing; %d messages for 40 records; "
            "stats broker_timeouts %d; status %s\n" % (
                self.id().split(".", 1)[-1], qos, deadline_s, detected, m.group(1),
                self.proxy.withheld, self.proxy.connections, recovered, len(got),
                stats["broker_timeouts"], status))

    def test_qos1_default_deadline(self):
        self.run_withheld(1, 10, {})  # broker_publish_timeout: the default

    def test_qos2_exactly_once_across_the_deadline(self):
        self.run_withheld(2, 3, {"broker_publish_timeout": 3})


if __name__ == "__main__":
    unittest.main()
