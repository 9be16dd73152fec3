#!/usr/bin/python3
"""broker-config/ proves what its README promises, on a real mosquitto started from it:
who may publish and subscribe what, that anonymous and wrong passwords are refused, and
that retained messages survive a broker restart (persistence)."""

import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edsrig  # noqa: E402
from edsrig import (GATEWAY_PASSWORD, GATEWAY_USER, READER_PASSWORD, READER_USER, Broker,  # noqa: E402
                    MqttClient, Subscriber)


class BrokerConfigTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.broker = Broker(users={"dashboard": "dashboard-test-secret"})

    @classmethod
    def tearDownClass(cls):
        cls.broker.close()

    def gateway(self):
        c = MqttClient(self.broker, GATEWAY_USER, GATEWAY_PASSWORD)
        self.addCleanup(c.close)
        return c

    def reader(self):
        c = MqttClient(self.broker, READER_USER, READER_PASSWORD)
        self.addCleanup(c.close)
        return c

    def subscriber(self, topics="energy/#", **kw):
        s = Subscriber(self.broker, topics, **kw)
        self.addCleanup(s.close)
        return s

    def test_generated_config_keeps_project_settings(self):
        with open(self.broker.conf_file) as f:
            conf = f.read()
        self.assertIn("allow_anonymous false", conf)
        self.assertIn("per_listener_settings false", conf)
        self.assertIn("acl_file %s" % edsrig.source_path("broker-config", "acl"), conf)
        self.assertIn("listener %d 127.0.0.1" % self.broker.port, conf)

    def test_gateway_publishes_data_status_rejected_and_reader_receives(self):
        sub = self.subscriber()
        gw = self.gateway()
        gw.publish("energy/dev1/data", b'{"p":1}', qos=1)
        gw.publish("energy/dev1/status", b'{"online":true}', qos=1, retain=True)
        gw.publish("energy/dev1/rejected", b'{"seq":3}', qos=1)
        gw.publish("energy/_gateway/stats", b'{"n":0}', qos=0)
        self.assertEqual(sub.wait_for_message("energy/dev1/data").payload, b'{"p":1}')
        self.assertEqual(sub.wait_for_message("energy/dev1/status").payload, b'{"online":true}')
        self.assertEqual(sub.wait_for_message("energy/dev1/rejected").payload, b'{"seq":3}')
        self.assertEqual(sub.wait_for_message("energy/_gateway/stats").payload, b'{"n":0}')

    def test_reader_cannot_publish_data_but_can_send_commands(self):
        sub = self.subscriber()  # a reader sees all of energy/#
        gw_cmd = self.subscriber("energy/+/cmd", username=GATEWAY_USER, password=GATEWAY_PASSWORD)
        rd = self.reader()
        rd.publish("energy/dev3/data", b'{"fake":1}', qos=1)  # the broker acks, then drops it
        rd.publish("energy/dev3/status", b'{"online":false}', qos=1)
        rd.publish("energy/dev3/cmd", b'{"relay":1}', qos=1)
        # The command arrives at the gateway; mosquitto forwards one publisher's messages in
        # order, so once the command reached the reader's own subscription the denied
        # publishes sent before it would have too.
        self.assertEqual(gw_cmd.wait_for_message("energy/dev3/cmd").payload, b'{"relay":1}')
        sub.wait_for_message("energy/dev3/cmd")
        topics = [m.topic for m in sub.messages()]
        self.assertNotIn("energy/dev3/data", topics)
        self.assertNotIn("energy/dev3/status", topics)
        self.assertEqual([m.topic for m in gw_cmd.messages()], ["energy/dev3/cmd"])

    def test_gateway_cannot_send_commands_or_read_data(self):
        sub = self.subscriber()
        gw_sub = self.subscriber("energy/#", username=GATEWAY_USER, password=GATEWAY_PASSWORD)
        gw = self.gateway()
        gw.publish("energy/dev2/cmd", b'{"spoof":1}', qos=1)  # denied: only readers command
        gw.publish("energy/dev2/data", b'{"p":2}', qos=1)
        sub.wait_for_message("energy/dev2/data")
        self.assertNotIn("energy/dev2/cmd", [m.topic for m in sub.messages()])
        # The gateway's subscription to energy/# only ever delivers what it may read: cmd.
        rd = self.reader()
        rd.publish("energy/dev2/cmd", b'{"ok":1}', qos=1)
        gw_sub.wait_for_message("energy/dev2/cmd")
        self.assertEqual({m.topic for m in gw_sub.messages()}, {"energy/dev2/cmd"})

    def test_dashboard_reads_everything_and_writes_nothing(self):
        dash = self.subscriber("energy/#", username="dashboard",
                               password="dashboard-test-secret")
        gw_cmd = self.subscriber("energy/+/cmd", username=GATEWAY_USER,
                                 password=GATEWAY_PASSWORD)
        gw = self.gateway()
        gw.publish("energy/dev6/data", b'{"p":6}', qos=1)
        gw.publish("energy/_gateway/stats", b'{"n":6}', qos=0)
        self.assertEqual(dash.wait_for_message("energy/dev6/data").payload, b'{"p":6}')
        dash.wait_for_message("energy/_gateway/stats")
        # Its command and fake data are dropped; a reader's command, sent after them, is
        # the only one the gateway gets (one publisher's messages stay in order, and both
        # go through the same broker to the same subscriber).
        dash_pub = MqttClient(self.broker, "dashboard", "dashboard-test-secret")
        self.addCleanup(dash_pub.close)
        dash_pub.publish("energy/dev6/cmd", b'{"from":"dashboard"}', qos=1)
        dash_pub.publish("energy/dev6/data", b'{"fake":1}', qos=1)
        self.reader().publish("energy/dev6/cmd", b'{"from":"reader"}', qos=1)
        gw_cmd.wait_for_message("energy/dev6/cmd")
        dash.wait_for_message("energy/dev6/cmd")
        self.assertEqual([m.payload for m in gw_cmd.messages()], [b'{"from":"reader"}'])
        self.assertEqual([m.payload for m in dash.messages() if m.topic == "energy/dev6/data"],
                         [b'{"p":6}'])

    def test_large_record_is_delivered_not_dropped(self):
        # A broker-side size limit below the gateway's max_line would drop records that the
        # broker still acknowledges (silent loss): a 2 MiB record must arrive.
        sub = self.subscriber("energy/dev5/data")
        gw = self.gateway()
        big = b'{"blob":"' + b"x" * (2 * 1024 * 1024) + b'"}'
        gw.publish("energy/dev5/data", big, qos=1)
        self.assertEqual(sub.wait_for_message("energy/dev5/data").payload, big)

    def test_anonymous_and_bad_passwords_are_refused(self):
        self.assertEqual(MqttClient.connect_rc(self.broker, None, None), 5)
        self.assertEqual(MqttClient.connect_rc(self.broker, GATEWAY_USER, "wrong"), 5)
        self.assertEqual(MqttClient.connect_rc(self.broker, "nobody", "x"), 5)
        self.assertEqual(MqttClient.connect_rc(self.broker, READER_USER, READER_PASSWORD), 0)


class BrokerPersistenceTest(unittest.TestCase):
    def test_retained_status_survives_restart(self):
        with Broker() as broker:
            gw = MqttClient(broker, GATEWAY_USER, GATEWAY_PASSWORD)
            gw.publish("energy/dev9/status", b'{"online":true}', qos=1, retain=True)
            gw.close()
            port = broker.port
            broker.restart()
            self.assertEqual(broker.port, port)
            sub = Subscriber(broker, "energy/+/status")
            try:
                m = sub.wait_for_message("energy/dev9/status")
                self.assertTrue(m.retain)
                self.assertEqual(m.json(), {"online": True})
            finally:
                sub.close()

    def test_kill_by_pid(self):
        broker = Broker()
        try:
            rc = broker.kill()
            self.assertEqual(rc, -9)
            self.assertFalse(edsrig.can_connect(broker.port))
        finally:
            broker.close()


def bridge_lines(central, username, password):
    """broker-config/bridge.conf.example with the placeholders pointed at `central`."""
    replace = {
        "address": "address 127.0.0.1:%d" % central.tls_port,
        "bridge_cafile": "bridge_cafile %s" % central.certs["ca"],
        "remote_username": "remote_username %s" % username,
        "remote_password": "remote_password %s" % password,
    }
    out = []
    with open(edsrig.source_path("broker-config", "bridge.conf.example")) as f:
        for line in f:
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            out.append(replace.pop(words[0], line.rstrip("\n")))
    assert not replace, "bridge.conf.example lacks %s" % sorted(replace)
    return out


class BridgeExampleTest(unittest.TestCase):
    def test_bridge_forwards_energy_to_central_over_tls(self):
        # A stand-in central broker: TLS listener, the site's account may write its subtree.
        acl_dir = tempfile.mkdtemp(prefix="eds-central-acl-")
        self.addCleanup(shutil.rmtree, acl_dir, True)
        acl = os.path.join(acl_dir, "acl")
        with open(acl, "w") as f:
            f.write("user site1\ntopic readwrite sites/site1/#\n"
                    "user reader\ntopic read sites/#\n")
        with Broker(tls=True, users={"site1": "site1-pw"}, acl_path=acl) as central:
            with Broker(extra_lines=bridge_lines(central, "site1", "site1-pw")) as pi:
                # The bridge announces the link on the Pi (notification_topic); then data flows.
                local = Subscriber(pi, "energy/_gateway/bridge")
                self.addCleanup(local.close)
                local.wait_for_message("energy/_gateway/bridge", match=lambda m: m.payload == b"1",
                                       timeout=30)
                remote = Subscriber(central, "sites/#")
                self.addCleanup(remote.close)
                gw = MqttClient(pi, GATEWAY_USER, GATEWAY_PASSWORD)
                self.addCleanup(gw.close)
                gw.publish("energy/dev1/data", b'{"p":7}', qos=1)
                m = remote.wait_for_message("sites/site1/energy/dev1/data", timeout=20)
                self.assertEqual(m.payload, b'{"p":7}')


if __name__ == "__main__":
    unittest.main(verbosity=2)
