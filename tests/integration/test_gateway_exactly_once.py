#!/usr/bin/python3
"""eds-gateway with qos 2: every record reaches a subscriber exactly once, in order, across
a gateway SIGKILL (also with publishes in flight at the kill), and across a broker restart.

The subscriber is durable at QoS 2, so the broker's own leg to it is exactly once too:
every extra copy seen here would be one the gateway published twice."""

import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edsrig  # noqa: E402
from gwrig import GatewayTestCase, line_of, record  # noqa: E402
from test_gateway_delivery import DEV, Agent  # noqa: E402


class ExactlyOnceTest(GatewayTestCase):
    gw_options = {"qos": "2"}

    def start_rig(self, options=None, **kw):
        return super().start_rig(options, durable=2, **kw)

    def assert_each_once_in_order(self, total, timeout=30):
        topic = self.gw.topic(DEV, "data")
        # Wait for all of them, then for any extra copy to have had time to arrive: a ping
        # through the whole path (agent -> gateway -> broker -> subscriber) after the last.
        expected = [line_of(record(s)) for s in range(1, total + 1)]
        try:
            msgs = self.sub.wait_for(
                lambda ms: ms if len([m for m in ms if m.topic == topic]) >= total else None,
                timeout, "%d records on %s" % (total, topic))
        except edsrig.RigTimeout:
            got = set(m.payload for m in self.sub.messages(topic))
            missing = [s for s in range(1, total + 1) if expected[s - 1] not in got]
            self.fail("%d of %d records never arrived; seqs %s" % (len(missing), total,
                                                                   missing[:50]))
        c, _ = self.session("myrio-02", stream="probe")
        c.send_json({"type": "data", "seq": 1, "data": record(10**6)})
        self.assertEqual(c.recv_json(timeout=20), {"type": "ack", "seq": 1})
        self.sub.wait_for_count(self.gw.topic("myrio-02", "data"), 1, 20)
        got = [m.payload for m in self.sub.messages(topic)]
        self.assertEqual(len(got), total, "records published more than once")
        self.assertEqual(got, expected)
        return msgs

    def crash_with_publishes_in_flight(self, total, resume_broker=True):
        """50 records acked; then the broker stops reading (SIGSTOP), 60 more are sent, and
        the gateway is SIGKILLed with those it handed over in flight in its MQTT session.
        Returns the agent (disconnected)."""
        agent = Agent(self, total, window=60)
        agent.connect()
        agent.run_until(50)
        os.kill(self.broker.pid, signal.SIGSTOP)
        try:
            agent.window = 120
            agent.fill()
            self.ping_through(agent)
        finally:
            self.gw.kill()
            if resume_broker:
                os.kill(self.broker.pid, signal.SIGCONT)
        agent.c.close()
        return agent

    def ping_through(self, agent):
        """A ping after the agent's records: its pong proves the gateway read them all and
        handed to Paho what the publisher takes (up to broker_receive_maximum - 2
        unconfirmed). With the broker stopped, those stay in flight. Acks that come first
        are counted as the agent would."""
        agent.c.send_json({"type": "ping"})
        while True:
            reply = agent.c.recv_json()
            if reply["type"] == "pong":
                return
            self.assertEqual(reply, {"type": "ack", "seq": agent.outstanding.pop(0)})
            agent.acked.add(reply["seq"])

    def test_gateway_sigkill_three_times_mid_stream_each_record_once(self):
        total = 600
        agent = Agent(self, total, window=64)
        agent.connect()
        for until in (100, 250, 400):
            agent.leave_in_flight(until)  # while the gateway dies
            self.gw.kill()
            agent.c.close()
            self.gw.start()
            agent.connect()
        agent.run_all()
        self.assert_each_once_in_order(total)

    def test_sigkill_with_publishes_in_flight_resends_them_once_before_welcome(self):
        total = 200
        agent = self.crash_with_publishes_in_flight(total)
        self.gw.start()  # a new process: its log starts empty
        self.gw.wait_for_line(r"entries in the session store")
        self.gw.wait_for_line(r"restored from the session store are confirmed", timeout=20)
        welcome = agent.connect()
        # The welcome covers what the restored session delivered: nothing is resent by the
        # agent and published a second time.
        self.assertGreater(welcome["last_seq"], 50)
        agent.run_all()
        self.assert_each_once_in_order(total)

    def test_sigterm_mid_stream_leaves_an_empty_session_and_each_record_once(self):
        total = 300
        agent = Agent(self, total, window=64)
        agent.connect()
        agent.leave_in_flight(100)
        self.gw.proc.signal(signal.SIGTERM)
        err = agent.drain_until_closed()
        self.assertEqual(err and err["code"], "shutting_down")
        self.gw.stop()  # exit code 0
        self.gw.start()
        welcome = agent.connect()
        # Everything in flight was finished before the stop: nothing to restore.
        self.assertNotIn("entries in the session store", self.gw.output())
        self.assertGreaterEqual(welcome["last_seq"], 100)
        agent.run_all()
        self.assert_each_once_in_order(total)

    def test_back_to_qos_1_discards_the_session_and_loses_nothing(self):
        total = 200
        store = os.path.join(self.gw.state_dir, "mqtt-session.log")
        agent = self.crash_with_publishes_in_flight(total)
        self.gw.options["qos"] = "1"
        self.gw.write_config()
        self.gw.start()
        self.gw.wait_for_line(r"deleted the session store of an earlier qos 2 run")
        self.assertFalse(os.path.exists(store))
        agent.connect()
        agent.run_all()
        # At least once now: every record there, in order of first arrival.
        topic = self.gw.topic(DEV, "data")
        expected = [line_of(record(s)) for s in range(1, total + 1)]
        msgs = self.sub.wait_for(
            lambda ms: ms if set(expected) <= {m.payload for m in ms if m.topic == topic}
            else None, 30, "all %d records" % total)
        first = []
        for p in (m.payload for m in msgs if m.topic == topic):
            if p not in first:
                first.append(p)
        self.assertEqual(first, expected)

    def test_broker_that_lost_the_session_gets_what_was_in_flight_again(self):
        """The gateway dies with publishes in flight, and the broker dies too before it saved
        the gateway's session (SIGKILL). The restarted gateway must not welcome agents past
        records that never reached anyone: they are published again (at least once)."""
        total = 200
        agent = self.crash_with_publishes_in_flight(total, resume_broker=False)
        self.broker.kill()  # SIGKILL works on a stopped process: nothing saved
        self.broker.start()
        fresh = edsrig.Subscriber(self.broker, qos=2)
        self.addCleanup(fresh.close)
        self.gw.start()
        self.gw.wait_for_line(r"the broker had lost the gateway's MQTT session", timeout=20)
        welcome = agent.connect()
        # The marks (what was handed to the lost session) must not raise last_seq: the
        # welcome is the journal's, i.e. what the broker had confirmed. (Those records died
        # with the broker: mosquitto's autosave_interval, not the gateway's doing.)
        self.assertNotIn("handled up to seq", self.gw.output())
        confirmed = set(range(1, welcome["last_seq"] + 1))
        agent.run_all(timeout=40)
        topic = self.gw.topic(DEV, "data")
        want = {line_of(record(s)): s for s in range(1, total + 1)}

        def seen():
            return {want[m.payload] for sub in (self.sub, fresh) for m in sub.messages(topic)
                    if m.payload in want}
        unconfirmed = set(range(1, total + 1)) - confirmed
        try:
            edsrig.wait_until(lambda: unconfirmed <= seen(), 20,
                              "every record the broker had not confirmed before it died")
        except edsrig.RigTimeout:
            self.fail("never published: %s" % sorted(unconfirmed - seen())[:50])

    def test_broker_restart_with_records_in_flight_each_record_once(self):
        total = 400
        agent = Agent(self, total, window=64)
        agent.connect()
        agent.leave_in_flight(100)
        self.broker.stop()  # clean stop: mosquitto saves both sessions
        self.broker.start()
        agent.leave_in_flight(250, timeout=40)
        self.broker.stop()
        self.broker.start()
        agent.run_all(timeout=40)
        self.assert_each_once_in_order(total)
        self.assertEqual(agent.duplicates, set())


if __name__ == "__main__":
    unittest.main()
