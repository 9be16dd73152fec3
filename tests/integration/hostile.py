"""hostile: helpers for the hostile-client integration tests (test_hostile_*.py).

    agent = GoodAgent(gw).start()          # a well-behaved device sending steadily
    mem = RssSampler(gw.pid).start()        # VmRSS of the gateway, sampled every 50 ms
    ... run an attack ...
    agent.finish(self, self.sub)            # every record acked in order, on MQTT once, in order
    mem.stop()

What a GoodAgent does: connects from 127.0.0.2 (so per-address limits aimed at the
attacker on 127.0.0.1 never touch it; still loopback), sends hello, then data records
1, 2, 3, ... at `rate` per second, at most `window` unacknowledged (pipelined), on a
sender thread, while a receiver thread checks that every reply is exactly
{"type":"ack","seq":N} for the next N. finish() stops sending, waits for the last ack and
asserts: no protocol or connection error, every seq acked once in order, and the
subscriber got every record once, in order, byte for byte. It also keeps the longest
time between sending a record and its ack (max_latency), so a test can assert the
gateway kept serving it during the attack.
"""

import json
import os
import re
import select
import socket
import ssl
import sys
import threading
import time

import edsrig
from edsrig import RigTimeout
from gwrig import DEVICES, GatewayTestCase, data_msg, in_asan_build, line_of, record

ASAN = in_asan_build()
# Counts and waits scaled for the sanitizer build (slower, more memory per allocation).
SCALE = 0.4 if ASAN else 1.0
SLOW = 3.0 if ASAN else 1.0

GOOD_SOURCE = "127.0.0.2"   # the good agent's address
ATTACK_SOURCE = "127.0.0.1"  # every attacker's address

# Memory bound: the gateway's VmRSS may not grow by more than this during an attack
# (sanitizer builds keep freed memory in quarantine, so they get more room).
RSS_BOUND_KB = (192 if ASAN else 64) * 1024
if ASAN and "quarantine_size_mb" not in os.environ.get("ASAN_OPTIONS", ""):
    # ASan keeps up to 256 MiB of freed memory in its quarantine by default, so VmRSS grows
    # with any churn of allocations; a smaller one keeps the memory bound meaningful.
    os.environ["ASAN_OPTIONS"] = ":".join(
        o for o in (os.environ.get("ASAN_OPTIONS", ""), "quarantine_size_mb=32") if o)


def scaled(n, minimum=1):
    return max(minimum, int(n * SCALE))


# --------------------------------------------------------------------------------------------
# memory


def rss_kb(pid):
    """VmRSS of a process in KiB (from /proc/<pid>/status)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


class RssSampler:
    """Samples a process's VmRSS every `interval` s on a thread: baseline (at start), peak,
    and the samples, for bounds and for "flat once steady" checks."""

    def __init__(self, pid, interval=0.05):
        self.pid = pid
        self.interval = interval
        self.samples = []  # (monotonic time, kB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.baseline = None

    def start(self):
        self.baseline = rss_kb(self.pid)
        self.samples.append((time.monotonic(), self.baseline))
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.interval):
            try:
                self.samples.append((time.monotonic(), rss_kb(self.pid)))
            except (OSError, AssertionError):
                return  # the process is gone; the test will notice

    def now(self):
        return rss_kb(self.pid)

    @property
    def peak(self):
        return max(kb for _, kb in self.samples)

    def between(self, t0, t1):
        return [kb for t, kb in self.samples if t0 <= t <= t1]

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        try:
            self.samples.append((time.monotonic(), rss_kb(self.pid)))
        except (OSError, AssertionError):
            pass
        return self

    def report(self):
        return "VmRSS baseline %d kB, peak %d kB (+%d kB), last %d kB" % (
            self.baseline, self.peak, self.peak - self.baseline, self.samples[-1][1])

    def assert_bounded(self, tc, bound_kb=RSS_BOUND_KB):
        tc.assertLessEqual(self.peak - self.baseline, bound_kb,
                           "gateway memory grew too much: %s" % self.report())


# --------------------------------------------------------------------------------------------
# sockets


def connect(port, source=ATTACK_SOURCE, rcvbuf=None, sndbuf=None, mss=None, timeout=10.0):
    """A TCP socket to 127.0.0.1:port from `source`, buffer sizes and maximum segment size
    set before connecting (a small rcvbuf makes a peer that does not read fill up quickly;
    a small MSS keeps the gateway's kernel send buffer for it small too, as it would be
    over a real network rather than loopback's 64 KiB segments)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if mss:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        s.bind((source, 0))
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
    except OSError:
        s.close()
        raise
    return s


def read_until_closed(sock, timeout):
    """Reads until the peer closes (EOF or reset). Returns (bytes received, seconds it
    took, how it ended: "eof" / "reset"). Raises RigTimeout if still open after timeout."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RigTimeout("connection still open after %.1f s (received %r)" % (
                timeout, data[-200:]))
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return data, time.monotonic() - t0, "reset"
        if not chunk:
            return data, time.monotonic() - t0, "eof"
        data += chunk


def error_codes(data):
    """The `code` of every complete error line in data (bytes)."""
    codes = []
    for line in data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n")[:-1]:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("type") == "error":
            codes.append(obj.get("code"))
    return codes


def hello_line(device, password, stream="x", proto=1):
    return (json.dumps({"type": "hello", "device": device, "password": password,
                        "stream": stream, "proto": proto}, separators=(",", ":")) + "\n").encode()


# --------------------------------------------------------------------------------------------
# stats


def stats_messages(sub, prefix="energy"):
    return [m.json() for m in sub.messages("%s/_gateway/stats" % prefix)]


def wait_stats(sub, pred, timeout=10.0, what="stats", prefix="energy"):
    """Waits for a stats document (the gateway publishes them every stats_interval) for
    which pred(doc) is true; returns it."""
    topic = "%s/_gateway/stats" % prefix

    def check(msgs):
        for m in reversed(msgs):
            if m.topic == topic:
                doc = m.json()
                return doc if pred(doc) else None
        return None
    return sub.wait_for(check, timeout * SLOW, what)


# --------------------------------------------------------------------------------------------
# the well-behaved agent


ACK_RE = re.compile(rb'^\{"type":"ack","seq":(\d+)\}$')


class GoodAgent:
    """A device that behaves: see the module docstring.

    gw: a gwrig.Gateway. port/ssl_context/server_hostname: to use another (TLS) listener.
    """

    def __init__(self, gw, device="myrio-01", password=None, stream="good", rate=100,
                 window=16, max_records=20000, source=GOOD_SOURCE, port=None, ssl_context=None,
                 server_hostname=None):
        self.gw = gw
        self.device = device
        self.password = DEVICES.get(device) if password is None else password
        self.stream = stream
        self.rate = rate
        self.window = window
        self.max_records = max_records
        self.source = source
        self.port = port or gw.port
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.sock = None
        self._cond = threading.Condition()
        self.sent = 0
        self.acked = 0
        self.error = None
        self.max_latency = 0.0
        self._sent_at = {}
        self._stop = threading.Event()
        self._thread = None
        self.welcome = None

    # -- setup

    def start(self):
        sock = connect(self.port, self.source)
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_hostname=self.server_hostname)
        self.sock = sock
        sock.sendall(hello_line(self.device, self.password, self.stream))
        self._buf = b""
        line = self._recv_line(10.0 * SLOW)
        if not line.startswith(b'{"type":"welcome"'):
            raise AssertionError("good agent %s: expected a welcome, got %r" % (self.device, line))
        self.welcome = json.loads(line)
        sock.settimeout(None)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _recv_line(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RigTimeout("good agent: no line within %.1f s" % timeout)
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise edsrig.ConnectionClosed("good agent: connection closed by the gateway "
                                              "(pending %r)" % self._buf[-200:])
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def _fail(self, why):
        with self._cond:
            if self.error is None:
                self.error = why
            self._cond.notify_all()
        self._stop.set()

    # -- the agent's thread: one thread does both directions (an SSL socket must not be
    # used from two threads at once); blocking calls have a 30 s limit.

    def _run(self):
        t0 = time.monotonic()
        self.sock.settimeout(30.0 * SLOW)
        try:
            while True:
                with self._cond:
                    if self.error is not None:
                        return
                    stopping = self._stop.is_set() or self.sent >= self.max_records
                    if stopping and self.acked >= self.sent:
                        return
                    can_send = not stopping and self.sent - self.acked < self.window
                    seq = self.sent + 1
                now = time.monotonic()
                due = t0 + (seq - 1) / float(self.rate)
                if can_send and now >= due:
                    line = line_of({"type": "data", "seq": seq, "data": record(seq)}) + b"\n"
                    with self._cond:
                        self._sent_at[seq] = time.monotonic()
                        self.sent = seq
                    self.sock.sendall(line)
                    continue
                wait = max(0.0, min(due - now, 0.2)) if can_send else 0.2
                if not (self.ssl_context is not None and self.sock.pending()):
                    r, _, _ = select.select([self.sock], [], [], wait)
                    if not r:
                        with self._cond:
                            oldest = self._sent_at.get(self.acked + 1)
                        if oldest is not None and time.monotonic() - oldest > 30.0 * SLOW:
                            self._fail("no ack for seq %d within %.0f s" % (
                                self.acked + 1, 30.0 * SLOW))
                            return
                        continue
                chunk = self.sock.recv(65536)
                if not chunk:
                    self._fail("connection closed by the gateway after %d acks (pending %r)" % (
                        self.acked, self._buf[-200:]))
                    return
                self._buf += chunk
                while b"\n" in self._buf:
                    line, self._buf = self._buf.split(b"\n", 1)
                    m = ACK_RE.match(line)
                    now = time.monotonic()
                    with self._cond:
                        expect = self.acked + 1
                        if not m or int(m.group(1)) != expect:
                            self._fail("expected the ack of seq %d, got %r" % (expect, line))
                            return
                        self.max_latency = max(self.max_latency,
                                               now - self._sent_at.pop(expect))
                        self.acked = expect
                        self._cond.notify_all()
        except (OSError, ValueError) as e:
            self._fail("after %d sent, %d acked: %s: %s" % (self.sent, self.acked,
                                                          type(e).__name__, e))

    # -- checks

    def wait_acked(self, count, timeout=10.0):
        """Waits until `count` records are acked (the agent is flowing)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.acked >= count or self.error is not None,
                                       timeout * SLOW):
                raise RigTimeout("good agent: %d of %d acked after %.1f s" % (
                    self.acked, count, timeout * SLOW))
            if self.error is not None:
                raise AssertionError("good agent failed: %s" % self.error)

    def progress(self, more=20, timeout=10.0):
        """Waits until `more` further records are acked from now: the gateway is serving it."""
        with self._cond:
            target = self.acked + more
        self.wait_acked(target, timeout)

    def finish(self, tc, sub, timeout=20.0, max_latency=None):
        """Stops sending, waits for the outstanding acks, closes, and asserts that every
        record arrived: acks 1..sent in order and the same records on MQTT, once each,
        in order, byte for byte. Returns the number of records."""
        self._stop.set()
        self._thread.join(timeout * SLOW + 35.0 * SLOW)
        self.sock.close()
        tc.assertIsNone(self.error, "good agent %s failed" % self.device)
        tc.assertGreater(self.sent, 0, "the good agent sent nothing")
        tc.assertEqual(self.acked, self.sent, "good agent: not every record was acked")
        topic = "energy/%s/data" % self.device
        got = [m.payload for m in sub.wait_for_count(topic, self.sent, timeout * SLOW)]
        tc.assertEqual(got, [line_of(record(s)) for s in range(1, self.sent + 1)],
                       "good agent's records on %s are not exactly 1..%d in order" % (
                           topic, self.sent))
        # Nothing more comes: wait for a stats-free moment is not needed, the acks say all
        # were published once; a duplicate would show up as a longer list.
        tc.assertEqual(len(sub.messages(topic)), self.sent, "duplicates on %s" % topic)
        if max_latency is None:
            max_latency = 5.0 * SLOW
        tc.assertLess(self.max_latency, max_latency,
                      "the good agent waited %.2f s for an ack during the attack" %
                      self.max_latency)
        return self.sent

    def close(self):
        self._stop.set()
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass


# --------------------------------------------------------------------------------------------
# clients that never read

# The flooders' receive buffer: small, so that not reading fills it after a few KiB; and an
# Ethernet-like MSS: over loopback (64 KiB segments) Linux lets the gateway's socket send
# buffer grow to tcp_wmem's maximum (4 MiB, some 180000 unread acks) before the gateway
# itself has to hold anything, which only makes the test slower.
RCVBUF = 4096
MSS = 536
FLAT_KB = (16 if ASAN else 2) * 1024  # VmRSS change allowed while a flood is stalled (ASan:
# its quarantine keeps filling with what the good agent frees)


def record_lines(first, count):
    return b"".join(line_of(data_msg(seq, record(seq))) + b"\n"
                    for seq in range(first, first + count))


class Flooder:
    """A connection that sends a stream of lines without reading (non-blocking)."""

    def __init__(self, port, device, password, make_lines, ssl_context=None):
        self.sock = connect(port, rcvbuf=RCVBUF, sndbuf=65536, mss=MSS)
        if ssl_context is not None:
            self.sock = ssl_context.wrap_socket(self.sock, server_hostname="localhost")
        self.sock.sendall(hello_line(device, password, "flood"))
        self.sock.settimeout(10 * SLOW)
        welcome = self.sock.recv(200)
        if not welcome.startswith(b'{"type":"welcome"') or not welcome.endswith(b"\n"):
            raise AssertionError("%s: no welcome: %r" % (device, welcome))
        self.sock.setblocking(False)
        self.device = device
        self.make_lines = make_lines  # (first line number, count) -> bytes
        self.pending = b""
        self.lines_made = 0
        self.sent = 0  # bytes
        self.complete = 0  # lines sent whole

    def fileno(self):
        return self.sock.fileno()

    def send_some(self, max_lines):
        """One non-blocking send; returns bytes the kernel took (0: it would block)."""
        if not self.pending and self.lines_made < max_lines:
            count = min(500, max_lines - self.lines_made)
            self.pending = self.make_lines(self.lines_made + 1, count)
            self.lines_made += count
        if not self.pending:
            return 0
        try:
            n = self.sock.send(self.pending)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0  # (TLS: retried later with the same bytes, as OpenSSL wants)
        self.complete += self.pending[:n].count(b"\n")
        self.pending = self.pending[n:]
        self.sent += n
        return n

    def read_all_replies(self, timeout):
        """Reads again: sends the rest of what it made (a line the stall cut, and over TLS
        whatever OpenSSL must be offered again) while reading, or neither side would move;
        reads one reply per line; returns them."""
        tail = self.pending
        self.pending = b""
        self.complete = self.lines_made
        buf = b""
        deadline = time.monotonic() + timeout
        while buf.count(b"\n") < self.complete:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s: %d of %d replies after %.0f s" % (
                    self.device, buf.count(b"\n"), self.complete, timeout))
            if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
                readable, writable = [self.sock], []
            else:
                readable, writable, _ = select.select([self.sock], [self.sock] if tail else [],
                                                      [], left)
            if writable:
                try:
                    tail = tail[self.sock.send(tail):]
                except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    pass
            if readable:
                try:
                    chunk = self.sock.recv(1 << 20)
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    continue
                if not chunk:
                    raise AssertionError("%s: closed after %d replies" % (
                        self.device, buf.count(b"\n")))
                buf += chunk
        return buf.split(b"\n")[:-1]

    def close(self):
        self.sock.close()


# --------------------------------------------------------------------------------------------
# test case base


class HostileTestCase(GatewayTestCase):
    """A GatewayTestCase (own broker, gateway, subscriber on energy/#) whose gateway publishes
    stats every second. setUp also starts a GoodAgent (self.agent, device myrio-01 from
    127.0.0.2) and an RssSampler (self.mem) once the agent is flowing; settle() ends both
    and checks the agent's records and the memory bound, and prints the figures."""

    gw_options = {"stats_interval": 1}
    agent_kwargs = {}
    start_agent = True

    def setUp(self):
        super().setUp()
        self.agent = None
        self.mem = None
        if self.start_agent:
            self.begin()

    def begin(self, **kw):
        args = dict(self.agent_kwargs)
        args.update(kw)
        self.agent = GoodAgent(self.gw, **args).start()
        self.addCleanup(self.agent.close)
        self.agent.wait_acked(10)  # flowing before the attack starts
        self.mem = RssSampler(self.gw.pid).start()
        self.addCleanup(self.mem.stop)
        return self.agent

    def settle(self, max_latency=None, bound_kb=RSS_BOUND_KB):
        """End of the attack: the good agent lost nothing, memory stayed bounded, the gateway
        still runs. Returns the number of good records."""
        self.assertTrue(self.gw.running(), "eds-gateway died during the attack")
        n = self.agent.finish(self, self.sub, max_latency=max_latency)
        self.mem.stop()
        self.figure("good agent: %d records, all acked and published in order, max ack "
                    "latency %.3f s; %s" % (n, self.agent.max_latency, self.mem.report()))
        self.mem.assert_bounded(self, bound_kb)
        return n

    def figure(self, text):
        sys.stderr.write("FIGURES %s: %s\n" % (self.id().split(".", 1)[-1], text))

    def stats(self, pred, what="stats", timeout=10.0):
        return wait_stats(self.sub, pred, timeout, what)

    def assert_stays_stalled(self, f, max_lines, t_stall):
        """After flood_until_stalled: while the good agent sends for about a second, the
        gateway reads nothing more from f and its VmRSS stays flat. Returns the samples."""
        sent = f.sent
        self.agent.progress(100)  # about a second
        self.assertEqual(f.send_some(max_lines), 0, "the gateway resumed reading")
        self.assertEqual(f.sent, sent)
        samples = self.mem.between(t_stall, time.monotonic())
        self.assertLess(max(samples) - min(samples), FLAT_KB)
        return samples

    def flood_until_stalled(self, flooders, max_lines, quiet=2.0):
        """Sends on every flooder until none has taken a byte for `quiet` s (the gateway and
        the kernel buffers stopped taking them; shorter pauses happen while the broker
        catches up); bounded by max_lines each and 30 s."""
        t0 = time.monotonic()
        last_progress = t0
        while time.monotonic() - last_progress < quiet * SLOW:
            self.assertLess(time.monotonic() - t0, 30 * SLOW,
                            "the gateway kept reading a client that never reads for 30 s")
            # Not select(): it reports a TCP socket writable only once a good part of its
            # buffer is free; a plain send() takes any free byte.
            select.select([], flooders, [], 0.05)
            for f in flooders:
                while f.send_some(max_lines):
                    last_progress = time.monotonic()
            if all(f.lines_made >= max_lines and not f.pending for f in flooders):
                self.fail("the gateway took all %d lines of each flooder without their "
                          "replies being read" % max_lines)
        return time.monotonic() - t0
