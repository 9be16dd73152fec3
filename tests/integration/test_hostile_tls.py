#!/usr/bin/python3
"""Hostile TLS clients against the gateway's mutual-TLS listener (require_certificate, CN =
device id, plus the password file), each while a well-behaved agent (myrio-01, its own
certificate, from 127.0.0.2) sends records over TLS: handshakes that stall half way or
trickle in a byte at a time, TLS 1.0/1.1 only clients, untrusted or wrong-purpose client
certificates, no certificate, a valid certificate of another device, plain text on the TLS
port. None gets a welcome, each is counted, the good agent loses nothing and the gateway's
memory stays bounded."""

import os
import select
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edsrig  # noqa: E402
from hostile import (FLAT_KB, SLOW, Flooder, HostileTestCase, connect,  # noqa: E402
                     error_codes, hello_line, read_until_closed, record_lines, scaled)

CERTS = None  # set up once per run: {"dir", "other"} made with scripts/make-certs.sh


def setUpModule():
    global CERTS
    top = tempfile.mkdtemp(prefix="eds-hostile-tls-")
    make = edsrig.source_path("scripts", "make-certs.sh")
    for sub, devices in (("ok", ["myrio-01", "myrio-02"]), ("other", ["myrio-01"])):
        subprocess.run([make, os.path.join(top, sub)] + devices, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    CERTS = {"top": top, "dir": os.path.join(top, "ok"), "other": os.path.join(top, "other")}


def tearDownModule():
    shutil.rmtree(CERTS["top"], ignore_errors=True)


def cert(which, name):
    d = CERTS[which]
    if name == "gateway":
        return os.path.join(d, "gateway.crt"), os.path.join(d, "gateway.key")
    return (os.path.join(d, "devices", name + ".crt"), os.path.join(d, "devices", name + ".key"))


def client_context(certificate=None, version=None):
    """A client context that trusts the test CA; with certificate=(which, name) it presents
    that certificate; version pins one TLS version."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(CERTS["dir"], "ca.crt"))
    if certificate:
        ctx.load_cert_chain(*cert(*certificate))
    if version is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = version
            ctx.maximum_version = version
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer it at all
    return ctx


def client_hello_bytes():
    """The bytes of a real ClientHello (a TLS 1.2/1.3 client's first flight)."""
    ctx = client_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class TlsCase(HostileTestCase):
    def setUp(self):
        self.tls_port = edsrig.free_port()
        gw_cert, gw_key = cert("dir", "gateway")
        self.gw_options = {"stats_interval": 1, "auth_timeout": 2,
                           "tls_listener": "%d 127.0.0.1" % self.tls_port,
                           "certfile": gw_cert, "keyfile": gw_key,
                           "cafile": os.path.join(CERTS["dir"], "ca.crt"),
                           "require_certificate": True}
        self.agent_kwargs = {"port": self.tls_port, "server_hostname": "localhost",
                             "ssl_context": client_context(("dir", "myrio-01"))}
        super().setUp()

    def attempt(self, ctx, line=hello_line("myrio-01", "s3cret", "evil"), source="127.0.0.1"):
        """A TLS client: handshake, send line, read until closed. Returns ("handshake",
        error text) if the handshake failed, else ("closed", bytes received)."""
        sock = connect(self.tls_port, source=source)
        try:
            tls = ctx.wrap_socket(sock, server_hostname="localhost")
        except (ssl.SSLError, OSError) as e:
            sock.close()
            return "handshake", str(e)
        try:
            try:
                tls.sendall(line)
            except (ssl.SSLError, OSError):
                pass  # refused already; what was received before tells
            data, _, _ = read_until_closed(tls, 5 * SLOW)
            return "closed", data
        finally:
            tls.close()

    def assert_refused(self, outcome, what):
        """Refused in the handshake, or (TLS 1.3 checks the client certificate after the
        client's last flight) closed without a welcome."""
        kind, detail = outcome
        if kind == "closed":
            self.assertNotIn(b"welcome", detail, what)
        return kind


class StalledHandshakeTest(TlsCase):
    def test_handshakes_that_stall_or_trickle_are_closed_at_auth_timeout(self):
        hello = client_hello_bytes()
        half = scaled(10, 4)
        socks = []
        for _ in range(half):  # half a ClientHello, then nothing
            s = connect(self.tls_port)
            s.sendall(hello[:len(hello) // 2])
            socks.append(s)
        for _ in range(3):  # not a byte
            socks.append(connect(self.tls_port))
        trickle = connect(self.tls_port)  # one byte every 0.2 s
        socks.append(trickle)
        t0 = time.monotonic()
        closed = {}
        sent = 0
        while len(closed) < len(socks) and time.monotonic() - t0 < 2 + 6 * SLOW:
            if trickle not in closed and sent < len(hello):
                try:
                    trickle.send(hello[sent:sent + 1])
                    sent += 1
                except OSError:
                    pass
            readable, _, _ = select.select([s for s in socks if s not in closed], [], [], 0.2)
            for s in readable:
                try:
                    chunk = s.recv(4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    closed[s] = time.monotonic() - t0
        for s in socks:
            s.close()
        self.assertEqual(len(closed), len(socks), "stalled TLS handshakes still open")
        self.assertLess(sent, len(hello), "the trickled ClientHello was complete")
        times = sorted(closed.values())
        self.assertGreaterEqual(times[0], 1.8, "closed before auth_timeout (2 s)")
        self.assertLess(times[-1], 2 + 2.5 * SLOW, "closed long after auth_timeout (2 s)")
        n = len(socks)
        st = self.stats(lambda d: d["timeouts"] + d["tls_failures"] >= n and
                        d["connections"] == 1, "%d stalled handshakes counted" % n)
        self.figure("%d stalled TLS handshakes (%d half ClientHellos, 3 silent, 1 trickling "
                    "%d of %d bytes) closed after %.2f..%.2f s; stats timeouts %d "
                    "tls_failures %d" % (n, half, sent, len(hello), times[0], times[-1],
                                         st["timeouts"], st["tls_failures"]))
        self.settle()


class OldTlsTest(TlsCase):
    def test_tls_1_0_and_1_1_clients_are_refused(self):
        versions = [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1]
        tries = 0
        for _ in range(scaled(5, 2)):
            for v in versions:
                ctx = client_context(("dir", "myrio-01"), version=v)
                ctx.check_hostname = False
                kind, detail = self.attempt(ctx)
                self.assertEqual(kind, "handshake", "a %s client got through: %r" % (v, detail))
                tries += 1
        st = self.stats(lambda d: d["tls_failures"] >= tries, "tls_failures %d" % tries)
        self.figure("%d TLS 1.0/1.1 handshakes refused (last error: %s); tls_failures %d" % (
            tries, detail, st["tls_failures"]))
        self.settle()


class ClientCertificateTest(TlsCase):
    def test_untrusted_missing_and_wrong_purpose_certificates_are_refused(self):
        cases = [("untrusted CA, same CN", ("other", "myrio-01")),
                 ("no certificate", None),
                 ("the gateway's own certificate", ("dir", "gateway"))]
        seen = []
        for _ in range(scaled(5, 2)):
            for what, certificate in cases:
                kind = self.assert_refused(self.attempt(client_context(certificate)), what)
                seen.append((what, kind))
        st = self.stats(lambda d: d["tls_failures"] >= len(seen) and d["connections"] == 1,
                        "tls_failures %d" % len(seen))
        self.assertEqual(st["auth_failures"], 0, "a refused certificate got as far as hello")
        self.figure("%d handshakes with bad client certificates refused (%s); tls_failures "
                    "%d" % (len(seen), sorted(set(seen)), st["tls_failures"]))
        self.settle()

    def test_certificate_of_another_device(self):
        # myrio-02's valid certificate, hello as myrio-01 (the good agent) with its password.
        for i in range(scaled(10, 3)):
            # Each from its own address: failed logins from one address are answered ever
            # more slowly (test_hostile_conn.py).
            kind, data = self.attempt(client_context(("dir", "myrio-02")),
                                      source="127.0.2.%d" % (i + 1))
            self.assertEqual(kind, "closed")
            self.assertEqual(error_codes(data), ["auth_failed"], data)
        st = self.stats(lambda d: d["auth_failures"] >= 3, "auth_failures")
        self.assertEqual(st["replaced"], 0, "the good agent was replaced")
        self.figure("hello as myrio-01 with myrio-02's certificate: auth_failed each time; "
                    "auth_failures %d, replaced %d" % (st["auth_failures"], st["replaced"]))
        self.settle()


class NeverReadsOverTlsTest(TlsCase):
    def test_device_over_tls_that_never_reads_its_acks(self):
        # myrio-02 with its own certificate: authenticated, then pipelines records and
        # never reads (OpenSSL's write buffer on the gateway side must not grow either).
        f = Flooder(self.tls_port, "myrio-02", "pw-02", record_lines,
                    ssl_context=client_context(("dir", "myrio-02")))
        self.addCleanup(f.close)
        max_lines = scaled(200000, 50000)
        took = self.flood_until_stalled([f], max_lines)
        t_stall = time.monotonic()
        samples = self.assert_stays_stalled(f, max_lines, t_stall)
        self.figure("TLS device not reading: stalled after %.1f s with %d records (%d bytes) "
                    "sent; VmRSS %d..%d kB while stalled, baseline %d kB" % (
                        took, f.complete, f.sent, min(samples), max(samples),
                        self.mem.baseline))
        replies = f.read_all_replies(30 * SLOW)
        self.assertEqual(replies, [b'{"type":"ack","seq":%d}' % s
                                   for s in range(1, f.complete + 1)])
        self.settle()


class PlainTextOnTlsPortTest(TlsCase):
    def test_plain_text_to_the_tls_port(self):
        # Not TLS at all: refused as soon as the first bytes are read.
        payloads = [hello_line("myrio-01", "s3cret", "plain"), b"GET / HTTP/1.1\r\n\r\n",
                    bytes(range(256)) * 4, b"\x16\x03\x01\x00\x05" + b"\x00" * 100]
        took = []
        for _ in range(scaled(5, 2)):
            for p in payloads:
                s = connect(self.tls_port)
                s.sendall(p)
                data, t, _ = read_until_closed(s, 5 * SLOW)
                s.close()
                self.assertNotIn(b"welcome", data)
                took.append(t)
        self.assertLess(max(took), 1.5, "plain text on the TLS port was not refused at once")
        # The header of a 16 KiB handshake record and then nothing: waits like any stalled
        # handshake, until auth_timeout.
        s = connect(self.tls_port)
        s.sendall(b"\x16\x03\x01\x40\x00" + b"\x01" * 100)
        data, stalled, _ = read_until_closed(s, 2 + 5 * SLOW)
        s.close()
        self.assertGreaterEqual(stalled, 1.8)
        st = self.stats(lambda d: d["tls_failures"] >= len(took) and d["timeouts"] >= 1 and
                        d["connections"] == 1, "refusals counted")
        self.figure("%d plain-text/garbage connections on the TLS port refused after "
                    "%.3f..%.3f s, a cut handshake record closed after %.2f s; tls_failures "
                    "%d, timeouts %d" % (len(took), min(took), max(took), stalled,
                                         st["tls_failures"], st["timeouts"]))
        self.settle()


if __name__ == "__main__":
    unittest.main()
