#!/usr/bin/python3
"""eds-agent against the real eds-gateway and mosquitto: records from stdin, TCP, UDP and
the simulator arrive on the broker once each and in order; records the schema refuses
never leave the agent; records the gateway nacks are dropped; downlink commands reach
stdout and a UDP port and are acked; auth_failed is reported; after --drain-timeout the
undelivered records stay in the spool and the next start delivers them.

AgentTestCase (imported by test_agent_faults.py) starts the agent for a test's rig."""

import json
import os
import socket
import subprocess
import sys
import shutil
import signal
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edsrig  # noqa: E402
from edsrig import Process, bin_path, free_port, wait_until  # noqa: E402
from gwrig import SCHEMA, GatewayTestCase  # noqa: E402

DEV = "myrio-01"
CONNECTED = r"notice: connected to gateway .* as %s"


def rec(i):
    """A record valid under schemas/energy.json, identified by its `sample`."""
    return {"timestamp": "2026-11-24T%02d:%02d:%02dZ" % (i // 3600 % 24, i // 60 % 60, i % 60),
            "day-ahead-price": round(20 + (i % 1000) / 10.0, 1), "power_factor": 0.97,
            "sample": i}


def ndjson(first, last):
    return b"".join(json.dumps(rec(i)).encode() + b"\n" for i in range(first, last + 1))


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def udp_rx_queue(port):
    """Bytes waiting in the receive queue of the UDP socket bound to 127.0.0.1:port."""
    with open("/proc/net/udp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == "0100007F:%04X" % port:
                return int(fields[4].split(":")[1], 16)
    raise AssertionError("no UDP socket on 127.0.0.1:%d" % port)


class AgentTestCase(GatewayTestCase):
    """A GatewayTestCase that can start eds-agent processes against its gateway."""

    def setUp(self):
        super().setUp()
        self.agent_dir = tempfile.mkdtemp(prefix="eds-agent-test-")
        self.addCleanup(shutil.rmtree, self.agent_dir, True)
        self.agents = []
        self.addCleanup(self._close_agents)

    def _close_agents(self):
        for p in self.agents:
            if p.running():
                p.kill()
            lines = p.lines()
            sys.stderr.write("---- %s: eds-agent pid %d (last %d of %d lines)\n%s\n" % (
                self.id(), p.pid, min(len(lines), 40), len(lines), "\n".join(lines[-40:])))

    def password_file(self, device=DEV, password=None):
        path = os.path.join(self.agent_dir, "pw-" + device)
        with open(path, "w") as f:
            f.write((password if password is not None else self.gw.devices[device]) + "\n")
        os.chmod(path, 0o600)
        return path

    def spool_dir(self, name="spool"):
        return os.path.join(self.agent_dir, name)

    def start_agent(self, *args, device=DEV, password=None, stdin=subprocess.DEVNULL,
                    port=None, schema=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE):
        argv = [bin_path("eds-agent"), "--gateway", "127.0.0.1:%d" % (port or self.gw.port),
                "--device", device, "--password-file", self.password_file(device, password),
                "--reconnect-min", "0.1", "--reconnect-max", "1", "-v"]
        if schema:
            argv += ["--schema", SCHEMA]
        argv += [str(a) for a in args]
        p = Process(argv, name="eds-agent", stdin=stdin, stdout=stdout, stderr=stderr)
        self.agents.append(p)
        return p

    def run_agent(self, *args, input_bytes=b"", timeout=60, **kw):
        """Runs the agent with input_bytes on stdin to its exit; returns (rc, process)."""
        p = self.start_agent(*args, stdin=subprocess.PIPE, **kw)
        p.proc.stdin.write(input_bytes)
        p.proc.stdin.close()
        return p.wait(timeout), p

    def barrier(self):
        """Publishes a marker and waits until the subscriber has it: whatever the broker
        had accepted before (every acked record) has then reached the subscriber too."""
        self.barriers = getattr(self, "barriers", 0) + 1
        token = b'{"barrier":%d}' % self.barriers
        self.sub.publish("energy/_barrier/cmd", token)
        self.sub.wait_for_message("energy/_barrier/cmd", match=lambda m: m.payload == token)

    def samples(self, device=DEV, leaf="data"):
        return [json.loads(m)["sample"] for m in self.payloads(device, leaf)]

    def wait_samples(self, count, device=DEV, timeout=30):
        return [json.loads(m)["sample"] for m in self.wait_payloads(device, count,
                                                                     timeout=timeout)]

    def assert_once_in_order(self, total, device=DEV, timeout=30):
        """Exactly samples 1..total on the data topic, in order, none twice."""
        self.wait_samples(total, device, timeout)
        self.barrier()
        got = self.samples(device)
        self.assertEqual(len(got), len(set(got)), "duplicates on the broker")
        self.assertEqual(got, list(range(1, total + 1)))


class StdinTest(AgentTestCase):
    def test_stdin_records_arrive_once_in_order_bad_ones_stay_local(self):
        bad = (b'{"timestamp":"2026-11-24T10:00:00Z","day-ahead-price":-3,"power_factor":1.2}\n'
               b'not json\n')
        rc, p = self.run_agent(input_bytes=ndjson(1, 75) + bad + ndjson(76, 150))
        self.assertEqual(rc, 0, p.output())
        self.assert_once_in_order(150)
        out = p.output()
        self.assertIn('"power_factor":["must be between 0.0 and 1.0"]', out)
        self.assertIn("record refused: not a JSON object", out)
        self.assertRegex(out, r"150 accepted, 150 acked \(0 duplicates\), 0 nacked, 2 invalid")
        # refused locally: nothing about them reached the gateway's rejected topic
        self.assertEqual(self.payloads(DEV, "rejected"), [])

    def test_spool_mode_and_exit_status(self):
        rc, p = self.run_agent("--spool", self.spool_dir(), input_bytes=ndjson(1, 300))
        self.assertEqual(rc, 0, p.output())
        self.assert_once_in_order(300)
        # everything acked: the spool holds no record, and the counter lives on
        rc, p = self.run_agent("--spool", self.spool_dir(), input_bytes=ndjson(301, 310))
        self.assertEqual(rc, 0, p.output())
        self.assert_once_in_order(310)


class OtherInputsTest(AgentTestCase):
    def test_udp_datagrams(self):
        port = free_udp_port()
        p = self.start_agent("--udp", port, "--count", 100)
        p.wait_for_line(CONNECTED % DEV)
        p.wait_for_line(r"reading JSON datagrams from udp 127.0.0.1:%d" % port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(1, 101):
                s.sendto(json.dumps(rec(i)).encode(), ("127.0.0.1", port))
                if i % 20 == 0:  # LabVIEW-like pace: let the agent keep up (UDP is lossy)
                    self.wait_samples(i - 10)
        self.assertEqual(p.wait(30), 0, p.output())
        self.assert_once_in_order(100)

    def test_udp_overload_drops_are_counted(self):
        self.gw.stop()  # nothing drains the 5-record queue
        port = free_udp_port()
        p = self.start_agent("--udp", port, "--queue-max", 5, "--drain-timeout", 0.5)
        p.wait_for_line(r"reading JSON datagrams from udp 127.0.0.1:%d" % port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(1, 101):
                s.sendto(json.dumps(rec(i)).encode(), ("127.0.0.1", port))
        p.wait_for_line(r"udp input: queue full, \d+ datagrams dropped so far")
        # Each datagram is either queued or dropped and counted: 5 + 95 (the kernel's own
        # socket buffer easily holds 100 small datagrams, so none is lost uncounted).
        # Stop the agent only once it has read them all.
        wait_until(lambda: udp_rx_queue(port) == 0, 10, "the agent to read every datagram")
        p.signal(signal.SIGTERM)
        self.assertEqual(p.wait(), 1, p.output())
        self.assertRegex(p.output(), r"records: 5 accepted, 0 acked .* 95 udp dropped, 5 pending")

    def test_tcp_ndjson(self):
        port = free_port()
        p = self.start_agent("--tcp", port, "--count", 400)
        p.wait_for_line(r"reading NDJSON records from tcp 127.0.0.1:%d" % port)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            data = ndjson(1, 400)
            # split mid-record, as TCP may
            s.sendall(data[:1001])
            s.sendall(data[1001:])
        self.assertEqual(p.wait(30), 0, p.output())
        self.assert_once_in_order(400)

    def test_tcp_pushes_back_when_full_and_loses_nothing(self):
        total = 20000
        self.gw.stop()  # nothing can be delivered: the 50-record queue fills at once
        port = free_port()
        p = self.start_agent("--tcp", port, "--count", total, "--queue-max", 50)
        p.wait_for_line(r"reading NDJSON records from tcp 127.0.0.1:%d" % port)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        # A fixed send buffer (no autotuning up to 4 MB): what the agent does not read
        # stays within a few hundred KB of kernel buffers.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
        s.settimeout(60)
        s.connect(("127.0.0.1", port))
        writer = threading.Thread(target=s.sendall, args=(ndjson(1, total),), daemon=True)
        writer.start()
        # 2 MB cannot fit in the 50-record queue and those buffers: the writer must block.
        # (Asserting that something does NOT happen needs some time; 2 s is ample.)
        writer.join(2.0)
        self.assertTrue(writer.is_alive(), "the agent did not push back")
        self.gw.start()
        writer.join(60)
        self.assertFalse(writer.is_alive())
        self.assertEqual(p.wait(60), 0, p.output())
        self.assert_once_in_order(total, timeout=60)

    def test_simulator(self):
        p = self.start_agent("--simulate", 200, "--count", 300)
        self.assertEqual(p.wait(30), 0, p.output())
        self.assert_once_in_order(300)
        prev_energy = 0
        for m in self.payloads(DEV):
            r = json.loads(m)
            self.assertRegex(r["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertTrue(20 <= r["day-ahead-price"] <= 150, r)
            self.assertTrue(0.85 <= r["power_factor"] <= 1.0, r)
            self.assertGreaterEqual(r["energy"], prev_energy)
            prev_energy = r["energy"]


class StdioTest(AgentTestCase):
    def test_closed_stderr_does_not_reach_the_gateway(self):
        # Regression: started with stderr closed, the agent's gateway socket took fd 2 and
        # its log lines went to the gateway (bad_json), and the agent never finished.
        argv = [bin_path("eds-agent"), "--gateway", "127.0.0.1:%d" % self.gw.port,
                "--device", DEV, "--password-file", self.password_file(), "--schema", SCHEMA,
                "-v"]
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             preexec_fn=lambda: os.close(2))
        self.addCleanup(lambda: p.poll() is None and p.kill())
        p.stdin.write(ndjson(1, 50))
        p.stdin.close()
        self.assertEqual(p.wait(30), 0)
        self.assert_once_in_order(50)
        self.assertEqual(self.payloads(DEV, "rejected"), [])


class NackTest(AgentTestCase):
    def test_gateway_nack_drops_record(self):
        # The agent runs without a schema, so the gateway is the one to refuse record 3.
        data = ndjson(1, 2) + b'{"timestamp":"yesterday","sample":3}\n' + ndjson(4, 5)
        rc, p = self.run_agent(input_bytes=data, schema=False)
        self.assertEqual(rc, 0, p.output())
        got = self.wait_samples(4)
        self.assertEqual(got, [1, 2, 4, 5])
        rejected = self.sub.wait_for_message(self.gw.topic(DEV, "rejected")).json()
        self.assertEqual(rejected["seq"], 3)
        self.assertEqual(rejected["data"], {"timestamp": "yesterday", "sample": 3})
        self.assertRegex(p.output(), r"record seq 3 refused by the gateway \(schema\): "
                                     r"\{\"timestamp\":\[.*\]\}; dropped")
        self.assertRegex(p.output(), r"4 accepted|5 accepted")
        self.assertRegex(p.output(), r"4 acked \(0 duplicates\), 1 nacked")


class CmdTest(AgentTestCase):
    def test_cmd_to_stdout_and_udp_then_acked(self):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(udp.close)
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(10)
        port = udp.getsockname()[1]
        p = self.start_agent("--simulate", 1, "--cmd-udp", port, "--cmd-stdout")
        p.wait_for_line(CONNECTED % DEV)
        cmd = {"day-ahead-price": 77.0, "valid_from": "2026-11-24T11:00:00Z"}
        self.sub.publish(self.gw.topic(DEV, "cmd"), json.dumps(cmd))
        line = p.wait_for_line(r"^\{.*valid_from", stream="stdout").string
        self.assertEqual(json.loads(line), cmd)
        payload, _ = udp.recvfrom(65536)
        self.assertEqual(json.loads(payload), cmd)
        p.wait_for_line(r"command \d+ handed over and acked")
        self.assertEqual(p.lines("stdout"), [line])  # nothing else on stdout
        self.assertEqual(p.stop(), 0, p.output())
        # The gateway got the ack: it does not hand the command to the next agent again.
        p2 = self.start_agent("--simulate", 1, "--stats-interval", 0.3)
        p2.wait_for_line(CONNECTED % DEV)
        p2.wait_for_line(r"notice: status: connected to 127\.0\.0\.1:%d for \d+ s; records: "
                         r"\d+ accepted, \d+ acked, 0 nacked, 0 invalid, 0 dropped, "
                         r"0 udp dropped; \d+ waiting$" % self.gw.port)
        self.sub.publish(self.gw.topic(DEV, "cmd"), b'{"second":true}')
        p2.wait_for_line(r"^\{\"second\":true\}$", stream="stdout")
        self.assertEqual(p2.lines("stdout"), ['{"second":true}'])


class TlsAgentTestCase(AgentTestCase):
    """A rig whose gateway also has a tls_listener (self.tls_port) that requires client
    certificates, made by scripts/make-certs.sh in self.certs (CN = device id)."""
    auto_rig = False

    def setUp(self):
        super().setUp()
        self.certs = os.path.join(self.agent_dir, "tls")
        subprocess.run([edsrig.source_path("scripts", "make-certs.sh"), self.certs, DEV],
                       check=True, capture_output=True, timeout=120)
        self.tls_port = free_port()
        self.start_rig({"tls_listener": "%d 127.0.0.1" % self.tls_port,
                        "certfile": os.path.join(self.certs, "gateway.crt"),
                        "keyfile": os.path.join(self.certs, "gateway.key"),
                        "cafile": os.path.join(self.certs, "ca.crt"),
                        "require_certificate": True})
        self.gw.wait_for_line(r"port %d" % self.tls_port)

    def tls_args(self, cafile=None):
        return ["--tls", "--cafile", cafile or os.path.join(self.certs, "ca.crt"),
                "--cert", os.path.join(self.certs, "devices", DEV + ".crt"),
                "--key", os.path.join(self.certs, "devices", DEV + ".key")]


class TlsTest(TlsAgentTestCase):
    """The agent over TLS to the gateway's tls_listener, with mutual TLS (CN = device id)."""

    def test_records_over_mutual_tls(self):
        rc, p = self.run_agent(*self.tls_args(), input_bytes=ndjson(1, 200), port=self.tls_port)
        self.assertEqual(rc, 0, p.output())
        self.assert_once_in_order(200)
        self.assertRegex(p.output(), r"connected to gateway 127\.0\.0\.1:%d \(TLSv1\.[23]\)"
                         % self.tls_port)

    def test_wrong_ca_refused_and_retried(self):
        other = os.path.join(self.agent_dir, "other-ca")
        subprocess.run([edsrig.source_path("scripts", "make-certs.sh"), other], check=True,
                       capture_output=True, timeout=120)
        p = self.start_agent(*self.tls_args(os.path.join(other, "ca.crt")), "--simulate", 5,
                             port=self.tls_port)
        p.wait_for_line(r"TLS with gateway 127\.0\.0\.1:%d \(127\.0\.0\.1\): certificate "
                        r"verify failed.*reconnecting in" % self.tls_port)
        p.wait_for_line(r"TLS with gateway .*reconnecting in", start=len(p.lines()))
        self.assertEqual(self.payloads(DEV), [])


class AuthTest(AgentTestCase):
    def test_wrong_password_is_reported(self):
        p = self.start_agent("--simulate", 1, password="wrong")
        p.wait_for_line(r"error: gateway refused this agent: auth_failed: .* Check device "
                        r"\(myrio-01\) and password_file")
        self.assertTrue(p.running())
        self.assertEqual(self.payloads(DEV), [])

    def test_password_never_on_command_line(self):
        rc = subprocess.run([bin_path("eds-agent"), "--gateway", "127.0.0.1:1", "--device", DEV,
                             "--password", "s3cret"], capture_output=True, timeout=10)
        self.assertEqual(rc.returncode, 2)
        self.assertIn(b"use --password-file FILE", rc.stderr)


class DrainTest(AgentTestCase):
    def test_undelivered_stay_in_spool_until_next_start(self):
        nobody = free_port()  # no gateway listens there
        rc, p = self.run_agent("--spool", self.spool_dir(), "--drain-timeout", 1,
                               input_bytes=ndjson(1, 20), port=nobody)
        self.assertEqual(rc, 1, p.output())
        self.assertRegex(p.output(), r"20 records not delivered within drain_timeout .* they "
                                     r"stay in the spool")
        self.assertEqual(self.payloads(DEV), [])
        rc, p = self.run_agent("--spool", self.spool_dir(), input_bytes=b"")
        self.assertEqual(rc, 0, p.output())
        self.assert_once_in_order(20)

    def test_start_failures_at_run_time_exit_1(self):
        # Regression: a spool in use (or an input port taken) made the agent exit 2, the
        # status for usage errors, on which the init script stops restarting it for good.
        first = self.start_agent("--spool", self.spool_dir(), "--simulate", 1)
        first.wait_for_line(CONNECTED % DEV)
        rc, p = self.run_agent("--spool", self.spool_dir())
        self.assertEqual(rc, 1, p.output())
        self.assertIn("is in use by another eds-agent", p.output())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
            taken.bind(("127.0.0.1", 0))
            rc, p = self.run_agent("--udp", taken.getsockname()[1])
            self.assertEqual(rc, 1, p.output())
        # a configuration error stays 2
        rc, p = self.run_agent("--window", 0)
        self.assertEqual(rc, 2, p.output())

    def test_help_is_complete(self):
        out = subprocess.run([bin_path("eds-agent"), "--help"], capture_output=True,
                             timeout=10).stdout.decode()
        for flag in ("--gateway", "--device", "--password-file", "--schema", "--spool",
                     "--spool-max", "--full-policy", "--tcp", "--udp", "--simulate", "--count",
                     "--cmd-udp", "--drain-timeout", "-c, --config", "-v, --verbose",
                     "Examples:"):
            self.assertIn(flag, out)


if __name__ == "__main__":
    unittest.main()
