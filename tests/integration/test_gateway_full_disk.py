#!/usr/bin/python3
"""A full state_dir: the gateway's state_dir is a 64 KiB tmpfs in a private mount namespace
(held by a `sleep` of this test, so the same tmpfs outlives a kill -9 of the gateway). The
test fills it while an agent sends, and checks what a user would: acks stop (records wait,
nothing is lost), the gateway says so once in the log, in stats and on _gateway/status, and
acks resume by themselves when there is room. Then it fills it again, kills the gateway
with SIGKILL, frees it, restarts: the welcome's last_seq covers every record that was
acked, and the broker got each record once. At qos 1 and qos 2 (the session store is in
state_dir too). Needs root (mount namespaces); skipped with the reason otherwise."""

import errno
import os
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edsrig  # noqa: E402
from edsrig import RigTimeout  # noqa: E402
from hostile import connect, hello_line, wait_stats  # noqa: E402
from test_hostile_squat import read_line  # noqa: E402
from gwrig import (Gateway, GatewayTestCase, data_msg, hello, in_asan_build,  # noqa: E402
                   line_of, record)

SLOW = 3.0 if in_asan_build() else 1.0
TMPFS_SIZE = "64k"


def why_no_namespace():
    if os.geteuid() != 0:
        return "needs root for a private mount namespace with a tmpfs"
    for tool in ("unshare", "nsenter"):
        if shutil.which(tool) is None:
            return "%s (util-linux) not installed" % tool
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs -o size=4k tmpfs /mnt"], capture_output=True,
                           timeout=10)
    if probe.returncode != 0:
        return "cannot mount a tmpfs in a new mount namespace here: %s" % (
            probe.stderr.decode(errors="replace").strip())
    return None


class TmpfsHolder:
    """A `sleep` in its own mount namespace with a tmpfs of `size` on `path`. The
    gateway runs in that namespace (nsenter), the test reaches the tmpfs through
    /proc/PID/root."""

    def __init__(self, path, size):
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             'mount -t tmpfs -o size=%s,mode=0750 tmpfs "$0" && echo mounted && exec sleep 3600'
             % size, path], stdout=subprocess.PIPE)
        line = self.proc.stdout.readline()
        if line.strip() != b"mounted":
            self.close()
            raise AssertionError("tmpfs holder did not start: %r" % line)
        self.inside = "/proc/%d/root%s" % (self.proc.pid, path)
        self.filler = os.path.join(self.inside, "filler")

    def fill(self):
        """Writes a file until the tmpfs is full; returns the bytes written."""
        n = 0
        chunk = b"\0" * 1024
        with open(self.filler, "ab", buffering=0) as f:
            for _ in range(16384):  # bounded: 16 MiB at most; the tmpfs is smaller
                try:
                    n += f.write(chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
        return n

    def free(self):
        os.unlink(self.filler)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()  # our own sleep, by pid
        self.proc.wait(10)


class NsGateway(Gateway):
    holder = None

    def argv(self):
        return ["nsenter", "-t", str(self.holder.proc.pid), "-m", "--"] + super().argv()


class Sender:
    """An agent on a LineClient that keeps up to `window` records unacked."""

    def __init__(self, tc, gw, stream="disk", window=64):
        self.tc = tc
        self.c = tc.connect()
        self.c.send_json(hello("myrio-01", gw.devices["myrio-01"], stream))
        welcome = self.c.recv_json(10 * SLOW)
        tc.assertEqual(welcome["type"], "welcome", welcome)
        self.last_seq = welcome["last_seq"]
        self.next = self.last_seq + 1
        self.acked = self.last_seq
        self.window = window

    def pump(self, until, seconds):
        """Sends up to seq `until` and reads acks for about `seconds`; returns the highest
        seq acked (acks come in order)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.acked < until:
            while self.next <= until and self.next - self.acked <= self.window:
                self.c.send_json(data_msg(self.next, record(self.next)))
                self.next += 1
            try:
                reply = self.c.recv_json(min(0.5, max(0.01, deadline - time.monotonic())))
            except RigTimeout:
                continue
            self.tc.assertEqual(reply.get("type"), "ack", reply)
            self.tc.assertEqual(reply["seq"], self.acked + 1, "acks out of order")
            self.acked = reply["seq"]
        return self.acked


class FullDiskTest(GatewayTestCase):
    auto_rig = False
    qos = 1
    tmpfs_size = TMPFS_SIZE

    def setUp(self):
        super().setUp()
        reason = why_no_namespace()
        if reason:
            self.skipTest(reason)
        self.broker = edsrig.Broker()
        self.addCleanup(self.broker.close)
        self.sub = edsrig.Subscriber(self.broker, "energy/#", qos=2)
        self.addCleanup(self.sub.close)
        self.gw = NsGateway(self.broker, start=False,
                            options={"qos": self.qos, "stats_interval": 1, "auth_timeout": 3})
        self.holder = TmpfsHolder(self.gw.state_dir, self.tmpfs_size)
        self.addCleanup(self.holder.close)
        self.gw.holder = self.holder
        self.addCleanup(self._close_gateway)
        self.gw.start()

    def stats(self, pred, what):
        return wait_stats(self.sub, pred, 10, what)

    def status_says_full(self, full):
        topic = "energy/_gateway/status"
        return self.sub.wait_for_message(
            topic, 10 * SLOW, lambda m: ("state_dir" in m.json()) == full)

    def send_until_full(self, a, mark):
        """Sends (pump) until the gateway says state_dir cannot be written (the journal's
        last page may take a few hundred more lines first); returns seconds taken."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30 * SLOW:
            a.pump(a.acked + a.window, 0.5)
            if any("state_dir cannot be written" in line
                   for line in self.gw.output().splitlines()[mark:]):
                return time.monotonic() - t0
        self.fail("the gateway never said state_dir cannot be written")

    def test_full_state_dir_holds_acks_and_loses_nothing(self):
        a = Sender(self, self.gw)
        self.assertEqual(a.pump(200, 20 * SLOW), 200)

        # 1. Full: acks stop within the records the window holds; nothing more is acked
        # while it stays full, however long the agent waits.
        mark = self.gw.mark()
        filled = self.holder.fill()
        self.send_until_full(a, mark)
        stuck = a.pump(a.acked + a.window, 2 * SLOW)
        self.assertEqual(a.pump(a.acked + a.window, 3 * SLOW), stuck,
                         "acks went on with a full state_dir")
        self.assertEqual(a.next - 1, stuck + a.window, "the agent could not fill its window")
        st = self.stats(lambda d: d["state_dir"] == "full" and d["journal_failures"]
                        + d["store_failures"] > 0, "state_dir full in stats")
        self.status_says_full(True)
        # said once: one error line per episode, however many retries
        lines = self.gw.output().splitlines()
        self.assertEqual(sum("state_dir cannot be written" in line for line in lines), 1)

        # 2. Room again: the held acks go out by themselves, then everything else.
        self.holder.free()
        self.gw.wait_for_line(r"state_dir writable again", 15 * SLOW, start=mark)
        target = a.next - 1 + 300
        self.assertEqual(a.pump(target, 30 * SLOW), target)
        self.stats(lambda d: d["state_dir"] == "ok", "state_dir ok in stats")
        self.status_says_full(False)

        # 3. Full again, then SIGKILL while acks are held.
        mark = self.gw.mark()
        self.holder.fill()
        self.send_until_full(a, mark)
        acked_before_kill = a.pump(a.acked + a.window, 1 * SLOW)
        sent_before_kill = a.next - 1
        self.gw.kill()
        a.c.close()
        self.holder.free()
        self.gw.start()
        b = Sender(self, self.gw)
        self.assertGreaterEqual(b.last_seq, acked_before_kill,
                                "welcome last_seq %d forgets acked records (%d acked)" % (
                                    b.last_seq, acked_before_kill))
        end = sent_before_kill + 100
        self.assertEqual(b.pump(end, 30 * SLOW), end)

        # 4. The broker got each record once, in order (record(i) is distinct for i < 3600).
        topic = self.gw.topic("myrio-01", "data")
        # Every seq, not a count: the duplicates a qos 1 kill leaves would reach `end`
        # messages while the last records are still on their way (seen under load).
        last = line_of(record(end))
        self.sub.wait_for_message(topic, 20 * SLOW, lambda m: m.payload == last)
        seq_of = {line_of(record(s)): s for s in range(1, end + 1)}
        self.assertEqual(len(seq_of), end, "test records not distinct: send fewer")
        got = [seq_of.get(m.payload, -1) for m in self.sub.messages(topic)]
        lost = sorted(set(range(1, end + 1)) - set(got))
        twice = sorted({s for s in got if got.count(s) > 1})
        dups = len(got) - len(set(got))
        self.assertEqual(lost, [], "records lost")
        self.assertNotIn(-1, got)
        # Never an acked record twice; at qos 2 nothing twice at all.
        self.assertEqual([s for s in twice if s <= acked_before_kill], [],
                         "acked records published twice")
        if self.qos == 2:
            self.assertEqual(twice, [], "published twice at qos 2 (acked up to %d, sent up to "
                             "%d at the kill)" % (acked_before_kill, sent_before_kill))
        sys.stderr.write(
            "FIGURES %s: qos %d, tmpfs %s (filler %d B): acks stopped at seq %d of %d sent "
            "while full; journal_failures %d store_failures %d; after SIGKILL with %d acked "
            "the welcome said last_seq %d; %d records on the broker, %d duplicates\n" % (
                self.id().split(".", 1)[-1], self.qos, self.tmpfs_size, filled, stuck, a.next - 1,
                st["journal_failures"], st["store_failures"], acked_before_kill, b.last_seq,
                len(got), dups))


class KnownGoodFullDiskTest(FullDiskTest):
    """The known-good addresses file (state_dir/known_good) on a full state_dir: logins
    are not affected, the failed write is said once, and the file is written by itself
    once there is room."""

    def test_full_state_dir_holds_acks_and_loses_nothing(self):
        self.skipTest("FullDiskTest runs it; this class checks the known-good file")

    def login(self, source):
        s = connect(self.gw.port, source, timeout=5 * SLOW)
        try:
            s.sendall(hello_line("myrio-03", self.gw.devices["myrio-03"], "kg"))
            return read_line(s, 5 * SLOW)
        finally:
            s.close()

    def known_good(self):
        try:
            with open(os.path.join(self.holder.inside, "known_good")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def test_full_state_dir_does_not_stop_logins(self):
        mark = self.gw.mark()
        self.holder.fill()
        for source in ("127.0.0.3", "127.0.0.4"):
            welcome = self.login(source)
            self.assertTrue(welcome.startswith(b'{"type":"welcome"'), welcome)
        self.gw.wait_for_line(r"known-good addresses: cannot write .*No space left", 10 * SLOW,
                              start=mark)
        self.assertNotIn("127.0.0.3 ", self.known_good())
        # A third login while it stays full (retried every 5 s): still said once.
        welcome = self.login("127.0.0.5")
        self.assertTrue(welcome.startswith(b'{"type":"welcome"'), welcome)
        self.holder.free()
        self.gw.wait_for_line(r"known-good addresses: .* written again", 20 * SLOW, start=mark)
        text = self.known_good()
        for source in ("127.0.0.3", "127.0.0.4", "127.0.0.5"):
            self.assertIn(source + " ", text)
        lines = self.gw.output().splitlines()[mark:]
        self.assertEqual(sum("known-good addresses: cannot write" in ln for ln in lines), 1,
                         "the failed write was not said once")
        self.assertFalse(os.path.exists(os.path.join(self.holder.inside, "known_good.tmp")))


class FullDiskQos2Test(FullDiskTest):
    qos = 2
    # The session store (one record per publish and per QoS 2 step) is compacted at 8 MiB:
    # in 64 KiB it would fill the tmpfs by itself before the test does.
    tmpfs_size = "1m"


if __name__ == "__main__":
    unittest.main()
