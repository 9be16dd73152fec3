#!/usr/bin/python3
"""eds-gateway's downlink: a reader publishes on P/<device>/cmd, the connected agent gets
{"type":"cmd","id":N,"data":...} and acks it; commands for an offline device are held
(bounded by max_held_cmds) and delivered on connect; unacked ones come again after a
reconnect."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edsrig  # noqa: E402
from gwrig import GatewayTestCase  # noqa: E402

DEV = "myrio-01"
CMD = {"day-ahead-price": 77.0, "valid_from": "2026-11-24T11:00:00Z"}


class CmdTest(GatewayTestCase):
    gw_options = {"stats_interval": 0.3, "max_held_cmds": 3}

    def setUp(self):
        super().setUp()
        self.reader = edsrig.MqttClient(self.broker, edsrig.READER_USER, edsrig.READER_PASSWORD)
        self.addCleanup(self.reader.close)
        # The gateway subscribes to P/+/cmd before it publishes its online status on the
        # same MQTT connection: once that status is here, commands reach the gateway.
        self.sub.wait_for_message("energy/_gateway/status", match=lambda m: m.json()["online"])

    def send_cmd(self, device, payload):
        self.reader.publish("energy/%s/cmd" % device, payload, qos=1)

    def wait_cmds_in(self, n):
        """Waits until the gateway has taken n commands from the broker (its stats say so)."""
        def got(msgs):
            return any(m.topic == "energy/_gateway/stats" and m.json()["cmds_in"] >= n
                       for m in msgs)
        self.sub.wait_for(got, what="gateway stats with cmds_in >= %d" % n)

    def barrier(self, c):
        """ping/pong: every line the gateway queued before the pong has been read."""
        c.send_json({"type": "ping"})
        line = c.recv_line()
        self.assertEqual(line, b'{"type":"pong"}')

    def test_cmd_reaches_the_connected_agent_byte_for_byte(self):
        c, _ = self.session(DEV)
        self.send_cmd(DEV, b'{"day-ahead-price":77.0,"valid_from":"2026-11-24T11:00:00Z"}')
        line = c.recv_line()
        self.assertRegex(line, rb'^\{"type":"cmd","id":1,"data":\{')
        obj = edsrig.json.loads(line)
        self.assertEqual(obj, {"type": "cmd", "id": 1, "data": CMD})
        c.send_json({"type": "ack", "id": 1})
        # Any JSON value is a command; ids increase per connection.
        self.send_cmd(DEV, b"42")
        self.assertEqual(c.recv_line(), b'{"type":"cmd","id":2,"data":42}')
        c.send_json({"type": "ack", "id": 2})
        self.send_cmd(DEV, b'"reboot"')
        self.assertEqual(c.recv_line(), b'{"type":"cmd","id":3,"data":"reboot"}')
        c.send_json({"type": "ack", "id": 3})
        self.barrier(c)

    def test_cmd_that_is_not_json_is_dropped(self):
        c, _ = self.session(DEV)
        self.send_cmd(DEV, b"not json")
        self.send_cmd(DEV, b'{"relay":1}')
        self.assertEqual(c.recv_line(), b'{"type":"cmd","id":1,"data":{"relay":1}}')

    def test_cmd_goes_only_to_its_device(self):
        a, _ = self.session("myrio-01")
        b, _ = self.session("myrio-02")
        self.send_cmd("myrio-02", b'{"to":2}')
        self.assertEqual(b.recv_line(), b'{"type":"cmd","id":1,"data":{"to":2}}')
        self.barrier(a)  # nothing came to myrio-01 before its pong

    def test_cmd_for_offline_device_is_held_and_delivered_on_connect(self):
        self.send_cmd("myrio-02", b'{"n":1}')
        self.send_cmd("myrio-02", b'{"n":2}')
        self.wait_cmds_in(2)
        c, _ = self.session("myrio-02")
        self.assertEqual(c.recv_line(), b'{"type":"cmd","id":1,"data":{"n":1}}')
        self.assertEqual(c.recv_line(), b'{"type":"cmd","id":2,"data":{"n":2}}')
        c.send_json({"type": "ack", "id": 1})
        c.send_json({"type": "ack", "id": 2})
        self.barrier(c)

    def test_held_commands_are_bounded_oldest_dropped(self):
        for n in range(1, 6):
            self.send_cmd("myrio-02", b'{"n":%d}' % n)
        self.wait_cmds_in(5)
        c, _ = self.session("myrio-02")
        # max_held_cmds 3: the two oldest were dropped.
        self.assertEqual(c.recv_line(), b'{"type":"cmd","id":1,"data":{"n":3}}')
        self.assertEqual(c.recv_line(), b'{"type":"cmd","id":2,"data":{"n":4}}')
        self.assertEqual(c.recv_line(), b'{"type":"cmd","id":3,"data":{"n":5}}')
        self.barrier(c)

    def test_unacked_cmd_is_redelivered_after_reconnect(self):
        c, _ = self.session(DEV)
        self.send_cmd(DEV, b'{"relay":"on"}')
        self.send_cmd(DEV, b'{"relay":"off"}')
        self.assertEqual(c.recv_line(), b'{"type":"cmd","id":1,"data":{"relay":"on"}}')
        self.assertEqual(c.recv_line(), b'{"type":"cmd","id":2,"data":{"relay":"off"}}')
        c.send_json({"type": "ack", "id": 1})  # only the first is taken
        self.barrier(c)
        c.close()
        c, _ = self.session(DEV)
        # The unacked one comes again, first, with an id of the new connection.
        self.assertEqual(c.recv_line(), b'{"type":"cmd","id":1,"data":{"relay":"off"}}')
        c.send_json({"type": "ack", "id": 1})
        self.barrier(c)
        c.close()
        c, _ = self.session(DEV)
        self.barrier(c)  # nothing left to deliver

    def test_cmds_flow_again_after_a_broker_restart(self):
        c, _ = self.session(DEV)
        mark = self.gw.mark()
        self.broker.restart()
        self.gw.wait_for_line(r"connected to the broker", timeout=40, start=mark)
        self.reader.close()
        self.reader = edsrig.MqttClient(self.broker, edsrig.READER_USER,
                                        edsrig.READER_PASSWORD)
        self.addCleanup(self.reader.close)
        # The gateway subscribes again on its new MQTT connection; until the broker has
        # that subscription a command is dropped, so send probes until one arrives.
        got = []

        def delivered():
            self.send_cmd(DEV, b'{"probe":true}')
            try:
                got.append(c.recv_line(0.3))
            except edsrig.RigTimeout:
                pass
            return got
        edsrig.wait_until(delivered, what="a command after the broker restart")
        self.assertEqual(got[0], b'{"type":"cmd","id":1,"data":{"probe":true}}')

    def test_unacked_cmd_moves_to_the_replacing_connection(self):
        old, _ = self.session(DEV)
        self.send_cmd(DEV, b'{"k":1}')
        self.assertEqual(old.recv_line(), b'{"type":"cmd","id":1,"data":{"k":1}}')
        new, _ = self.session(DEV)
        self.assertEqual(new.recv_line(), b'{"type":"cmd","id":1,"data":{"k":1}}')
        # The old connection's late ack does not reach anyone; the new one acks.
        new.send_json({"type": "ack", "id": 1})
        self.barrier(new)

    def test_cmd_for_a_device_never_seen_creates_no_status(self):
        self.send_cmd("ghost-1", b'{"boo":1}')
        self.wait_cmds_in(1)
        mark = self.gw.mark()
        self.broker.restart()  # the gateway republishes the statuses of known devices
        self.gw.wait_for_line(r"connected to the broker", timeout=40, start=mark)
        c, _ = self.session(DEV)  # a real device: its status is a barrier
        self.sub.close()
        sub = edsrig.Subscriber(self.broker, "energy/+/status")
        self.addCleanup(sub.close)
        sub.wait_for_message("energy/%s/status" % DEV, match=lambda m: m.json()["online"])
        self.assertEqual(sub.messages("energy/ghost-1/status"), [])

    def test_cmd_ack_with_unknown_id_is_harmless(self):
        c, _ = self.session(DEV)
        c.send_json({"type": "ack", "id": 99})
        self.barrier(c)


if __name__ == "__main__":
    unittest.main()
