#!/usr/bin/python3
"""The myRIO build's own artifacts under qemu-arm against the host's eds-gateway and a real
mosquitto (scripts/test-arm.sh runs this after the cross build):

- the static eds-agent runs in a qemu root that holds no library at all (only etc/hosts and
  etc/resolv.conf), resolves the gateway's name from that root's /etc/hosts (a static glibc
  cannot use NSS: agent_resolve_static.c reads the file itself), delivers every record once
  over plain TCP and over TLS with a client certificate, verifies the gateway's certificate
  by IP address (SAN IP) or by --server-name, refuses an mDNS name with a clear message,
  and prints --version; its memory while sending over TLS is measured (guest RSS, below);
- dlopen_agent (tests/myrio/dlopen_agent.c) loads libedsagent.so with dlopen() as
  LabVIEW does and sends records through the API, over TCP and over TLS.

Environment: EDS_ARM_BUILD_DIR (the cross build, default build-arm), EDS_BIN_DIR (the host
build's bin with eds-gateway), EDS_SOURCE_DIR. EDS_MYRIO_RSS_SECONDS: how long the memory
is sampled (default 8)."""

import os
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import edsrig  # noqa: E402
from edsrig import Process, wait_until  # noqa: E402
from gwrig import SCHEMA  # noqa: E402
from test_agent_delivery import DEV, TlsAgentTestCase, ndjson  # noqa: E402

ARM = os.path.abspath(os.environ.get("EDS_ARM_BUILD_DIR",
                                     edsrig.source_path("build-arm")))
AGENT = os.path.join(ARM, "bin", "eds-agent")
DLOPEN = os.path.join(ARM, "bin", "dlopen_agent")
LIB = os.path.join(ARM, "lib", "libedsagent.so.0")
GW_NAME = "eds-gw.test"
RSS_LIMIT = 8 * 1024 * 1024


def guest_rss(pid, base, size=1 << 32):
    """Resident bytes of the emulated process: qemu-user maps the whole 32-bit guest address
    space at host address `base` (it logs where with -d page), so the resident pages in
    [base, base + 4 GiB) are the guest's own (program, heap, stacks, mmaps), and qemu's own
    memory (translator, code cache) lies outside."""
    total = 0
    cur = None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
            if m:
                start = int(m.group(1), 16)
                cur = base <= start < base + size
            elif cur and line.startswith("Rss:"):
                total += int(line.split()[1]) * 1024
    return total


def foreign_openssl_conf(folder):
    """An openssl.cnf as a device's own OpenSSL 1.x might have: it names an engine and a
    provider module. Returns its path."""
    conf = os.path.join(folder, "openssl.cnf")
    with open(conf, "w") as f:
        f.write("openssl_conf = init\n[init]\nengines = engines\nproviders = providers\n"
                "[engines]\nforeign = foreign\n[foreign]\n"
                "dynamic_path = /usr/lib/engines-1.1/libforeign.so\ninit = 1\n"
                "[providers]\ndefault = dflt\nlegacy = legacy\n[dflt]\nactivate = 1\n"
                "[legacy]\nmodule = /usr/lib/ossl-modules/from-the-device.so\n"
                "activate = 1\n")
    return conf


DNS_ADDR = "127.0.0.2"


class TinyDns(threading.Thread):
    """A DNS server on DNS_ADDR:53 for the qemu root's resolv.conf: A queries for the names
    given get 127.0.0.1, AAAA queries for them an empty answer, anything else NXDOMAIN.
    self.queries lists (name, type) as asked. With big=N, an A answer is N records (over
    TCP, after a truncated UDP reply, as a large answer comes)."""

    def __init__(self, names, big=0):
        super().__init__(daemon=True)
        self.names = {n.lower() for n in names}
        self.queries = []
        self.big = big
        self.tcp_answers = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tcp = socket.socket()
        try:
            self.sock.bind((DNS_ADDR, 53))
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.tcp.bind((DNS_ADDR, 53))
            self.tcp.listen(4)
        except OSError:
            self.sock.close()
            self.tcp.close()
            raise
        self.stopping = False

    def stop(self):
        self.stopping = True
        self.join(5)
        self.sock.close()
        self.tcp.close()

    def reply(self, data, tcp):
        if len(data) < 17:
            return None
        qid = data[:2]
        pos, labels = 12, []
        while pos < len(data) and data[pos] != 0 and len(labels) < 64:
            labels.append(data[pos + 1:pos + 1 + data[pos]].decode("ascii", "replace"))
            pos += 1 + data[pos]
        question = data[12:pos + 5]
        qtype = struct.unpack(">H", data[pos + 1:pos + 3])[0]
        name = ".".join(labels).lower()
        self.queries.append((name, qtype))
        if name not in self.names:
            return qid + struct.pack(">HHHHH", 0x8183, 1, 0, 0, 0) + question
        if qtype != 1:
            return qid + struct.pack(">HHHHH", 0x8180, 1, 0, 0, 0) + question
        count = self.big or 1
        if count > 1 and not tcp:  # too large for UDP: truncated, ask again over TCP
            return qid + struct.pack(">HHHHH", 0x8380, 1, 0, 0, 0) + question
        record = struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton("127.0.0.1")
        return (qid + struct.pack(">HHHHH", 0x8180, 1, count, 0, 0) + question +
                record * count)

    def serve_tcp(self):
        conn, _ = self.tcp.accept()
        with conn:
            conn.settimeout(5)
            head = conn.recv(2, socket.MSG_WAITALL)
            if len(head) < 2:
                return
            data = conn.recv(struct.unpack(">H", head)[0], socket.MSG_WAITALL)
            answer = self.reply(data, True)
            if answer:
                conn.sendall(struct.pack(">H", len(answer)) + answer)
                self.tcp_answers += 1

    def run(self):
        while not self.stopping:
            ready, _, _ = select.select([self.sock, self.tcp], [], [], 0.1)
            if self.tcp in ready:
                self.serve_tcp()
            if self.sock in ready:
                data, peer = self.sock.recvfrom(512)
                answer = self.reply(data, False)
                if answer:
                    self.sock.sendto(answer, peer)


class StaticAgentTest(TlsAgentTestCase):
    """The static eds-agent in a qemu root without libraries."""

    def setUp(self):
        super().setUp()
        self.root = os.path.join(self.agent_dir, "root")
        os.makedirs(os.path.join(self.root, "etc"))
        with open(os.path.join(self.root, "etc", "hosts"), "w") as f:
            f.write("# the myRIO's /etc/hosts, as the static agent sees it under qemu -L\n"
                    "127.0.0.1\tlocalhost\n"
                    "127.0.0.1\t%s eds-gw   # the gateway\n" % GW_NAME)
        # DNS only on loopback, where nothing answers unless a test starts TinyDns: a name
        # missing from hosts fails fast.
        with open(os.path.join(self.root, "etc", "resolv.conf"), "w") as f:
            f.write("nameserver %s\noptions timeout:1 attempts:1\n" % DNS_ADDR)

    def agent(self, gateway, *args, stdin=subprocess.DEVNULL, qemu_args=(), env=None):
        argv = ["qemu-arm", "-L", self.root] + list(qemu_args) + [
            AGENT, "--gateway", gateway, "--device", DEV,
            "--password-file", self.password_file(DEV), "--schema", SCHEMA,
            "--reconnect-min", "0.1", "--reconnect-max", "1", "-v"] + [str(a) for a in args]
        p = Process(argv, name="eds-agent(arm)", stdin=stdin, env=env)
        self.agents.append(p)
        return p

    def run_with(self, gateway, *args, records=200, env=None):
        p = self.agent(gateway, *args, stdin=subprocess.PIPE, env=env)
        p.proc.stdin.write(ndjson(1, records))
        p.proc.stdin.close()
        return p.wait(120), p

    def tls(self, *extra):
        return self.tls_args() + list(extra)

    def test_static_and_version(self):
        out = subprocess.run(["file", "-b", AGENT], capture_output=True, text=True).stdout
        self.assertIn("statically linked", out)
        r = subprocess.run(["qemu-arm", "-L", self.root, AGENT, "--version"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^eds-agent \d+\.\d+\.\d+ \(OpenSSL 3\.")

    def test_name_from_etc_hosts_plain_tcp(self):
        rc, p = self.run_with("%s:%d" % (GW_NAME, self.gw.port))
        self.assertEqual(rc, 0, p.output())
        self.assert_once_in_order(200)
        self.assertRegex(p.output(), r"connected to gateway 127\.0\.0\.1:%d \(plain TCP\)"
                         % self.gw.port)

    def test_tls_client_cert_gateway_by_ip(self):
        # The gateway's certificate has IP:127.0.0.1 in its subjectAltName: checked as such.
        rc, p = self.run_with("127.0.0.1:%d" % self.tls_port, *self.tls(), records=300)
        self.assertEqual(rc, 0, p.output())
        self.assert_once_in_order(300)
        self.assertRegex(p.output(), r"connected to gateway 127\.0\.0\.1:%d \(TLSv1\.[23]\)"
                         % self.tls_port)

    def test_tls_ignores_the_devices_openssl_config(self):
        """The myRIO's openssl.cnf belongs to its own OpenSSL (1.x): an engine or provider
        module it names must never be loaded into the agent's OpenSSL 3."""
        conf = foreign_openssl_conf(self.root)
        env = dict(os.environ, OPENSSL_CONF=conf)
        # qemu -strace logs every system call of the agent: the file is never even opened.
        p = self.agent("127.0.0.1:%d" % self.tls_port, *self.tls(), stdin=subprocess.PIPE,
                       env=env, qemu_args=["-strace"])
        p.proc.stdin.write(ndjson(1, 50))
        p.proc.stdin.close()
        self.assertEqual(p.wait(120), 0, p.output()[-3000:])
        self.assert_once_in_order(50)
        self.assertIn("connected to gateway", p.output())
        self.assertNotIn(conf, p.output())

    def test_tls_name_not_on_certificate(self):
        # eds-gw.test is not on the certificate: refused, until --server-name names what is.
        p = self.agent("%s:%d" % (GW_NAME, self.tls_port), *self.tls(), "--simulate", 5)
        p.wait_for_line(r"TLS with gateway 127\.0\.0\.1:%d \(%s\): certificate verify failed"
                        % (self.tls_port, re.escape(GW_NAME)), timeout=60)
        p.kill()
        self.assertEqual(self.payloads(DEV), [])
        rc, p = self.run_with("%s:%d" % (GW_NAME, self.tls_port),
                              *self.tls("--server-name", "localhost"))
        self.assertEqual(rc, 0, p.output())
        self.assert_once_in_order(200)

    def test_name_from_dns(self):
        """A name not in /etc/hosts: glibc's stub resolver inside the static agent asks the
        name server of the root's /etc/resolv.conf (no NSS)."""
        if os.geteuid() != 0:
            self.skipTest("a DNS server on port 53 needs root")
        try:
            dns = TinyDns(["gw.eds-test.example"])
        except OSError as e:
            self.skipTest("cannot serve DNS on %s:53: %s" % (DNS_ADDR, e))
        dns.start()
        self.addCleanup(dns.stop)
        rc, p = self.run_with("gw.eds-test.example:%d" % self.gw.port, records=50)
        self.assertEqual(rc, 0, p.output())
        self.assert_once_in_order(50)
        self.assertIn(("gw.eds-test.example", 1), dns.queries)
        self.assertRegex(p.output(), r"connected to gateway 127\.0\.0\.1:%d" % self.gw.port)
        # A name DNS does not know: a clear error, and the agent keeps trying.
        p = self.agent("nosuch.eds-test.example:%d" % self.gw.port, "--simulate", 5)
        p.wait_for_line(r"nosuch\.eds-test\.example:%d: not in /etc/hosts nor in DNS"
                        % self.gw.port, timeout=60)
        p.kill()

    def test_dns_answer_larger_than_the_buffer(self):
        """res_search() returns the full length of an answer that did not fit (here 4000
        records, 64 KiB over TCP): the resolver must not parse past its buffer (it crashed
        the agent with SIGSEGV), but report the name and keep running."""
        if os.geteuid() != 0:
            self.skipTest("a DNS server on port 53 needs root")
        try:
            dns = TinyDns(["big.eds-test.example"], big=4000)
        except OSError as e:
            self.skipTest("cannot serve DNS on %s:53: %s" % (DNS_ADDR, e))
        dns.start()
        self.addCleanup(dns.stop)
        p = self.agent("big.eds-test.example:%d" % self.gw.port, "--simulate", 5)
        wait_until(lambda: dns.tcp_answers >= 3 or p.proc.poll() is not None, timeout=60,
                   what="three large answers over TCP")
        p.wait_for_line(r"big\.eds-test\.example:%d: not in /etc/hosts nor in DNS"
                        % self.gw.port, timeout=30)
        self.assertIsNone(p.proc.poll(), p.output()[-2000:])
        p.kill()

    def test_mdns_name_is_refused_clearly(self):
        p = self.agent("eds-pi.local:%d" % self.gw.port, "--simulate", 5)
        p.wait_for_line(r"eds-pi\.local:%d: not in /etc/hosts, and this static eds-agent does "
                        r"not resolve mDNS \(\.local\) names" % self.gw.port, timeout=60)
        p.kill()

    def test_rss_while_sending_over_tls(self):
        """The agent as the init script runs it (spool, TCP and UDP inputs) plus the simulator
        at 50 records/s, over TLS: the guest's resident memory, sampled every 0.2 s."""
        log = os.path.join(self.agent_dir, "qemu-page.log")
        seconds = float(os.environ.get("EDS_MYRIO_RSS_SECONDS", "8"))
        p = self.agent("127.0.0.1:%d" % self.tls_port, *self.tls(),
                       "--spool", self.spool_dir(), "--tcp", edsrig.free_port(),
                       "--udp", edsrig.free_port(), "--simulate", 50,
                       qemu_args=["-d", "page", "-D", log])
        p.wait_for_line(r"connected to gateway .*TLSv1", timeout=60)
        with open(log) as f:
            m = re.search(r"Locating guest address space @ (0x[0-9a-f]+)", f.read())
        self.assertTrue(m, "qemu -d page did not log the guest base")
        base = int(m.group(1), 16)
        peak = qemu_peak = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            peak = max(peak, guest_rss(p.pid, base))
            with open("/proc/%d/status" % p.pid) as f:
                qemu_peak = max(qemu_peak, int(re.search(r"^VmRSS:\s+(\d+)", f.read(),
                                                         re.M).group(1)) * 1024)
            time.sleep(0.2)
        wait_until(lambda: len(self.payloads(DEV)) >= seconds * 25, timeout=60,
                   what="records over TLS while measuring")
        p.kill()
        sys.stderr.write("myrio: eds-agent guest RSS while sending over TLS: peak %.2f MiB "
                         "(the whole qemu-arm process: %.2f MiB; %d records delivered in %.0f s)\n"
                         % (peak / 1048576.0, qemu_peak / 1048576.0, len(self.payloads(DEV)),
                            seconds))
        self.assertGreater(peak, 0)
        self.assertLess(peak, RSS_LIMIT)


class DlopenTest(TlsAgentTestCase):
    """libedsagent.so, loaded with dlopen() by a C program under qemu-arm (the LabVIEW path)."""

    def conf(self, port, *lines):
        path = os.path.join(self.agent_dir, "agent-%d.conf" % port)
        with open(path, "w") as f:
            f.write("gateway 127.0.0.1:%d\ndevice %s\npassword_file %s\nschema %s\n"
                    "reconnect_min 0.1\nlog_level info\n"
                    % (port, DEV, self.password_file(DEV), SCHEMA))
            f.write("".join(line + "\n" for line in lines))
        return path

    def run_dlopen(self, conf, first, last, qemu_args=(), env=None):
        # -L /: the program itself is an ordinary Debian armel binary; the library brings
        # OpenSSL and cJSON inside it.
        p = Process(["qemu-arm", "-L", "/"] + list(qemu_args) +
                    [DLOPEN, LIB, conf, str(first), str(last)], name="dlopen_agent", env=env)
        self.agents.append(p)
        return p.wait(120), p

    def test_records_through_the_api_plain_tcp(self):
        rc, p = self.run_dlopen(self.conf(self.gw.port), 1, 150)
        self.assertEqual(rc, 0, p.output())
        self.assertIn("sent 150, pending 0", p.output())
        self.assert_once_in_order(150)

    def test_records_through_the_api_tls_client_cert(self):
        conf = self.conf(self.tls_port, "tls true",
                         "cafile " + os.path.join(self.certs, "ca.crt"),
                         "cert " + os.path.join(self.certs, "devices", DEV + ".crt"),
                         "key " + os.path.join(self.certs, "devices", DEV + ".key"))
        # With a foreign openssl.cnf in OPENSSL_CONF, which the library never opens (qemu
        # -strace logs every system call): it is not for the OpenSSL inside the library.
        openssl_conf = foreign_openssl_conf(self.agent_dir)
        rc, p = self.run_dlopen(conf, 1, 150, qemu_args=["-strace"],
                                env=dict(os.environ, OPENSSL_CONF=openssl_conf))
        self.assertEqual(rc, 0, p.output()[-3000:])
        self.assertIn("sent 150, pending 0", p.output())
        self.assertRegex(p.output(), r"connected to gateway .*TLSv1\.[23]")
        self.assertNotIn(openssl_conf, p.output())
        self.assert_once_in_order(150)


if __name__ == "__main__":
    unittest.main(verbosity=2)
