#!/usr/bin/python3
"""Hostile clients at the connection level, each while a well-behaved agent (myrio-01 from
127.0.0.2) sends records: slowloris hellos, hundreds of idle connections (max_conn_per_ip,
max_clients), endless lines, rapid connect/close, password guessing. After each attack
every record of the good agent is acked and on MQTT once, in order, and the gateway's
VmRSS stayed within a bound (hostile.HostileTestCase.settle)."""

import os
import select
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostile import (SLOW, HostileTestCase, connect, error_codes,  # noqa: E402
                     hello_line, read_until_closed, scaled)

HELLO = hello_line("myrio-02", "pw-02", "slow")


class SlowlorisTest(HostileTestCase):
    gw_options = {"stats_interval": 1, "auth_timeout": 2}

    def test_hello_one_byte_at_a_time_is_closed_at_auth_timeout(self):
        n = scaled(20, 5)
        socks = [connect(self.gw.port) for _ in range(n)]
        t0 = time.monotonic()
        closed = {}  # index -> (seconds after connect, bytes received)
        received = {i: b"" for i in range(n)}
        sent = 0
        # One byte every 0.25 s to every socket (a 90-byte hello would take 22 s), until the
        # gateway has closed them all; bounded by a deadline.
        deadline = t0 + 2 + 8 * SLOW
        while len(closed) < n and time.monotonic() < deadline:
            for i, s in enumerate(socks):
                if i in closed:
                    continue
                try:
                    s.send(HELLO[sent:sent + 1])
                except OSError:
                    pass  # reset: the read below sees it
            sent += 1
            tick_end = time.monotonic() + 0.25
            while True:
                left = tick_end - time.monotonic()
                if left <= 0:
                    break
                open_socks = [s for i, s in enumerate(socks) if i not in closed]
                readable, _, _ = select.select(open_socks, [], [], left)
                for s in readable:
                    i = socks.index(s)
                    try:
                        chunk = s.recv(4096)
                    except OSError:
                        chunk = b""
                    received[i] += chunk
                    if not chunk:
                        closed[i] = time.monotonic() - t0
        for s in socks:
            s.close()
        self.assertEqual(len(closed), n, "slowloris connections still open after %.0f s" % (
            deadline - t0))
        self.assertLess(sent, len(HELLO), "the whole hello went out before the close")
        for i in range(n):
            self.assertEqual(error_codes(received[i]), ["timeout"], received[i])
        times = sorted(closed.values())
        self.assertGreaterEqual(times[0], 1.8, "closed before auth_timeout (2 s)")
        self.assertLess(times[-1], 2 + 2.5 * SLOW, "closed long after auth_timeout (2 s)")
        st = self.stats(lambda d: d["timeouts"] >= n, "timeouts >= %d" % n)
        self.assertEqual(st["auth_failures"], 0)
        self.figure("%d slowloris hellos (%d bytes each sent) closed with timeout after "
                    "%.2f..%.2f s; stats timeouts %d" % (n, sent, times[0], times[-1],
                                                         st["timeouts"]))
        self.settle()


class IdleConnectionsTest(HostileTestCase):
    IDLE = scaled(300, 100)
    gw_options = {"stats_interval": 1, "auth_timeout": 3, "max_clients": 1000,
                  "max_conn_per_ip": IDLE, "max_unauthenticated": 1000}  # (per-address cap only)

    def test_hundreds_of_idle_connections_then_per_ip_refusals(self):
        socks = [connect(self.gw.port) for _ in range(self.IDLE)]
        self.addCleanup(lambda: [s.close() for s in socks])
        # The gateway holds all of them: stats count them (plus the good agent).
        st = self.stats(lambda d: d["connections"] == self.IDLE + 1,
                        "%d connections" % (self.IDLE + 1))
        rss_held = self.mem.now()
        # More from the same address are refused at once with server_busy.
        extra = 20
        for _ in range(extra):
            s = connect(self.gw.port)
            data, took, how = read_until_closed(s, 5 * SLOW)
            s.close()
            self.assertEqual(error_codes(data), ["server_busy"], data)
            self.assertLess(took, 1.5 * SLOW, "refusal was not immediate")
        # Another address is not affected by 127.0.0.1's cap.
        other = connect(self.gw.port, source="127.0.0.3")
        other.sendall(hello_line("myrio-03", "pw-03", "o"))
        other.settimeout(5 * SLOW)
        self.assertTrue(other.recv(200).startswith(b'{"type":"welcome"'))
        other.close()
        # All the idle ones are closed with timeout at auth_timeout (3 s after connect).
        t0 = time.monotonic()
        for s in socks:
            data, _, _ = read_until_closed(s, 3 + 5 * SLOW)
            self.assertEqual(error_codes(data), ["timeout"], data)
        waited = time.monotonic() - t0
        st = self.stats(lambda d: d["connections"] == 1 and d["per_ip_refused"] >= extra,
                        "idle connections gone")
        self.assertEqual(st["per_ip_refused"], extra)
        self.assertGreaterEqual(st["timeouts"], self.IDLE)
        # There is room again for 127.0.0.1.
        s = connect(self.gw.port)
        s.sendall(hello_line("myrio-04", "pw-04", "again"))
        s.settimeout(5 * SLOW)
        self.assertTrue(s.recv(200).startswith(b'{"type":"welcome"'))
        s.close()
        self.figure("%d idle connections held (VmRSS %d kB, baseline %d kB), %d more refused "
                    "server_busy (per_ip_refused %d), all closed with timeout within %.1f s "
                    "more; timeouts %d" % (self.IDLE, rss_held, self.mem.baseline, extra,
                                           st["per_ip_refused"], waited, st["timeouts"]))
        self.settle()


class MaxClientsTest(HostileTestCase):
    # max_clients alone: one address may hold every slot without a hello here
    # (test_hostile_squat.py tests the limits that stop that by default)
    gw_options = {"stats_interval": 1, "auth_timeout": 3, "max_clients": 50,
                  "max_conn_per_ip": 0, "max_unauthenticated": 50}

    def test_connection_slots_filled_by_an_attacker(self):
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        busy = 0
        for _ in range(70):
            s = connect(self.gw.port)
            r, _, _ = select.select([s], [], [], 0.05)
            if r:
                data, _, _ = read_until_closed(s, 5 * SLOW)
                self.assertEqual(error_codes(data), ["server_busy"], data)
                busy += 1
                s.close()
            else:
                socks.append(s)
        # The good agent holds one slot: 49 for the attacker, the rest busy (a busy reply
        # that took longer than 50 ms shows up when the held ones are closed below).
        self.agent.progress(20)
        late = 0
        for s in socks:
            data, _, _ = read_until_closed(s, 3 + 5 * SLOW)
            codes = error_codes(data)
            self.assertIn(codes, (["timeout"], ["server_busy"]), data)
            late += codes == ["server_busy"]
        self.assertEqual(len(socks) - late, 49)
        self.assertEqual(busy + late, 70 - 49)
        st = self.stats(lambda d: d["connections"] == 1 and d["server_busy"] >= 21,
                        "server_busy 21 and slots free")
        self.figure("max_clients 50: 49 attacker connections held, %d refused server_busy "
                    "(stats server_busy %d)" % (busy + late, st["server_busy"]))
        self.settle()


class EndlessLineTest(HostileTestCase):
    def stream_without_newline(self, s, limit):
        """Sends 'x' bytes (no newline) until the gateway closes or `limit` bytes went;
        returns (bytes sent, what the gateway sent back)."""
        s.setblocking(False)
        chunk = b"x" * 65536
        sent = 0
        received = b""
        deadline = time.monotonic() + 20 * SLOW
        while sent < limit and time.monotonic() < deadline:
            r, w, _ = select.select([s], [s], [], 0.5)
            if r:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                received += data
                if not data:
                    return sent, received
            if w:
                try:
                    sent += s.send(chunk)
                except BlockingIOError:
                    pass
                except OSError:
                    break  # reset by the gateway
        s.setblocking(True)
        try:
            data, _, _ = read_until_closed(s, 5 * SLOW)
            received += data
        except AssertionError:
            self.fail("the gateway took %d bytes of one line without closing" % sent)
        return sent, received

    def test_megabytes_without_newline_from_many_clients(self):
        clients = scaled(8, 4)
        limit = 8 * 1024 * 1024
        mark = self.gw.mark()
        results = []
        for i in range(clients):
            s = connect(self.gw.port, rcvbuf=65536, sndbuf=65536)
            if i % 2:  # half of them authenticated first
                s.sendall(hello_line("myrio-02", "pw-02", "long"))
            results.append(self.stream_without_newline(s, limit))
            s.close()
            self.agent.progress(5)
        for sent, received in results:
            self.assertLess(sent, limit, "8 MiB of one line accepted")
            codes = error_codes(received)
            self.assertEqual(codes[-1:], ["line_too_long"], received[-300:])
        self.gw.wait_for_line(r"closing \(line_too_long\)", start=mark)
        closes = [line for line in self.gw.output().splitlines()[mark:]
                  if "closing (line_too_long)" in line]
        self.assertEqual(len(closes), clients)
        # The limit is counted in the stats too.
        self.stats(lambda d: d.get("lines_too_long", 0) >= clients, "lines_too_long counted")
        self.figure("%d clients streaming one endless line: each closed with line_too_long "
                    "after %s bytes were taken by the socket buffers and the gateway" % (
                        clients, "/".join(str(s) for s, _ in results)))
        self.settle()


class RapidReconnectTest(HostileTestCase):
    gw_options = {"stats_interval": 1, "auth_timeout": 2}

    def test_opening_and_closing_connections_fast(self):
        n = scaled(600, 200)
        t0 = time.monotonic()
        welcomed = 0
        for i in range(n):
            s = connect(self.gw.port)
            kind = i % 4
            if kind == 1:
                s.sendall(HELLO[:20])  # partial hello, then gone
            elif kind == 2:
                s.sendall(hello_line("myrio-03", "pw-03", "r%d" % (i % 7)))
                if i % 8 == 2:  # sometimes wait for the welcome, then leave
                    s.settimeout(5 * SLOW)
                    welcomed += s.recv(200).startswith(b'{"type":"welcome"')
            elif kind == 3:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00"
                             b"\x00\x00\x00\x00")  # close with a reset
            s.close()
        took = time.monotonic() - t0
        self.agent.progress(10)
        # Every connection is accounted for: only the good agent remains.
        st = self.stats(lambda d: d["connections"] == 1 and d["connections_total"] >= n + 1,
                        "all %d connections closed" % n)
        self.assertGreater(welcomed, 0)
        self.figure("%d connect/close cycles in %.1f s (%d welcomed then closed); stats "
                    "connections %d, connections_total %d" % (
                        n, took, welcomed, st["connections"], st["connections_total"]))
        self.settle()


class PasswordGuessingTest(HostileTestCase):
    def test_wrong_passwords_get_slower_and_do_not_disturb_the_agent(self):
        guesses = 20
        socks = []
        for i in range(guesses):
            s = connect(self.gw.port)
            socks.append(s)
            self.addCleanup(s.close)
            # Guessing the good agent's own device.
            s.sendall(hello_line("myrio-01", "guess-%02d" % i, "g"))
        t0 = time.monotonic()
        answered = {}
        # The first seven answers come at about 0, 0.2, 0.4, 0.8, 1.6, 3.2 and 6.4 s; the rest
        # are held 10 s. Wait for seven (bounded), then check the others are still held.
        while len(answered) < 7 and time.monotonic() - t0 < 9 * SLOW:
            waiting = [s for s in socks if s not in answered]
            readable, _, _ = select.select(waiting, [], [], 0.5)
            for s in readable:
                data, _, _ = read_until_closed(s, 5 * SLOW)
                self.assertEqual(error_codes(data), ["auth_failed"], data)
                answered[s] = time.monotonic() - t0
        times = sorted(answered.values())
        self.assertEqual(len(times), 7, "answers: %r" % times)
        held = [s for s in socks if s not in answered]
        readable, _, _ = select.select(held, [], [], 0)
        self.assertEqual(readable, [], "guesses 8..20 were answered before 10 s")
        # Each later failure came slower: about 0.2 * 2^(k-2) s for the k-th.
        self.assertLess(times[0], 0.5 * SLOW)
        for k in range(2, 8):
            expected = 0.2 * 2 ** (k - 2)
            self.assertGreaterEqual(times[k - 1], expected * 0.9, "answer %d: %r" % (k, times))
        # A correct login from another address is not delayed meanwhile.
        s = connect(self.gw.port, source="127.0.0.3")
        self.addCleanup(s.close)
        t1 = time.monotonic()
        s.sendall(hello_line("myrio-03", "pw-03", "ok"))
        s.settimeout(5 * SLOW)
        self.assertTrue(s.recv(200).startswith(b'{"type":"welcome"'))
        quick = time.monotonic() - t1
        self.assertLess(quick, 1.0 * SLOW)
        st = self.stats(lambda d: d["auth_failures"] >= guesses and d["login_delays"] > 0,
                        "auth_failures %d and login_delays" % guesses)
        self.assertEqual(st["login_delays"], guesses - 1)
        for s in held:
            s.close()
        self.figure("%d wrong passwords at once from 127.0.0.1: answers after %s s, %d still "
                    "held at %.1f s; stats auth_failures %d login_delays %d; a good login "
                    "from 127.0.0.3 took %.3f s" % (
                        guesses, ", ".join("%.2f" % t for t in times), len(held),
                        time.monotonic() - t0, st["auth_failures"], st["login_delays"], quick))
        # The delays never stalled the event loop: the agent's acks kept coming quickly.
        self.settle(max_latency=1.0 * SLOW)


if __name__ == "__main__":
    unittest.main()
