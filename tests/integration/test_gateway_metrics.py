#!/usr/bin/python3
"""eds-gateway's /metrics (metrics_listener): read as Prometheus would, checked with
Debian's `promtool check metrics`, and its counters compared with what the test sent:
records received, acked, rejected and duplicates per device and in all, last seen,
online, commands. Off without the option; on 127.0.0.1 without an address; only GET
/metrics is served. (Label escaping is in tests/unit/gateway/test_metrics.c: the gateway
refuses device ids that would need it, also on command topics.)"""

import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edsrig  # noqa: E402
from edsrig import free_port, wait_until  # noqa: E402
from gwrig import GatewayTestCase, data_msg, record, recv_acks  # noqa: E402



def _promtool():
    """scripts/install-promtool.sh's cache (same rule), else one on PATH."""
    cache = os.environ.get("XDG_CACHE_HOME") or (
        os.path.join(os.environ["HOME"], ".cache") if os.environ.get("HOME") else "/var/cache")
    tool = os.path.join(cache, "eds", "promtool", "usr", "bin", "promtool")
    return tool if os.access(tool, os.X_OK) else shutil.which("promtool")


PROMTOOL = _promtool()
SERIES = re.compile(r'^([a-z_]+)(?:\{device="((?:[^"\\]|\\.)*)"\})? (\S+)$')


def parse(text):
    """{(name, device or None): value} from the exposition text."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = SERIES.match(line)
        if not m:
            raise AssertionError("not a sample line: %r" % line)
        out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


class MetricsTest(GatewayTestCase):
    auto_rig = False

    def setUp(self):
        super().setUp()
        self.mport = free_port()
        self.start_rig({"metrics_listener": str(self.mport)})
        self.sub.wait_for_message("energy/_gateway/status", match=lambda m: m.json()["online"])

    def get(self, path="/metrics", method="GET"):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.mport, path), method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers.get("Content-Type"), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type"), e.read().decode()

    def scrape(self):
        status, ctype, text = self.get()
        self.assertEqual(status, 200, text)
        self.assertEqual(ctype, "text/plain; version=0.0.4; charset=utf-8")
        return text

    def promtool(self, text):
        if not PROMTOOL:
            self.skipTest("promtool not found (scripts/install-promtool.sh)")
        out = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                             text=True, timeout=30)
        self.assertEqual(out.returncode, 0, "promtool:\n%s%s" % (out.stdout, out.stderr))
        self.assertEqual(out.stdout + out.stderr, "", "promtool's lint")

    def test_counters_match_what_was_sent(self):
        t0 = int(time.time())
        c1, _ = self.session("myrio-01", stream="s1")
        for seq in range(1, 11):
            c1.send_json(data_msg(seq, record(seq)))
        bad = record(11)
        bad["power_factor"] = 1.7
        c1.send_json(data_msg(11, bad))
        c1.send_json(data_msg(5, record(5)))  # already handled: a duplicate
        replies = recv_acks(c1, 12)
        self.assertEqual([r["type"] for r in replies], ["ack"] * 10 + ["nack", "ack"])
        self.assertTrue(replies[-1].get("duplicate"))
        c2, _ = self.session("myrio-02", stream="s2")
        for seq in range(1, 4):
            c2.send_json(data_msg(seq, record(seq)))
        recv_acks(c2, 3)
        c2.close()
        reader = edsrig.MqttClient(self.broker, edsrig.READER_USER, edsrig.READER_PASSWORD)
        self.addCleanup(reader.close)
        reader.publish("energy/myrio-01/cmd", b'{"relay":1}', qos=1)
        cmd = c1.recv_json()
        self.assertEqual(cmd["type"], "cmd")
        c1.send_json({"type": "ack", "id": cmd["id"]})  # delivered: the agent took it

        def settled():
            m = parse(self.scrape())
            if m.get(("eds_device_online", "myrio-02")) == 0 and \
                    m.get(("eds_devices_known", None)) == 2 and \
                    m.get(("eds_commands_delivered_total", None)) == 1:
                return m
            return None
        m = wait_until(settled, 10, "myrio-02 offline, 2 devices known and a command "
                       "delivered in /metrics")
        text = self.scrape()
        self.promtool(text)

        self.assertEqual(m[("eds_records_received_total", None)], 15)
        self.assertEqual(m[("eds_records_acked_total", None)], 13)
        self.assertEqual(m[("eds_records_rejected_total", None)], 1)
        self.assertEqual(m[("eds_records_duplicate_total", None)], 1)
        self.assertEqual(m[("eds_commands_received_total", None)], 1)
        self.assertEqual(m[("eds_connections_total", None)], 2)
        self.assertEqual(m[("eds_devices_online", None)], 1)
        self.assertEqual(m[("eds_connections_open", None)], 1)
        self.assertEqual(m[("eds_broker_connected", None)], 1)
        expect = {"myrio-01": (12, 10, 1, 1, 1), "myrio-02": (3, 3, 0, 0, 0)}
        for dev, (rin, acked, rej, dup, online) in expect.items():
            self.assertEqual(m[("eds_device_records_received_total", dev)], rin, dev)
            self.assertEqual(m[("eds_device_records_acked_total", dev)], acked, dev)
            self.assertEqual(m[("eds_device_records_rejected_total", dev)], rej, dev)
            self.assertEqual(m[("eds_device_records_duplicate_total", dev)], dup, dev)
            self.assertEqual(m[("eds_device_online", dev)], online, dev)
            seen = m[("eds_device_last_seen_timestamp_seconds", dev)]
            self.assertTrue(t0 <= seen <= time.time() + 1, (dev, seen, t0))

    def test_every_metric_is_documented(self):
        """docs/operations.md's table lists exactly the families served, with their types."""
        served = dict(re.findall(r"(?m)^# TYPE (\S+) (\S+)$", self.scrape()))
        with open(edsrig.source_path("docs", "operations.md")) as f:
            doc = f.read()
        section = doc.split("## Prometheus metrics", 1)[1].split("\n## ", 1)[0]
        documented = dict(re.findall(r"(?m)^\| `([a-z_]+)(?:\{device\})?` \| (\w+) \|", section))
        self.assertEqual(served, documented)

    def test_only_get_metrics_on_loopback(self):
        self.assertEqual(self.get("/")[0], 404)
        self.assertEqual(self.get("/metrics", method="POST")[0], 405)
        self.assertEqual(self.get("/metrics", method="HEAD")[0], 200)
        # Listening on 127.0.0.1 only (no address given).
        out = subprocess.run(["ss", "-Hltn", "( sport = :%d )" % self.mport],
                             capture_output=True, text=True, timeout=10).stdout.split()
        self.assertIn("127.0.0.1:%d" % self.mport, out)
        # Scrapes one after another keep working (each one a rendering by the loop).
        for _ in range(20):
            self.scrape()
        self.assertRegex(self.gw.output(),
                         r"notice: metrics on http://127\.0\.0\.1:%d/metrics" % self.mport)

    def test_slow_clients_of_one_address_leave_room_for_the_scraper(self):
        """Clients that send half a request hold their connections (10 s of silence,
        for ever if they trickle a byte at a time); from one address they get at most 4
        of the 8, so the scraper at another address is still served at once."""
        slow = []
        self.addCleanup(lambda: [s.close() for s in slow])
        for _ in range(8):
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.connect(("127.0.0.1", self.mport))
            s.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
            slow.append(s)
        self.assertEqual(self.get()[0], 200)


class ManyConnectionsTest(GatewayTestCase):
    """With 1100 agent connections open, the scrape's socket in the gateway has an fd
    number past 1024 (select()'s FD_SETSIZE): it is served all the same."""
    auto_rig = False
    CONNS = 1100

    def setUp(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = self.CONNS + 500
        if hard != resource.RLIM_INFINITY and hard < want:
            self.skipTest("RLIMIT_NOFILE hard limit %d < %d" % (hard, want))
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # the gateway inherits it
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        super().setUp()
        self.mport = free_port()
        self.start_rig({"metrics_listener": str(self.mport), "max_clients": self.CONNS + 100,
                        "max_conn_per_ip": 0,
                        "max_unauthenticated": self.CONNS + 10, "auth_timeout": 60})

    def test_scrape_past_fd_setsize(self):
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for _ in range(self.CONNS):
            socks.append(socket.create_connection(("127.0.0.1", self.gw.port), timeout=10))
        url = "http://127.0.0.1:%d/metrics" % self.mport

        def open_conns():
            with urllib.request.urlopen(url, timeout=10) as r:
                return parse(r.read().decode())[("eds_connections_open", None)] >= self.CONNS
        wait_until(open_conns, 30, "%d connections open in /metrics" % self.CONNS, interval=0.5)


class MetricsOffTest(GatewayTestCase):
    def test_off_by_default(self):
        self.sub.wait_for_message("energy/_gateway/status", match=lambda m: m.json()["online"])
        self.assertNotIn("metrics", self.gw.output())

    def test_bad_address_is_a_config_error(self):
        out = subprocess.run([edsrig.bin_path("eds-gateway"), "-c", self.gw.conf_file,
                              "--metrics-listener", "9100 localhost", "--check"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn("metrics_listener: 'localhost' is not a numeric IPv4 or IPv6 address",
                      out.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
