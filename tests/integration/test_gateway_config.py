#!/usr/bin/python3
"""eds-gateway's configuration as an operator meets it: flags instead of a file, config
errors (file, line, reason, exit 2), --check, --help listing every option, per-device
schemas (schema_for), and records at the size limits."""

import json
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edsrig  # noqa: E402
from gwrig import Gateway, GatewayTestCase, data_msg, hello, line_of, record  # noqa: E402


def run_gateway(args, timeout=10):
    return subprocess.run([edsrig.bin_path("eds-gateway")] + args, capture_output=True,
                          text=True, timeout=timeout)


class CommandLineTest(unittest.TestCase):
    def test_help_lists_every_option_of_the_config_table(self):
        r = run_gateway(["--help"])
        self.assertEqual(r.returncode, 0)
        flags = re.findall(r"^  --([a-z-]+)", r.stdout, re.M)
        keys = re.findall(r"\(config file: ([a-z_]+)", r.stdout)
        self.assertEqual([f.replace("-", "_") for f in flags], keys)
        for key in ("listener", "broker_host", "broker_port", "topic_prefix", "schema",
                    "password_file", "allow_anonymous", "qos", "max_clients", "max_line",
                    "auth_timeout", "idle_timeout", "state_dir", "max_held_cmds",
                    "shutdown_timeout", "schema_for"):
            self.assertIn(key, keys)
        # docs/gateway.md documents every one of them.
        with open(edsrig.source_path("docs", "gateway.md")) as f:
            doc = f.read()
        for key in keys:
            self.assertIn("`%s`" % key, doc, "docs/gateway.md does not document %s" % key)

    def test_config_errors_name_file_line_and_reason_and_exit_2(self):
        d = edsrig.tempfile.mkdtemp(prefix="eds-gwconf-")
        self.addCleanup(edsrig.shutil.rmtree, d, True)
        cases = [("listener 5883\nbroker_port 99999\n", r":2: broker_port: .*99999"),
                 ("# comment\n\nfrobnicate 1\n", r":3: .*frobnicate"),
                 ("qos 3\n", r":1: qos"),
                 ("max_line 10\n", r":1: max_line"),
                 ("topic_prefix %s\n" % ("p" * 300), r"topic_prefix: longer than"),
                 ("topic_prefix a/+/b\n", r"topic_prefix")]
        for i, (text, pattern) in enumerate(cases):
            path = os.path.join(d, "c%d.conf" % i)
            with open(path, "w") as f:
                f.write(text + "allow_anonymous true\n")
            r = run_gateway(["-c", path])
            self.assertEqual(r.returncode, 2, (text, r.stderr))
            self.assertIn(path, r.stderr)
            self.assertRegex(r.stderr, pattern)
        r = run_gateway(["--no-such-option", "1"])
        self.assertEqual(r.returncode, 2)
        r = run_gateway(["-c", os.path.join(d, "missing.conf")])
        self.assertEqual(r.returncode, 2)

    def test_check_loads_the_files_the_config_names(self):
        ok = run_gateway(["--allow-anonymous", "true", "--schema",
                          edsrig.source_path("schemas", "energy.json"), "--check"])
        self.assertEqual(ok.returncode, 0, ok.stderr)
        bad = run_gateway(["--allow-anonymous", "true", "--schema", "/nonexistent.json",
                           "--check"])
        self.assertEqual(bad.returncode, 2)
        self.assertIn("/nonexistent.json", bad.stderr)
        # A start checks the same and exits 2 (which systemd does not restart).
        start = run_gateway(["--allow-anonymous", "true", "--schema", "/nonexistent.json",
                             "--listener", str(edsrig.free_port()), "127.0.0.1"])
        self.assertEqual(start.returncode, 2, start.stderr)
        self.assertIn("/nonexistent.json", start.stderr)


class FlagsTest(unittest.TestCase):
    def test_gateway_started_with_flags_only(self):
        broker = edsrig.Broker()
        self.addCleanup(broker.close)
        gw = Gateway(broker, start=False)
        self.addCleanup(gw.close)
        # `--listener PORT ADDRESS` unquoted, as --help writes it.
        argv = [edsrig.bin_path("eds-gateway"), "--listener", str(gw.port), "127.0.0.1",
                "--broker-host", "127.0.0.1", "--broker-port", str(broker.port),
                "--broker-username", edsrig.GATEWAY_USER,
                "--broker-password-file", gw.broker_pw_file,
                "--schema", edsrig.source_path("schemas", "energy.json"),
                "--password-file", gw.passwd_file, "--state-dir", gw.state_dir,
                "--auth-timeout", "1", "--idle-timeout", "2", "--stats-interval", "1",
                "--max-clients", "4", "--max-line", "4096", "--window", "8", "-v"]
        p = edsrig.Process(argv, name="eds-gateway")
        self.addCleanup(p.stop)
        p.wait_for_line(r"listening on 127\.0\.0\.1 port %d" % gw.port)
        p.wait_for_line(r"connected to the broker")
        sub = edsrig.Subscriber(broker, "energy/#")
        self.addCleanup(sub.close)
        c = edsrig.LineClient(gw.port)
        self.addCleanup(c.close)
        c.send_json(hello("myrio-01", "s3cret", "s1"))
        self.assertEqual(c.recv_line(), b'{"type":"welcome","proto":1,"last_seq":0}')
        c.send_raw(b"".join(line_of(data_msg(s, record(s))) + b"\n" for s in range(1, 21)))
        for s in range(1, 21):  # window 8: the gateway reads in steps, all acked in order
            self.assertEqual(c.recv_json(), {"type": "ack", "seq": s})
        self.assertEqual(len(sub.wait_for_count("energy/myrio-01/data", 20)), 20)
        stats = sub.wait_for_message("energy/_gateway/stats",
                                     match=lambda m: m.json()["acked"] == 20).json()
        self.assertEqual(stats["connections"], 1)
        c.close()
        self.assertEqual(p.stop(), 0)


class SchemaForTest(GatewayTestCase):
    auto_rig = False

    def test_schema_for_a_device_pattern(self):
        d = edsrig.tempfile.mkdtemp(prefix="eds-schema-")
        self.addCleanup(edsrig.shutil.rmtree, d, True)
        strict = os.path.join(d, "strict.json")
        with open(strict, "w") as f:
            json.dump({"temperature": {"type": "float", "required": True}}, f)
        self.start_rig({"schema_for": "myrio-0[23] %s" % strict})
        a, _ = self.session("myrio-01")
        b, _ = self.session("myrio-02")
        a.send_json(data_msg(1, record(1)))
        b.send_json(data_msg(1, record(1)))
        self.assertEqual(a.recv_json(), {"type": "ack", "seq": 1})
        self.assertEqual(b.recv_line(), b'{"type":"nack","seq":1,"errors":'
                         b'{"temperature":["required field"]}}')
        b.send_json(data_msg(2, {"temperature": 21.5}))
        self.assertEqual(b.recv_json(), {"type": "ack", "seq": 2})
        a.send_json(data_msg(2, {"temperature": 21.5}))  # the default schema wants a timestamp
        self.assertEqual(a.recv_json()["type"], "nack")


class TopicPrefixTest(GatewayTestCase):
    auto_rig = False

    def test_topic_prefix_moves_every_topic(self):
        d = edsrig.tempfile.mkdtemp(prefix="eds-acl-")
        self.addCleanup(edsrig.shutil.rmtree, d, True)
        acl = os.path.join(d, "acl")
        with open(edsrig.source_path("broker-config", "acl")) as f:
            text = f.read()
        with open(acl, "w") as f:  # the project's ACL, for the prefix site7/energy
            f.write(text.replace("energy/", "site7/energy/"))
        self.broker = edsrig.Broker(acl_path=acl)
        self.addCleanup(self.broker.close)
        self.sub = edsrig.Subscriber(self.broker, "#")
        self.addCleanup(self.sub.close)
        self.gw = Gateway(self.broker, prefix="site7/energy")
        self.addCleanup(self._close_gateway)
        self.sub.wait_for_message("site7/energy/_gateway/status")
        c, _ = self.session()
        c.send_json(data_msg(1, record(1)))
        c.send_json(data_msg(2, {"power_factor": 7}))
        self.assertEqual(c.recv_json(), {"type": "ack", "seq": 1})
        self.assertEqual(c.recv_json()["type"], "nack")
        self.sub.wait_for_message("site7/energy/myrio-01/data")
        self.sub.wait_for_message("site7/energy/myrio-01/rejected")
        self.sub.wait_for_message("site7/energy/myrio-01/status")
        reader = edsrig.MqttClient(self.broker, edsrig.READER_USER, edsrig.READER_PASSWORD)
        self.addCleanup(reader.close)
        reader.publish("site7/energy/myrio-01/cmd", b'{"go":1}')
        self.assertEqual(c.recv_line(), b'{"type":"cmd","id":1,"data":{"go":1}}')
        self.assertEqual({m.topic.split("/")[0] for m in self.sub.messages()}, {"site7"})


class QosTest(GatewayTestCase):
    auto_rig = False

    def check_qos(self, qos):
        self.start_rig({"qos": qos})
        c, _ = self.session()
        c.send_raw(b"".join(line_of(data_msg(s, record(s))) + b"\n" for s in range(1, 51)))
        for s in range(1, 51):
            self.assertEqual(c.recv_json(), {"type": "ack", "seq": s})
        msgs = self.sub.wait_for_count("energy/myrio-01/data", 50)
        self.assertEqual([m.payload for m in msgs], [line_of(record(s)) for s in range(1, 51)])
        # The subscriber asked for QoS 1: it gets min(publish QoS, 1).
        self.assertEqual({m.qos for m in msgs}, {min(qos, 1)})

    def test_qos_0(self):
        self.check_qos(0)

    def test_qos_2(self):
        self.check_qos(2)


class LimitsTest(GatewayTestCase):
    gw_kwargs = {"schema": None}

    def test_record_just_under_the_default_max_line(self):
        c, _ = self.session()
        base = line_of(data_msg(1, {"blob": ""}))
        blob = "x" * (65536 - 1 - len(base))
        line = line_of(data_msg(1, {"blob": blob})) + b"\n"
        self.assertEqual(len(line), 65536)
        c.send_raw(line)
        self.assertEqual(c.recv_line(), b'{"type":"ack","seq":1}')
        self.assertEqual(self.wait_payloads("myrio-01", 1), [line_of({"blob": blob})])

    def test_invalid_utf8_is_bad_json_and_rejected_as_valid_json(self):
        c, _ = self.session()
        c.send_raw(b'{"type":"data","seq":1,"data":{"s":"\xff\xfe"}}\n')
        self.assertEqual(c.recv_json()["code"], "bad_json")
        rejected = self.wait_payloads("myrio-01", 1, "rejected")[0]
        doc = json.loads(rejected)  # still valid JSON (bytes escaped)
        self.assertEqual(doc["error"], "bad_json")
        self.assertIn("\u00ff", doc["line"])
        c.send_json(data_msg(1, {"s": "ok"}))
        self.assertEqual(c.recv_json(), {"type": "ack", "seq": 1})


if __name__ == "__main__":
    unittest.main()
