#!/usr/bin/python3
"""Commands end to end with a real eds-agent: the agent checks each command against its
cmd_schema and the gateway's result says rejected (with the agent's errors) or delivered;
the application gets the payload byte for byte; with cmd_tcp a command is acked only once
written to the local TCP client, and waits in the spool until then, across a power cycle
of the agent (kill -9 and a restart on the same spool) and a gateway kill -9."""

import json
import os
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edsrig  # noqa: E402
from edsrig import free_port, wait_until  # noqa: E402
from test_agent_delivery import CONNECTED, DEV, AgentTestCase  # noqa: E402

CMD_SCHEMA = {"day-ahead-price": {"type": "float", "required": True},
              "valid_from": {"type": "string", "required": True},
              "id": {"type": "string"}}


class AgentCmdCase(AgentTestCase):
    gw_options = {"stats_interval": 0.3}

    def results(self, n):
        return [json.loads(m.payload)
                for m in self.sub.wait_for_count("energy/%s/cmd/result" % DEV, n)]

    def send(self, payload):
        self.sub.publish("energy/%s/cmd" % DEV, payload)

    def cmd_schema(self):
        path = os.path.join(self.agent_dir, "cmd-schema.json")
        with open(path, "w") as f:
            json.dump(CMD_SCHEMA, f)
        return path


class AgentSchemaTest(AgentCmdCase):
    def test_agent_refuses_with_errors_and_delivers_byte_exact(self):
        p = self.start_agent("--simulate", 1, "--cmd-schema", self.cmd_schema(), "--cmd-stdout")
        p.wait_for_line(CONNECTED % DEV)
        self.send(b'{"id":"p-1","day-ahead-price":"cheap","valid_from":"2026-11-24T11:00:00Z"}')
        self.send(b'{"id":"p-2", "day-ahead-price": 77.0, "valid_from":"2026-11-24T11:00:00Z",'
                  b' "big": 12345678901234567890}')
        line = p.wait_for_line(r'^\{"id":"p-2"', stream="stdout").string
        self.assertEqual(line, '{"id":"p-2","day-ahead-price":77.0,'
                               '"valid_from":"2026-11-24T11:00:00Z","big":12345678901234567890}')
        got = self.results(2)
        self.assertEqual(got[0], {"status": "rejected", "ref": "p-1",
                                  "reason": "refused by the agent",
                                  "errors": {"day-ahead-price": ["must be of float type"]}})
        self.assertEqual(got[1], {"status": "delivered", "ref": "p-2"})
        self.assertEqual(p.lines("stdout"), [line])  # the refused one never reached it


class RefusalFloodTest(AgentCmdCase):
    N = 300

    def test_refused_commands_do_not_flood_the_log(self):
        p = self.start_agent("--simulate", 1, "--cmd-schema", self.cmd_schema(), "--cmd-stdout")
        p.wait_for_line(CONNECTED % DEV)
        for i in range(self.N):
            self.send(b'{"id":"bad-%d","day-ahead-price":"cheap"}' % i)
        got = self.results(self.N)
        self.assertTrue(all(r["status"] == "rejected" for r in got))
        refused = [line for line in p.lines("stderr") if " refused: " in line]
        self.assertGreaterEqual(len(refused), 1)
        self.assertLessEqual(len(refused), 3, refused)
        self.assertEqual(p.lines("stdout"), [])


class TcpConsumerTest(AgentCmdCase):
    def test_acked_only_when_the_tcp_client_took_it_across_power_cycles(self):
        port = free_port()
        spool = self.spool_dir()
        p = self.start_agent("--tcp", port, "--cmd-tcp", "--spool", spool)
        p.wait_for_line(CONNECTED % DEV)
        self.send(b'{"id":"da-1","day-ahead-price":77.0}')
        # Nobody took it: no ack, no result; it waits in the spool.
        pending = os.path.join(spool, "cmds.pending")

        def spooled():
            if not os.path.exists(pending):
                return False
            with open(pending, "rb") as f:
                return b"da-1" in f.read()
        wait_until(spooled, timeout=10, what="the command in the agent's spool")
        # Power cycle of the myRIO while the gateway is gone too (kill -9): the application
        # gets the command from the agent's spool, with no gateway to ask.
        p.kill()
        self.gw.kill()
        p2 = self.start_agent("--tcp", port, "--cmd-tcp", "--spool", spool)
        p2.wait_for_line(r"1 downlink command from before the restart")
        p2.wait_for_line(r"reading NDJSON records from tcp")
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.addCleanup(c.close)
        f = c.makefile("rb")
        self.addCleanup(f.close)
        self.assertEqual(f.readline(), b'{"id":"da-1","day-ahead-price":77.0}\n')
        # The gateway comes back with the command from its store and sends it again: the
        # agent knows its uid, acks it, and does not hand it over twice.
        self.gw.start()
        p2.wait_for_line(CONNECTED % DEV)
        self.assertEqual(self.results(1), [{"status": "delivered", "ref": "da-1"}])
        # Exactly once: the next command is the next line, nothing repeated.
        self.send(b'{"id":"da-2","day-ahead-price":80.5}')
        self.assertEqual(f.readline(), b'{"id":"da-2","day-ahead-price":80.5}\n')
        self.assertEqual([r["ref"] for r in self.results(2)], ["da-1", "da-2"])


class TcpConsumerWithUdpTest(AgentCmdCase):
    def test_udp_beside_cmd_tcp_is_an_extra_the_tcp_client_decides_the_ack(self):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(udp.close)
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(10)
        port = free_port()
        p = self.start_agent("--tcp", port, "--cmd-tcp", "--cmd-udp", udp.getsockname()[1])
        p.wait_for_line(CONNECTED % DEV)
        self.send(b'{"id":"da-1","day-ahead-price":77.0}')
        self.assertEqual(udp.recvfrom(65536)[0], b'{"id":"da-1","day-ahead-price":77.0}')
        # The datagram alone is no ack: no result while the tcp client has not taken it.
        self.barrier()
        self.assertEqual(self.sub.messages("energy/%s/cmd/result" % DEV), [])
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.addCleanup(c.close)
        f = c.makefile("rb")
        self.addCleanup(f.close)
        self.assertEqual(f.readline(), b'{"id":"da-1","day-ahead-price":77.0}\n')
        self.assertEqual(self.results(1), [{"status": "delivered", "ref": "da-1"}])


if __name__ == "__main__":
    unittest.main()
