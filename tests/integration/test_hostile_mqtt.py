#!/usr/bin/python3
"""Hostile input from the MQTT side, while a well-behaved agent (myrio-01) sends records:
an MQTT user allowed to publish downlink commands (the ACL lets readers write energy/+/cmd)
floods commands to a connected device that never reads, to a known device that is
offline, and to device ids that never connected. Commands the gateway holds must stay
bounded in memory."""

import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edsrig  # noqa: E402
from hostile import (ASAN, RSS_BOUND_KB, Flooder, HostileTestCase, record_lines,  # noqa: E402
                     scaled)

CMD = json.dumps({"setpoint": "x" * 60000})  # fits the default max_line (65536) with room
# What the gateway may hold for the commands below: one device's unacked window (64) and
# another's max_held_cmds (100) of 60 KB each are about 10 MB (ASan adds redzones and its
# quarantine to each 60 KB allocation).
CMD_BOUND_KB = RSS_BOUND_KB if ASAN else 64 * 1024


class CommandFloodCase(HostileTestCase):
    gw_options = {"stats_interval": 1, "idle_timeout": 0}

    def flood(self, topics, count):
        """Publishes `count` commands of 60 KB round-robin over topics as a reader (QoS 1,
        waiting for the broker every 50)."""
        pub = edsrig.MqttClient(self.broker, edsrig.READER_USER, edsrig.READER_PASSWORD)
        self.addCleanup(pub.close)
        t0 = time.monotonic()
        for i in range(count):
            pub.publish(topics[i % len(topics)], CMD, qos=1, wait=(i % 50 == 49))
        pub.publish(topics[0], CMD, qos=1, wait=True)
        return time.monotonic() - t0

    def cmds_settled(self, count):
        """Waits until each of the `count` commands is taken (cmds_in) or counted lost
        (cmds_lost: the queue from the MQTT client to the loop was full), and checks that
        none is missing from both."""
        st = self.stats(lambda d: d["cmds_in"] + d["cmds_lost"] >= count,
                        "cmds_in + cmds_lost >= %d" % count, timeout=30)
        self.assertEqual(st["cmds_in"] + st["cmds_lost"], count)
        return st


class CommandsToSilentDevicesTest(CommandFloodCase):
    def test_commands_to_a_device_that_never_reads_and_to_an_offline_one(self):
        # myrio-02 is connected but never reads (it pipelines records until it stalls);
        # myrio-03 was online once, is offline now: its commands are held (max_held_cmds).
        f = Flooder(self.gw.port, "myrio-02", "pw-02", record_lines)
        self.addCleanup(f.close)
        self.flood_until_stalled([f], scaled(200000, 50000))
        c = edsrig.LineClient(self.gw.port)
        c.send_json({"type": "hello", "device": "myrio-03", "password": "pw-03", "proto": 1})
        self.assertEqual(c.recv_json()["type"], "welcome")
        c.close()
        self.stats(lambda d: d["devices_online"] == 2, "myrio-03 offline again")
        n = scaled(1000, 400)
        took = self.flood(["energy/myrio-02/cmd", "energy/myrio-03/cmd"], n)
        st = self.cmds_settled(n + 1)
        grew = self.mem.now() - self.mem.baseline
        self.agent.progress(20)
        self.figure("%d commands of 60 KB (%.0f MB) in %.1f s to a device that never reads "
                    "and to an offline one: VmRSS +%d kB; cmds_in %d cmds_dropped %d cmds_lost %d" % (
                        n + 1, (n + 1) * len(CMD) / 1e6, took, grew, st["cmds_in"],
                        st["cmds_dropped"], st["cmds_lost"]))
        self.assertLess(grew, CMD_BOUND_KB)
        self.assertGreater(st["cmds_dropped"], 0, "nothing dropped past max_held_cmds")
        self.settle(bound_kb=CMD_BOUND_KB)


class CommandsToUnknownDevicesTest(CommandFloodCase):
    # Was a bug: a command on energy/<id>/cmd for any well-formed id created a device
    # entry and held the command, so one MQTT user allowed to write energy/+/cmd could make
    # the gateway hold max_devices x max_held_cmds x max_line bytes (3000 ids x 60 KB grew
    # VmRSS by about 180 MB). Now every command the gateway owns counts against
    # max_held_bytes (16 MiB by default); past it new commands are dropped and counted.
    def test_commands_to_device_ids_that_never_connected(self):
        n = 3000  # not scaled: 180 MB offered, well past the bound in both builds
        topics = ["energy/ghost-%04d/cmd" % i for i in range(n)]
        took = self.flood(topics, n)
        st = self.cmds_settled(n + 1)
        grew = self.mem.now() - self.mem.baseline
        self.figure("%d commands of 60 KB (%.0f MB) in %.1f s to %d never-seen ids: VmRSS "
                    "+%d kB; devices_known %d, cmds_lost %d" % (
                        n + 1, (n + 1) * len(CMD) / 1e6, took, n, grew, st["devices_known"],
                        st["cmds_lost"]))
        self.agent.progress(20)
        self.settle(bound_kb=CMD_BOUND_KB)


if __name__ == "__main__":
    unittest.main()
