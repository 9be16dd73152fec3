#!/usr/bin/python3
"""Security behaviours of the gateway and the agent that no other test covers:

  * SIGHUP reloads the TLS listener's certificates (new clients see the new ones, a live
    connection keeps working, a broken file keeps the old ones);
  * the gateway talks to the broker over TLS and verifies it (broker_cafile);
  * eds-agent with --tls never falls back to plain TCP;
  * a world-readable password file is warned about.
"""

import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edsrig  # noqa: E402
from edsrig import (LineClient, Process, RigTimeout, Subscriber, bin_path,  # noqa: E402
                    free_port, source_path)
from gwrig import (DEVICES, Gateway, GatewayTestCase, agent_session, compact,  # noqa: E402
                   data_msg, hello, record)

CERTS = None  # {"top", "ca1", "ca2"}: two independent CAs made with scripts/make-certs.sh


def setUpModule():
    global CERTS
    top = tempfile.mkdtemp(prefix="eds-secx-")
    make = source_path("scripts", "make-certs.sh")
    for sub in ("ca1", "ca2"):
        subprocess.run([make, "--force", os.path.join(top, sub), "myrio-01"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    CERTS = {"top": top, "ca1": os.path.join(top, "ca1"), "ca2": os.path.join(top, "ca2")}


def tearDownModule():
    shutil.rmtree(CERTS["top"], ignore_errors=True)


def trusting(which):
    """A client context that trusts only the CA `which` ("ca1" or "ca2")."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(CERTS[which], "ca.crt"))
    return ctx


def assert_no_line(testcase, client, regex_bytes, seconds, what):
    """Reads from client for `seconds`; fails if a line containing regex_bytes arrives."""
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline and not client.closed:
        try:
            seen.append(client.recv_line(max(0.05, deadline - time.monotonic())))
        except (RigTimeout, edsrig.ConnectionClosed):
            break
    for line in seen:
        testcase.assertNotIn(regex_bytes, line, "%s: got %r" % (what, seen))
    return seen


class CertificateReloadTest(GatewayTestCase):
    """1. SIGHUP reloads certfile/keyfile/cafile of the TLS listener."""

    auto_rig = False

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="eds-secx-live-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.crt = os.path.join(self.dir, "gateway.crt")
        self.key = os.path.join(self.dir, "gateway.key")
        self.ca = os.path.join(self.dir, "ca.crt")
        self.install("ca1")
        self.tls_port = free_port()
        self.start_rig(options={"tls_listener": "%d 127.0.0.1" % self.tls_port,
                                "certfile": self.crt, "keyfile": self.key, "cafile": self.ca,
                                "require_certificate": False})

    def install(self, which):
        """Copies CA `which`'s gateway certificate, key and CA over the live paths."""
        src = CERTS[which]
        for name, dst in (("gateway.crt", self.crt), ("gateway.key", self.key),
                          ("ca.crt", self.ca)):
            tmp = dst + ".new"
            shutil.copyfile(os.path.join(src, name), tmp)
            os.chmod(tmp, 0o600)
            os.replace(tmp, dst)

    def tls_session(self, which, stream):
        """TLS connection trusting CA `which`, hello with myrio-01's password; returns the
        client after asserting a welcome."""
        c = LineClient(self.tls_port, ssl_context=trusting(which), server_hostname="localhost")
        self.addCleanup(c.close)
        c.send_json(hello("myrio-01", DEVICES["myrio-01"], stream))
        welcome = c.recv_json()
        self.assertEqual(welcome.get("type"), "welcome", welcome)
        return c, welcome

    def assert_untrusted(self, which):
        with self.assertRaises(ssl.SSLCertVerificationError,
                               msg="a client trusting only %s completed the handshake" % which):
            c = LineClient(self.tls_port, ssl_context=trusting(which),
                           server_hostname="localhost")
            c.close()

    def test_sighup_swaps_certificates_and_keeps_live_connections(self):
        old, welcome = self.tls_session("ca1", "s1")
        seq = welcome["last_seq"] + 1
        old.send_json(data_msg(seq, record(seq)))
        self.assertEqual(old.recv_json(), {"type": "ack", "seq": seq})
        self.assert_untrusted("ca2")

        self.install("ca2")
        self.gw.sighup(expect=r"SIGHUP: certificates reloaded")

        # A new client trusting only the new CA gets in (as another device, so that the
        # live myrio-01 session is not replaced); one trusting only the old CA is refused.
        new = LineClient(self.tls_port, ssl_context=trusting("ca2"),
                         server_hostname="localhost")
        self.addCleanup(new.close)
        new.send_json(hello("myrio-02", DEVICES["myrio-02"], "s2"))
        self.assertEqual(new.recv_json().get("type"), "welcome")
        self.assert_untrusted("ca1")

        # The connection made before the reload still works.
        seq += 1
        old.send_json(data_msg(seq, record(seq)))
        self.assertEqual(old.recv_json(), {"type": "ack", "seq": seq})
        new.send_json(data_msg(1, record(100)))
        self.assertEqual(new.recv_json(), {"type": "ack", "seq": 1})
        got = self.wait_payloads("myrio-01", 2)
        self.assertEqual(got[-1], compact(record(seq)).encode())
        self.wait_payloads("myrio-02", 1)

    def test_broken_certificate_keeps_the_old_ones(self):
        # A certificate whose key is not the key file's (CA2's certificate, CA1's key) ...
        shutil.copyfile(os.path.join(CERTS["ca2"], "gateway.crt"), self.crt)
        self.gw.sighup(expect=r"SIGHUP: keeping the old certificates")
        # ... and a certificate file that is not a certificate.
        with open(self.crt, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        self.gw.sighup(expect=r"SIGHUP: keeping the old certificates")
        self.assertNotRegex(self.gw.output(), r"certificates reloaded")
        c, _ = self.tls_session("ca1", "s1")
        c.send_json(data_msg(1, record(1)))
        self.assertEqual(c.recv_json(), {"type": "ack", "seq": 1})
        self.assert_untrusted("ca2")


class BrokerTlsTest(unittest.TestCase):
    """2. Gateway -> broker over TLS, verified with broker_cafile."""

    def setUp(self):
        self.broker = edsrig.Broker(tls=True)
        self.addCleanup(self.broker.close)
        self.sub = Subscriber(self.broker, "energy/#")
        self.addCleanup(self.sub.close)

    def gateway(self, cafile, wait_broker):
        gw = Gateway(self.broker, options={"broker_port": self.broker.tls_port,
                                           "broker_cafile": cafile},
                     wait_broker=wait_broker)

        def close():
            rc = gw.stop(expect=None) if gw.running() else 0
            gw.close()
            if rc != 0:
                self.fail("eds-gateway exited with %s; log:\n%s" % (rc, gw.output()))
        self.addCleanup(close)
        return gw

    def test_records_reach_the_broker_over_tls(self):
        gw = self.gateway(self.broker.certs["ca"], wait_broker=True)
        self.assertRegex(gw.output(), r"connected to the broker at 127\.0\.0\.1:%d"
                         % self.broker.tls_port)
        c, welcome = agent_session(gw, "myrio-01", stream="s1")
        self.addCleanup(c.close)
        base = welcome["last_seq"]
        for i in range(1, 4):
            c.send_json(data_msg(base + i, record(i)))
        for i in range(1, 4):
            self.assertEqual(c.recv_json(), {"type": "ack", "seq": base + i})
        got = self.sub.wait_for_count(gw.topic("myrio-01", "data"), 3)
        self.assertEqual([m.payload for m in got[:3]],
                         [compact(record(i)).encode() for i in range(1, 4)])

    def test_wrong_broker_ca_never_connects(self):
        gw = self.gateway(os.path.join(CERTS["ca1"], "ca.crt"), wait_broker=False)
        # It does try the broker's TLS port (so the test is not passing on a typo) ...
        gw.wait_for_line(r"mqtt: connecting to ssl://127\.0\.0\.1:%d failed"
                         % self.broker.tls_port)
        # ... and never gets through.
        with self.assertRaises(RigTimeout, msg="gateway connected to a broker it cannot verify"):
            gw.wait_for_line(r"connected to the broker", timeout=3)
        c = gw.connect()
        self.addCleanup(c.close)
        c.send_json(hello("myrio-01", DEVICES["myrio-01"], "s1"))
        c.send_json(data_msg(1, record(1)))
        assert_no_line(self, c, b'"ack"', 2.0, "ack without a verified broker")
        self.assertEqual(self.sub.messages(gw.topic("myrio-01", "data")), [])
        self.assertNotRegex(gw.output(), r"connected to the broker")
        # The log says why, in OpenSSL's words (Paho alone says only "connect failure").
        self.assertRegex(gw.output(), r"TLS to the broker: .*certificate verify failed")


class AgentNoPlainFallbackTest(GatewayTestCase):
    """3. eds-agent --tls pointed at a plain listener never sends its hello in clear."""

    def test_tls_agent_refuses_plain_listener(self):
        pwfile = os.path.join(self.gw.workdir, "agent.pw")
        with open(pwfile, "w") as f:
            f.write(DEVICES["myrio-01"] + "\n")
        os.chmod(pwfile, 0o600)
        mark = self.gw.mark()
        agent = Process([bin_path("eds-agent"), "--gateway", "127.0.0.1:%d" % self.gw.port,
                         "--device", "myrio-01", "--password-file", pwfile,
                         "--tls", "--cafile", os.path.join(CERTS["ca1"], "ca.crt"),
                         "--server-name", "localhost", "--drain-timeout", "3",
                         "--reconnect-min", "0.2", "--reconnect-max", "0.5",
                         "--connect-timeout", "2"],
                        name="eds-agent", stdin=subprocess.PIPE)
        self.addCleanup(lambda: agent.running() and agent.kill())
        for i in range(3):
            agent.proc.stdin.write((compact(record(i)) + "\n").encode())
        agent.proc.stdin.close()
        rc = agent.wait(timeout=15)
        out = "\n".join(agent.lines())
        self.assertNotEqual(rc, 0, "agent exited 0 without a TLS gateway:\n" + out)
        self.assertRegex(out, r"TLS with gateway 127\.0\.0\.1:%d .*handshake failed"
                         % self.gw.port, "agent logged no TLS handshake error:\n" + out)
        gw_log = "\n".join(self.gw.proc.lines()[mark:])
        # The agent did reach this listener (its ClientHello is not a hello line) ...
        self.assertRegex(gw_log, r"closing \(not_authenticated\)")
        # ... and never got a session.
        self.assertNotRegex(gw_log, r"device myrio-01 online")
        self.assertNotRegex(out, r"(?i)welcome|connected to")
        self.assertEqual(self.payloads("myrio-01"), [])


class PasswordFileModeTest(unittest.TestCase):
    """4. The gateway warns about a world-readable password file."""

    def run_gateway(self, mode):
        broker = edsrig.Broker()
        self.addCleanup(broker.close)
        gw = Gateway(broker, start=False)
        self.addCleanup(gw.close)
        os.chmod(gw.passwd_file, mode)
        gw.start()
        out = gw.output()
        gw.stop()
        return out

    def test_world_readable_password_file_is_warned_about(self):
        for mode in (0o644, 0o604):
            with self.subTest(mode=oct(mode)):
                self.assertRegex(self.run_gateway(mode),
                                 r"warning: \S*passwd is readable by every user")

    def test_private_password_file_is_not_warned_about(self):
        # 0640 is what the warning itself suggests for a group: no warning either.
        for mode in (0o600, 0o640):
            with self.subTest(mode=oct(mode)):
                out = self.run_gateway(mode)
                self.assertIn("listening on", out)
                self.assertNotIn("readable by every user", out)


if __name__ == "__main__":
    unittest.main()
