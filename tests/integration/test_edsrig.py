#!/usr/bin/python3
"""The rig's own helpers do what the integration tests rely on: Process captures lines,
times out with the output in the message and stops by pid; LineClient frames JSON lines
byte for byte and notices a close; wait_until raises with what it waited for."""

import json
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edsrig import (ConnectionClosed, LineClient, Process, RigTimeout, free_port,  # noqa: E402
                    wait_until)


class LineServer:
    """A one-connection TCP server on 127.0.0.1 whose handler runs in a thread."""

    def __init__(self, handler):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.thread = threading.Thread(target=self._run, args=(handler,), daemon=True)
        self.thread.start()

    def _run(self, handler):
        conn, _ = self.sock.accept()
        with conn:
            handler(self, conn)

    def close(self):
        self.thread.join(10)
        self.sock.close()


class WaitUntilTest(unittest.TestCase):
    def test_returns_value_and_names_what_timed_out(self):
        self.assertEqual(wait_until(lambda: 42, 1, "answer"), 42)
        with self.assertRaisesRegex(RigTimeout, "waiting for the impossible"):
            wait_until(lambda: False, 0.2, "the impossible")

    def test_free_port_is_bindable(self):
        port = free_port()
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


class ProcessTest(unittest.TestCase):
    def test_lines_from_both_streams_and_return_code(self):
        p = Process(["/bin/sh", "-c", "echo out-1; echo err-1 >&2; echo 'port 4242'; exit 3"])
        m = p.wait_for_line(r"port (\d+)", timeout=10)
        self.assertEqual(m.group(1), "4242")
        self.assertEqual(p.wait(10), 3)
        p.stop()
        self.assertIn("out-1", p.lines("stdout"))
        self.assertIn("err-1", p.lines("stderr"))

    def test_wait_for_line_fails_fast_when_the_process_exits(self):
        p = Process(["/bin/sh", "-c", "echo bye"])
        start = time.monotonic()
        with self.assertRaisesRegex(RigTimeout, "(?s)output ended \\(exited with 0\\).*bye"):
            p.wait_for_line("never printed", timeout=30)
        self.assertLess(time.monotonic() - start, 20)

    def test_stop_escalates_to_sigkill(self):
        # The shell ignores SIGTERM, so stop() must SIGKILL it after the deadline.
        p = Process(["/bin/sh", "-c", "trap '' TERM; echo ready; while :; do read x; done"],
                    stdin=-1)
        p.wait_for_line("ready", timeout=10)
        self.assertEqual(p.stop(timeout=0.5), -9)


class LineClientTest(unittest.TestCase):
    def test_json_lines_both_ways_then_close(self):
        def handler(srv, conn):
            buf = b""
            while buf.count(b"\n") < 2:
                buf += conn.recv(4096)
            srv.received = buf
            # two replies in one segment and one split across two sends, then close
            conn.sendall(b'{"type":"welcome","n":1}\n{"type":"ack","seq":1}\n{"type":')
            conn.sendall(b'"ack","seq":2}\n{"type":"error","code":"bye"}\n')

        srv = LineServer(handler)
        try:
            c = LineClient(srv.port, timeout=10)
            c.send_json({"type": "hello", "device": "dev1"})
            c.send_raw(b"not json\n")
            self.assertEqual(c.recv_json(), {"type": "welcome", "n": 1})
            obj, skipped = c.recv_until(lambda o: o.get("seq") == 2)
            self.assertEqual(obj, {"type": "ack", "seq": 2})
            self.assertEqual(skipped, [{"type": "ack", "seq": 1}])
            self.assertEqual(c.wait_closed(), [{"type": "error", "code": "bye"}])
            self.assertTrue(c.closed)
            with self.assertRaises(ConnectionClosed):
                c.recv_json(timeout=1)
            c.close()
        finally:
            srv.close()
        self.assertEqual(srv.received, b'{"type":"hello","device":"dev1"}\nnot json\n')
        self.assertEqual(json.loads(srv.received.split(b"\n")[0]),
                         {"type": "hello", "device": "dev1"})

    def test_recv_times_out_with_pending_bytes_shown(self):
        done = threading.Event()

        def handler(srv, conn):
            conn.sendall(b'{"partial":')
            done.wait(10)

        srv = LineServer(handler)
        try:
            c = LineClient(srv.port)
            with self.assertRaisesRegex(RigTimeout, "partial"):
                c.recv_json(timeout=0.3)
            with self.assertRaises(RigTimeout):
                c.wait_closed(timeout=0.2)
            c.close()
        finally:
            done.set()
            srv.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
