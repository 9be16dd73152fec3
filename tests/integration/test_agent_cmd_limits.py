#!/usr/bin/python3
"""The agent's side of the #13 wire contract, end to end with a real Mosquitto, a real
gateway and a real eds-agent: a command's time to live holds on the agent (never handed
over past it, result `expired`, also across a power cycle of the agent); a command longer
than the agent's max_line is `dropped` and the connection stays; a command sent again after
its ack was lost is handed over once on stdout and UDP; a flood of commands nobody takes
does not stop the records, nor does a stdout that nobody reads."""

import fcntl
import json
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edsrig import Process, bin_path, free_port, wait_until  # noqa: E402
from test_agent_cmds import AgentCmdCase as SchemaCmdCase  # noqa: E402
from test_agent_delivery import CONNECTED, DEV  # noqa: E402


class LineProxy:
    """A TCP proxy between agent and gateway that passes protocol lines, counts the cmd
    lines the gateway sends, and, once armed, swallows the agent's next command ack and
    cuts the connection: a lost ack, as a dropped link or a gateway crash makes it."""

    def __init__(self, port):
        self.target = ("127.0.0.1", port)
        self.lock = threading.Lock()
        self.cmd_lines = []
        self.connections = 0
        self.swallowed = 0
        self.armed = False
        self.socks = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self):
        with self.lock:
            self.armed = True

    def _accept(self):
        while True:
            try:
                a, _ = self.listener.accept()
            except OSError:
                return
            g = socket.create_connection(self.target, timeout=10)
            with self.lock:
                self.connections += 1
                self.socks += [a, g]
            threading.Thread(target=self._pipe, args=(a, g, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(g, a, False), daemon=True).start()

    def _pipe(self, src, dst, from_agent):
        buf = b""
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    with self.lock:
                        if not from_agent and line.startswith(b'{"type":"cmd"'):
                            self.cmd_lines.append(line)
                        cut = from_agent and self.armed and line.startswith(b'{"type":"ack","id"')
                        if cut:
                            self.armed = False
                            self.swallowed += 1
                    if cut:
                        raise OSError("ack swallowed")
                    dst.sendall(line + b"\n")
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.listener.close()
        with self.lock:
            for s in self.socks:
                s.close()


class AgentCmdCase(SchemaCmdCase):
    def results(self, n, timeout=None):
        msgs = self.sub.wait_for_count("energy/%s/cmd/result" % DEV, n, timeout=timeout)
        return [json.loads(m.payload) for m in msgs]

    def tcp_client(self, port):
        c = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.addCleanup(c.close)
        f = c.makefile("rb")
        self.addCleanup(f.close)
        return f


class ExpiryTest(AgentCmdCase):
    gw_options = {"stats_interval": 0.3, "cmd_expiry": 3}

    def test_never_handed_over_past_its_ttl_also_across_a_power_cycle(self):
        port = free_port()
        spool = self.spool_dir()
        p = self.start_agent("--tcp", port, "--cmd-tcp", "--spool", spool)
        p.wait_for_line(CONNECTED % DEV)
        # No consumer: past its 3 s the agent gives it up, without being asked.
        self.send(b'{"id":"e-1","day-ahead-price":77.0}')
        got = self.results(1, timeout=30)[0]
        self.assertEqual((got["status"], got["ref"]), ("expired", "e-1"))
        # A power cycle of the myRIO (kill -9) while the gateway is gone too: the deadline is
        # in cmds.pending as wall-clock time, so the restarted agent does not hand it over.
        sent = time.monotonic()
        self.send(b'{"id":"e-2","day-ahead-price":78.0}')
        pending = os.path.join(spool, "cmds.pending")

        def spooled():
            with open(pending, "rb") as f:
                return b"e-2" in f.read()
        wait_until(lambda: os.path.exists(pending) and spooled(), timeout=20,
                   what="e-2 in the agent's spool")
        p.kill()
        self.gw.kill()
        wait_until(lambda: time.monotonic() > sent + 4, timeout=10, what="e-2's ttl to pass")
        p2 = self.start_agent("--tcp", port, "--cmd-tcp", "--spool", spool)
        p2.wait_for_line(r"reading NDJSON records from tcp")
        f = self.tcp_client(port)
        # The gateway comes back and sends e-2 again (it leaves expiry to the agent that
        # has it): the agent answers `expired`.
        self.gw.start()
        p2.wait_for_line(CONNECTED % DEV)
        got = self.results(2, timeout=30)[1]
        self.assertEqual((got["status"], got["ref"]), ("expired", "e-2"))
        # The application's first command is the next one: neither e-1 nor e-2 reached it.
        self.send(b'{"id":"d-3","day-ahead-price":80.5}')
        self.assertEqual(f.readline(), b'{"id":"d-3","day-ahead-price":80.5}\n')
        got = self.results(3, timeout=30)[2]
        self.assertEqual((got["status"], got["ref"]), ("delivered", "d-3"))


class MaxLineTest(AgentCmdCase):
    def test_command_over_the_agents_max_line_dropped_connection_stays(self):
        p = self.start_agent("--simulate", 20, "--max-line", 1024, "--cmd-stdout")
        p.wait_for_line(CONNECTED % DEV)
        self.wait_samples(5)
        big = json.dumps({"id": "big-1", "curve": "x" * 2000}).encode()
        self.send(big)
        got = self.results(1)[0]
        self.assertEqual((got["status"], got["ref"]), ("dropped", "big-1"))
        self.assertIn("max_line", got["reason"])
        self.assertIn("1024", got["reason"])
        # The connection stayed: records keep coming, a small command still goes through.
        before = len(self.samples())
        self.wait_samples(before + 10)
        self.send(b'{"id":"small-1"}')
        p.wait_for_line(r'^\{"id":"small-1"\}$', stream="stdout")
        self.assertEqual(self.results(2)[1], {"status": "delivered", "ref": "small-1"})
        self.assertEqual(len([line for line in p.lines() if "connected to gateway" in line
                              and "notice" in line]), 1, "the agent reconnected")
        self.assertEqual(p.lines("stdout"), ['{"id":"small-1"}'])


class ResendAfterLostAckTest(AgentCmdCase):
    def test_handed_over_once_on_stdout_and_udp(self):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(udp.close)
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(20)
        proxy = LineProxy(self.gw.port)
        self.addCleanup(proxy.close)
        p = self.start_agent("--cmd-stdout", "--cmd-udp", udp.getsockname()[1],
                             "--simulate", 1, port=proxy.port)
        p.wait_for_line(CONNECTED % DEV)
        proxy.arm()  # the ack of the next command is lost with its connection
        self.send(b'{"id":"r-1","day-ahead-price":77.0}')
        self.assertEqual(udp.recvfrom(65536)[0], b'{"id":"r-1","day-ahead-price":77.0}')
        # The gateway sends r-1 again on the agent's next connection; the agent knows its
        # uid and only acks it.
        self.assertEqual(self.results(1, timeout=30), [{"status": "delivered", "ref": "r-1"}])
        with proxy.lock:
            sent = [line for line in proxy.cmd_lines if b'"r-1"' in line]
            self.assertEqual((proxy.swallowed, len(sent)), (1, 2), proxy.cmd_lines)
            self.assertGreaterEqual(proxy.connections, 2)
        self.send(b'{"id":"r-2","day-ahead-price":80.5}')
        self.assertEqual(udp.recvfrom(65536)[0], b'{"id":"r-2","day-ahead-price":80.5}')
        p.wait_for_line(r'^\{"id":"r-2"', stream="stdout")
        self.assertEqual(p.lines("stdout"), ['{"id":"r-1","day-ahead-price":77.0}',
                                             '{"id":"r-2","day-ahead-price":80.5}'])
        self.assertEqual([r["ref"] for r in self.results(2)], ["r-1", "r-2"])


class FloodTest(AgentCmdCase):
    N = 220

    def test_commands_nobody_takes_do_not_stall_records(self):
        port = free_port()
        p = self.start_agent("--tcp", port, "--cmd-tcp", "--simulate", 20)
        p.wait_for_line(CONNECTED % DEV)
        self.wait_samples(5)
        for i in range(self.N):
            self.send(b'{"id":"c-%d"}' % i)
        # Records keep getting acked (they reach the broker) while the commands wait.
        before = len(self.samples())
        self.wait_samples(before + 20, timeout=60)
        # Over the limits the extra ones are dropped (each with a result); none is lost
        # silently, and none is delivered while no application takes them.
        def dropped():
            return [m.json() for m in self.sub.messages("energy/%s/cmd/result" % DEV)]
        wait_until(lambda: len(dropped()) >= self.N - 64 - 100, timeout=60,
                   what="results for the commands over the limits")
        self.assertTrue(all(r["status"] == "dropped" for r in dropped()), dropped())
        # The application connects: it gets the oldest waiting command first.
        f = self.tcp_client(port)
        first = json.loads(f.readline())
        self.assertRegex(first["id"], r"^c-\d+$")
        got = self.sub.wait_for(lambda ms: any(
            m.topic.endswith("/cmd/result") and m.json()["status"] == "delivered" for m in ms),
            what="a delivered result")
        self.assertTrue(got)
        self.assertTrue(p.running())


class StdoutNobodyReadsTest(AgentCmdCase):
    N = 12

    def test_full_stdout_holds_commands_records_flow_then_each_once_in_order(self):
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)  # one page: full after four commands
        try:
            p = self.start_agent("--simulate", 20, "--cmd-stdout", stdout=w)
        finally:
            os.close(w)
        p.wait_for_line(CONNECTED % DEV)
        self.wait_samples(5)
        sent = [json.dumps({"id": "s-%d" % i, "pad": "x" * 1000}, separators=(",", ":"))
                for i in range(self.N)]
        for line in sent:
            self.send(line.encode())

        def results():
            return [m.json() for m in self.sub.messages("energy/%s/cmd/result" % DEV)]
        wait_until(lambda: results(), timeout=30, what="the first commands written to stdout")
        # Stdout is full: the agent still reads the gateway, records are still acked.
        before = len(self.samples())
        self.wait_samples(before + 20, timeout=60)
        self.barrier()
        held = results()
        self.assertLess(len(held), self.N, "acked although stdout could not take them")
        self.assertEqual(held, [{"status": "delivered", "ref": "s-%d" % i}
                                for i in range(len(held))])
        self.assertTrue(p.running())
        # The application reads again: every command arrives, once, in order, and is acked.
        got = b""
        deadline = time.monotonic() + 60
        while got.count(b"\n") < self.N and time.monotonic() < deadline:
            if not select.select([r], [], [], max(0, deadline - time.monotonic()))[0]:
                continue
            chunk = os.read(r, 65536)
            if not chunk:
                break
            got += chunk
        self.assertEqual(got.decode().splitlines(), sent)
        wait_until(lambda: len(results()) >= self.N, timeout=30, what="all commands acked")
        self.assertEqual(results(), [{"status": "delivered", "ref": "s-%d" % i}
                                     for i in range(self.N)])


class StdoutSharedWithStderrTest(AgentCmdCase):
    N = 16

    def test_log_lines_never_land_inside_a_command_line_with_2_to_1(self):
        # stdout and stderr one pipe (2>&1), one page big, read slowly: a 6 KB command line
        # goes out in pieces while refused records make the agent log warnings.
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
        udp = free_port()
        try:
            p = self.start_agent("--udp", udp, "--cmd-stdout", stdout=w,
                                 stderr=subprocess.STDOUT)
        finally:
            os.close(w)
        data = bytearray()
        lock = threading.Lock()

        def read_slowly():
            while True:
                try:
                    chunk = os.read(r, 700)
                except OSError:  # closed by the cleanup
                    return
                if not chunk:
                    return
                with lock:
                    data.extend(chunk)
                time.sleep(0.002)  # a slow reader (pacing, not synchronisation)

        threading.Thread(target=read_slowly, daemon=True).start()

        def lines():
            with lock:
                return bytes(data).split(b"\n")[:-1]

        connected = re.compile((CONNECTED % DEV).encode())
        wait_until(lambda: any(connected.search(ln) for ln in lines()), timeout=30,
                   what="the agent connected")
        stop = threading.Event()

        def refused_records():  # each one a warning line on stderr; bounded in count
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for i in range(20000):
                    if stop.is_set():
                        return
                    s.sendto(b'{"timestamp":"2026-11-24T10:00:00Z","day-ahead-price":%d,'
                             b'"power_factor":1.2}' % i, ("127.0.0.1", udp))
                    time.sleep(0.001)

        flood = threading.Thread(target=refused_records, daemon=True)
        flood.start()
        self.addCleanup(flood.join)
        self.addCleanup(stop.set)
        sent = [json.dumps({"id": "b-%d" % i, "pad": ("x" * 6000 if i % 2 == 0 else "y")},
                           separators=(",", ":")) for i in range(self.N)]
        for line in sent:
            self.send(line.encode())

        def commands():
            return [ln for ln in lines() if not ln.startswith(b"eds-agent[")]

        wait_until(lambda: len(commands()) >= self.N, timeout=90, what="all commands read")
        stop.set()
        self.assertEqual([c.decode() for c in commands()], sent)
        for c in commands():
            self.assertEqual(json.loads(c)["id"][:2], "b-")
        logs = [ln for ln in lines() if ln.startswith(b"eds-agent[")]
        warnings = [ln for ln in logs if b"record refused by the schema" in ln]
        self.assertGreater(len(warnings), 10, "no log lines while commands were written")
        for ln in logs:
            self.assertNotIn(b'"pad"', ln)
        self.assertTrue(p.running())


class StdoutLibraryReaderClosesTest(AgentCmdCase):
    def test_program_using_the_library_survives_a_closed_stdout(self):
        # A program linking libedsagent leaves SIGPIPE at its default: the library must not
        # let a write to a closed stdout kill it, nor change its signal handling.
        r, w = os.pipe()
        conf = os.path.join(self.agent_dir, "lib.conf")
        with open(conf, "w") as f:
            f.write("gateway 127.0.0.1:%d\ndevice %s\npassword_file %s\ncmd_stdout true\n"
                    "reconnect_min 0.1\nreconnect_max 1\n"
                    % (self.gw.port, DEV, self.password_file()))
        try:
            p = Process([bin_path("cmd_stdout_lib"), conf, 1], name="cmd_stdout_lib", stdout=w)
        finally:
            os.close(w)
        self.addCleanup(p.stop)
        p.wait_for_line(CONNECTED % DEV)
        self.send(b'{"id":"l-1","day-ahead-price":77.0}')
        with os.fdopen(r, "rb") as reader:
            self.assertEqual(reader.readline(), b'{"id":"l-1","day-ahead-price":77.0}\n')
        self.assertEqual(self.results(1), [{"status": "delivered", "ref": "l-1"}])
        # The reader has gone: the next command fails on stdout (logged once) and waits,
        # and eds_agent_next_cmd takes it.
        self.send(b'{"id":"l-2","day-ahead-price":78.0}')
        self.assertEqual(p.wait(60), 0, "killed by SIGPIPE?")
        err = p.lines("stderr")
        self.assertEqual(len([ln for ln in err if "cannot write commands to stdout: Broken pipe"
                              in ln]), 1, err)
        self.assertEqual([ln for ln in err if ln.startswith("taken: ")],
                         ['taken: {"id":"l-2","day-ahead-price":78.0}'])
        self.assertEqual(self.results(2)[1], {"status": "delivered", "ref": "l-2"})


class StdoutTerminalTest(AgentCmdCase):
    def test_terminal_stdout_stays_blocking_even_after_kill_9(self):
        # O_NONBLOCK is a flag of the open terminal, shared with the shell that started
        # the agent (its stdin and stderr too): the agent must not set it there, or a
        # kill -9 leaves the user's terminal non-blocking.
        master, slave = os.openpty()
        self.addCleanup(os.close, master)
        self.addCleanup(os.close, slave)
        p = self.start_agent("--simulate", 1, "--cmd-stdout", stdout=slave)
        p.wait_for_line(CONNECTED % DEV)
        self.send(b'{"id":"t-1","day-ahead-price":77.0}')
        got = b""
        deadline = time.monotonic() + 30
        while b"t-1" not in got and time.monotonic() < deadline:
            if select.select([master], [], [], max(0, deadline - time.monotonic()))[0]:
                got += os.read(master, 4096)
        self.assertIn(b'{"id":"t-1","day-ahead-price":77.0}', got)
        self.assertEqual(self.results(1), [{"status": "delivered", "ref": "t-1"}])
        self.assertTrue(os.get_blocking(slave), "the agent made the terminal non-blocking")
        p.signal(9)
        p.wait()
        self.assertTrue(os.get_blocking(slave), "the terminal is non-blocking after kill -9")


class UidAfterGatewayRestartsTest(AgentCmdCase):
    def test_new_command_after_two_gateway_restarts_is_handed_over(self):
        # The agent remembers the uids it finished; a gateway restarted twice with no
        # command held in between must not give a new command one of those uids (the
        # agent would only ack it: a "delivered" result for a command nobody got).
        p = self.start_agent("--simulate", 1, "--cmd-stdout")
        p.wait_for_line(CONNECTED % DEV)
        self.send(b'{"id":"u-1","day-ahead-price":77.0}')
        p.wait_for_line(r'^\{"id":"u-1"', stream="stdout")
        self.assertEqual(self.results(1), [{"status": "delivered", "ref": "u-1"}])
        for _ in range(2):
            self.gw.restart()
        self.gw.wait_for_line(r"device %s online" % DEV)  # this gateway's welcome
        self.send(b'{"id":"u-2","day-ahead-price":80.5}')
        self.assertEqual(self.results(2, timeout=30)[1], {"status": "delivered", "ref": "u-2"})
        p.wait_for_line(r'^\{"id":"u-2"', stream="stdout")
        self.assertEqual(p.lines("stdout"), ['{"id":"u-1","day-ahead-price":77.0}',
                                             '{"id":"u-2","day-ahead-price":80.5}'])


if __name__ == "__main__":
    unittest.main()
