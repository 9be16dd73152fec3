#!/usr/bin/python3
"""The gateway's broker link at MQTT 5 (the default) and at 3.1.1, seen by real MQTT 5
clients (Debian's python3-paho-mqtt): data publishes carry the user properties device,
stream, seq and received_at; a command published with a Response Topic and Correlation
Data gets its result there with the same correlation data; a command whose Message Expiry
Interval runs out before its device is online is never delivered and its result says
expired. Real Mosquitto, real gateway."""

import json
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edsrig  # noqa: E402
from gwrig import GatewayTestCase, data_msg  # noqa: E402

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

DEV = "myrio-01"


class Mqtt5Client:
    """A reader at MQTT 5 that keeps every message with its properties; waits have
    deadlines."""

    def __init__(self, broker, topic):
        self.cond = threading.Condition()
        self.msgs = []
        self.subscribed = False
        self.c = mqtt.Client(client_id="mqtt5-%d-%d" % (os.getpid(), id(self)),
                             protocol=mqtt.MQTTv5)
        self.c.username_pw_set(edsrig.READER_USER, edsrig.READER_PASSWORD)
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.connect(broker.host, broker.port, keepalive=30)
        self.c.loop_start()
        self.c.subscribe(topic, qos=1)
        self.wait(lambda: self.subscribed, "SUBACK")

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.msgs.append(msg)
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.cond:
            self.subscribed = True
            self.cond.notify_all()

    def wait(self, pred, what, timeout=edsrig.DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise edsrig.RigTimeout("timed out waiting for %s" % what)
                self.cond.wait(left)

    def wait_topic(self, topic, n=1):
        self.wait(lambda: len([m for m in self.msgs if m.topic == topic]) >= n,
                  "%d messages on %s" % (n, topic))
        return [m for m in self.msgs if m.topic == topic]

    def publish(self, topic, payload, **props):
        p = Properties(PacketTypes.PUBLISH)
        for k, v in props.items():
            setattr(p, k, v)
        info = self.c.publish(topic, payload, qos=1, properties=p)
        info.wait_for_publish(edsrig.DEFAULT_TIMEOUT)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


class Mqtt5Case(GatewayTestCase):
    gw_options = {"stats_interval": 0.3, "cmd_expiry": 0}

    def setUp(self):
        super().setUp()
        self.v5 = Mqtt5Client(self.broker, "energy/#")
        self.addCleanup(self.v5.close)
        self.sub.wait_for_message("energy/_gateway/status", match=lambda m: m.json()["online"])


class UserPropertiesTest(Mqtt5Case):
    def test_data_carries_device_stream_seq_received_at(self):
        c, _ = self.session(DEV, stream="7f3a")
        c.send_json(data_msg(1, {"timestamp": "2026-11-24T10:00:00Z", "day-ahead-price": 81.4,
                                 "power_factor": 0.97}))
        self.assertEqual(c.recv_json(), {"type": "ack", "seq": 1})
        m = self.v5.wait_topic("energy/%s/data" % DEV)[0]
        props = dict(m.properties.UserProperty)
        self.assertEqual(props["device"], DEV)
        self.assertEqual(props["stream"], "7f3a")
        self.assertEqual(props["seq"], "1")
        self.assertRegex(props["received_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.gw.wait_for_line(r"broker receive maximum \d+: at most \d+ publishes outstanding")


class RequestResponseTest(Mqtt5Case):
    def test_result_on_response_topic_with_correlation_data(self):
        c, _ = self.session(DEV)
        rt = "energy/%s/cmd/result/planner-1" % DEV
        self.v5.publish("energy/%s/cmd" % DEV, b'{"id":"da-1","day-ahead-price":77.0}',
                        ResponseTopic=rt, CorrelationData=b"\x00req-42\xff")
        self.assertEqual(c.recv_line(),
                         b'{"type":"cmd","id":1,"data":{"id":"da-1","day-ahead-price":77.0}}')
        c.send_json({"type": "ack", "id": 1})
        m = self.v5.wait_topic(rt)[0]
        self.assertEqual(json.loads(m.payload), {"status": "delivered", "ref": "da-1"})
        self.assertEqual(m.properties.CorrelationData, b"\x00req-42\xff")
        # ... and on the device's result topic, as for every command.
        self.assertEqual(json.loads(self.v5.wait_topic("energy/%s/cmd/result" % DEV)[0].payload),
                         {"status": "delivered", "ref": "da-1"})

    def test_response_topic_outside_the_result_topic_is_ignored(self):
        c, _ = self.session(DEV)
        self.v5.publish("energy/%s/cmd" % DEV, b'{"id":"x"}', ResponseTopic="energy/%s/data" % DEV,
                        CorrelationData=b"c")
        self.assertEqual(c.recv_line(), b'{"type":"cmd","id":1,"data":{"id":"x"}}')
        c.send_json({"type": "ack", "id": 1})
        self.v5.wait_topic("energy/%s/cmd/result" % DEV)
        self.assertEqual(self.v5.msgs and [m for m in self.v5.msgs
                                           if m.topic == "energy/%s/data" % DEV], [])


class ExpiryTest(Mqtt5Case):
    def test_message_expiry_interval_honoured(self):
        c, _ = self.session(DEV)
        c.close()
        self.sub.wait_for(lambda ms: any(m.topic == "energy/_gateway/stats" and
                                         m.json()["devices_online"] == 0 for m in ms),
                          what="device offline")
        self.v5.publish("energy/%s/cmd" % DEV, b'{"id":"late","day-ahead-price":12.5}',
                        MessageExpiryInterval=1)
        self.v5.publish("energy/%s/cmd" % DEV, b'{"id":"fresh"}', MessageExpiryInterval=3600)
        m = self.v5.wait_topic("energy/%s/cmd/result" % DEV)[0]
        self.assertEqual(json.loads(m.payload)["status"], "expired")
        self.assertEqual(json.loads(m.payload)["ref"], "late")
        c, _ = self.session(DEV)
        self.assertEqual(c.recv_line(), b'{"type":"cmd","id":1,"data":{"id":"fresh"}}')


class Mqtt311Test(GatewayTestCase):
    gw_options = {"mqtt_version": "3.1.1", "stats_interval": 0.3}

    def test_data_and_results_at_3_1_1(self):
        v5 = Mqtt5Client(self.broker, "energy/#")
        self.addCleanup(v5.close)
        self.sub.wait_for_message("energy/_gateway/status", match=lambda m: m.json()["online"])
        c, _ = self.session(DEV)
        c.send_json(data_msg(1, {"timestamp": "2026-11-24T10:00:00Z", "day-ahead-price": 81.4,
                                 "power_factor": 0.97}))
        self.assertEqual(c.recv_json(), {"type": "ack", "seq": 1})
        m = v5.wait_topic("energy/%s/data" % DEV)[0]
        self.assertFalse(hasattr(m.properties, "UserProperty"))
        self.sub.publish("energy/%s/cmd" % DEV, b'{"id":"a"}')
        self.assertEqual(c.recv_line(), b'{"type":"cmd","id":1,"data":{"id":"a"}}')
        c.send_json({"type": "ack", "id": 1})
        self.assertEqual(json.loads(v5.wait_topic("energy/%s/cmd/result" % DEV)[0].payload),
                         {"status": "delivered", "ref": "a"})


if __name__ == "__main__":
    unittest.main()
