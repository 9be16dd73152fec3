"""gwrig: a test eds-gateway for the integration tests, on top of edsrig.

    with Broker() as broker, Gateway(broker) as gw:
        c, welcome = agent_session(gw, "myrio-01", DEVICES["myrio-01"], stream="s1")
        c.send_json(data_msg(1, {...}))
        c.recv_json()           # {"type":"ack","seq":1}
        gw.stop()               # SIGTERM; asserts exit code 0
        gw.start()              # same port, same state_dir: last_seq survives

What a Gateway is: build/bin/eds-gateway (EDS_BIN_DIR) started with a config file
written into a private temp dir: a listener on 127.0.0.1:<free port>, the rig broker
as user eds-gateway (password through broker_password_file), the project's schema,
a password file made with mosquitto_passwd for the test devices (DEVICES, or the
`devices` argument), and state_dir in the temp dir, kept across restart() so
last_seq survives. Extra options go in `options` (dict of config-file key -> value).

With EDS_VALGRIND=1 in the environment (or valgrind=True) the gateway runs under
`valgrind --error-exitcode=99 --leak-check=full`.
"""

import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import unittest

import edsrig
from edsrig import (GATEWAY_PASSWORD, GATEWAY_USER, LineClient, Process, RigTimeout,
                    bin_path, free_port, make_password_file, source_path, wait_until)

# Test devices and their passwords (written to the gateway's password file).
DEVICES = {
    "myrio-01": "s3cret",
    "myrio-02": "pw-02",
    "myrio-03": "pw-03",
    "myrio-04": "pw-04",
}

SCHEMA = source_path("schemas", "energy.json")
VALGRIND = ["valgrind", "--error-exitcode=99", "--leak-check=full",
            "--errors-for-leak-kinds=definite", "--track-fds=no", "-q"]

START_TIMEOUT = 10.0


def in_asan_build():
    """True when the binaries under test come from a sanitizer build (dir name has 'asan')."""
    return "asan" in os.path.basename(os.path.dirname(os.path.abspath(edsrig.BIN_DIR))).lower() \
        or "asan" in edsrig.BIN_DIR.lower()


def compact(obj):
    """JSON as the gateway writes it: compact, key order kept."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def data_msg(seq, data):
    return {"type": "data", "seq": seq, "data": data}


def record(i):
    """A record valid under schemas/energy.json, distinct per i."""
    return {"timestamp": "2026-11-24T10:%02d:%02dZ" % (i // 60 % 60, i % 60),
            "day-ahead-price": round(50 + (i % 1000) / 10.0, 1), "power_factor": 0.97}


class Gateway:
    def __init__(self, broker, devices=None, options=None, schema=SCHEMA, start=True,
                 wait_broker=True, valgrind=None, prefix=None, password_file=True,
                 verbose=True):
        self.broker = broker
        self.devices = dict(DEVICES if devices is None else devices)
        self.workdir = tempfile.mkdtemp(prefix="eds-gw-")
        self.state_dir = os.path.join(self.workdir, "state")
        self.conf_file = os.path.join(self.workdir, "eds-gateway.conf")
        self.broker_pw_file = os.path.join(self.workdir, "broker-password")
        self.passwd_file = os.path.join(self.workdir, "passwd") if password_file else None
        self.prefix = prefix or "energy"
        self.port = free_port()
        if valgrind is None:
            valgrind = os.environ.get("EDS_VALGRIND") == "1"
        self.valgrind = valgrind
        self.verbose = verbose
        self.proc = None
        self._started_once = False
        self._collected = True
        self.previous_output = []
        self.exit_codes = []
        with open(self.broker_pw_file, "w") as f:
            f.write(GATEWAY_PASSWORD + "\n")
        os.chmod(self.broker_pw_file, 0o600)
        if self.passwd_file:
            make_password_file(self.passwd_file, self.devices)
        self.options = {
            "broker_host": broker.host,
            "broker_port": broker.port,
            "broker_username": GATEWAY_USER,
            "broker_password_file": self.broker_pw_file,
            "state_dir": self.state_dir,
            "stats_interval": 0,
            "shutdown_timeout": 5,
        }
        if schema:
            self.options["schema"] = schema
        if self.passwd_file:
            self.options["password_file"] = self.passwd_file
        if prefix:
            self.options["topic_prefix"] = prefix
        self.options.update(options or {})
        self.write_config()
        if start:
            self.start(wait_broker=wait_broker)

    # -- config

    def write_config(self):
        lines = ["# written by gwrig", "listener %d 127.0.0.1" % self.port]
        for key, value in self.options.items():
            if value is None:
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            lines.append("%s %s" % (key, value))
        with open(self.conf_file, "w") as f:
            f.write("\n".join(lines) + "\n")

    def topic(self, device, leaf):
        return "%s/%s/%s" % (self.prefix, device, leaf)

    # -- process

    def argv(self):
        argv = [bin_path("eds-gateway"), "-c", self.conf_file]
        if self.verbose:
            # EDS_GW_DEBUG=1: log at debug level (every publish and event).
            argv.append("-vv" if os.environ.get("EDS_GW_DEBUG") == "1" else "-v")
        if self.valgrind:
            argv = VALGRIND + argv
        return argv

    def start(self, wait_broker=True, timeout=None):
        """Starts the gateway; waits for "listening on" and (wait_broker) for
        "connected to the broker"."""
        if self.proc is not None and self.proc.running():
            raise RuntimeError("gateway already running")
        if timeout is None:
            timeout = START_TIMEOUT * (6 if self.valgrind else 1)
        for attempt in range(5):
            self.proc = Process(self.argv(), name="eds-gateway")
            self._collected = False
            try:
                self.proc.wait_for_line(r"listening on .* port %d" % self.port, timeout)
                break
            except RigTimeout:
                self._finish(self.proc.kill())
                # free_port() cannot reserve the port: a test running in parallel may have
                # taken it. Only on the first start; a restart must keep its port.
                if self._started_once or attempt == 4 or \
                        "Address already in use" not in "\n".join(self.proc.lines()):
                    raise
                self.port = free_port()
                self.write_config()
        self._started_once = True
        try:
            if wait_broker:
                self.proc.wait_for_line(r"connected to the broker", timeout)
        except RigTimeout:
            self._finish(self.proc.kill())
            raise
        return self

    def running(self):
        return self.proc is not None and self.proc.running()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def _finish(self, rc):
        self.exit_codes.append(rc)
        if not self._collected:
            self.previous_output += self.proc.lines()
            self._collected = True
        return rc

    def stop(self, timeout=None, expect=0):
        """SIGTERM; waits for the exit and asserts its code (expect=None: no check).
        Returns the exit code."""
        if timeout is None:
            timeout = 15.0 * (4 if self.valgrind else 1)
        self.proc.signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self.proc._join()
        self._finish(rc)
        if expect is not None and rc != expect:
            raise AssertionError("eds-gateway exited with %s after SIGTERM, expected %s; "
                                 "output:\n%s" % (rc, expect, self.output()))
        return rc

    def kill(self):
        """SIGKILL by pid: a crash. Returns the exit code (-9)."""
        return self._finish(self.proc.kill())

    def restart(self, kill=False, wait_broker=True):
        """Stops (SIGTERM, exit 0 asserted) or kills, then starts again on the same port
        with the same state_dir."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start(wait_broker=wait_broker)

    def sighup(self, expect=r"SIGHUP: (schemas reloaded|keeping the old schemas)"):
        """Sends SIGHUP and waits for the log line that reports the schema reload (or its
        refusal); returns the re.Match."""
        start = len(self.proc.lines())
        self.proc.signal(signal.SIGHUP)
        return self.proc.wait_for_line(expect, start=start)

    def mark(self):
        """Index into lines() for wait_for_line(start=...)."""
        return len(self.proc.lines())

    def wait_for_line(self, regex, timeout=edsrig.DEFAULT_TIMEOUT, start=0):
        return self.proc.wait_for_line(regex, timeout, start=start)

    def output(self):
        current = self.proc.lines() if self.proc and not self._collected else []
        return "\n".join(self.previous_output + current)

    def connect(self, timeout=edsrig.DEFAULT_TIMEOUT):
        return LineClient(self.port, timeout=timeout)

    def close(self):
        if self.proc is not None and not self._collected:
            self._finish(self.proc.stop(5))
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def hello(device, password=None, stream="0", proto=1):
    msg = {"type": "hello", "device": device}
    if password is not None:
        msg["password"] = password
    msg["stream"] = stream
    msg["proto"] = proto
    return msg


def agent_session(gw, device="myrio-01", password=None, stream="s1", timeout=None):
    """Connects, sends hello and reads the welcome (asserting its exact form).
    Returns (LineClient, welcome dict). password None: the device's from gw.devices."""
    if password is None:
        password = gw.devices.get(device)
    c = gw.connect()
    c.send_json(hello(device, password, stream))
    line = c.recv_line(timeout)
    try:
        welcome = json.loads(line)
    except ValueError:
        c.close()
        raise AssertionError("welcome is not JSON: %r" % line) from None
    if welcome.get("type") != "welcome":
        c.close()
        raise AssertionError("expected a welcome for %s, got %r" % (device, line))
    expected = b'{"type":"welcome","proto":1,"last_seq":%d}' % welcome.get("last_seq", -1)
    if line != expected:
        c.close()
        raise AssertionError("welcome is not byte-exact: %r, expected %r" % (line, expected))
    return c, welcome


def recv_acks(client, n, timeout=edsrig.DEFAULT_TIMEOUT):
    """Receives n replies (any type); returns them as dicts."""
    return [client.recv_json(timeout) for _ in range(n)]


def line_of(obj):
    return compact(obj).encode("utf-8")


class DurableSubscriber(edsrig.MqttClient):
    """A reader whose session survives a broker restart: clean_session=False and a fixed
    client id, subscribed at QoS `qos` (1 by default), so messages published while it is
    disconnected are queued by the broker (persistence on) and delivered when paho
    reconnects. With qos=2 the broker's leg to this reader is exactly once too."""

    def __init__(self, broker, topics="energy/#", client_id=None, qos=1, **kw):
        super().__init__(broker, edsrig.READER_USER, edsrig.READER_PASSWORD, connect=False,
                         client_id=client_id, **kw)
        import paho.mqtt.client as mqtt
        self.client = mqtt.Client(client_id=self.client_id, clean_session=False,
                                  protocol=mqtt.MQTTv311)
        self.client.username_pw_set(edsrig.READER_USER, edsrig.READER_PASSWORD)
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.redelivered = 0
        self._seen = set()
        rc = self.connect()
        if rc != 0:
            self.close()
            raise AssertionError("durable subscriber: CONNACK %d" % rc)
        for t in [topics] if isinstance(topics, str) else topics:
            if self.subscribe(t, qos) != qos:
                self.close()
                raise AssertionError("durable subscription to %s not granted at QoS %d" % (t, qos))


    def _on_message(self, client, userdata, msg):
        # A message the broker redelivers (DUP set: it sent it before the restart but did not
        # get our PUBACK) is the broker's duplicate, not the gateway's: counted, not kept.
        key = (msg.topic, bytes(msg.payload))
        with self._cond:
            if msg.dup and key in self._seen:
                self.redelivered += 1
                return
            self._seen.add(key)
        super()._on_message(client, userdata, msg)


class GatewayTestCase(unittest.TestCase):
    """Every test gets its own Broker, Gateway (options from gw_options, or call
    start_rig() yourself with auto_rig = False) and a Subscriber on energy/# (self.sub)
    that was subscribed before the gateway started. On failure ctest shows the
    gateway's log, printed at cleanup."""

    auto_rig = True
    gw_options = {}
    gw_kwargs = {}

    def setUp(self):
        self._t0 = time.monotonic()
        if self.auto_rig:
            self.start_rig()

    def start_rig(self, options=None, durable=False, **kwargs):
        """durable: a DurableSubscriber (True: QoS 1; or the QoS as a number)."""
        if not hasattr(self, "_t0"):
            self._t0 = time.monotonic()
        self.broker = edsrig.Broker()
        self.addCleanup(self.broker.close)
        if durable:
            self.sub = DurableSubscriber(self.broker, "energy/#", qos=2 if durable == 2 else 1)
        else:
            self.sub = edsrig.Subscriber(self.broker, "energy/#")
        opts = dict(self.gw_options)
        opts.update(options or {})
        kw = dict(self.gw_kwargs)
        kw.update(kwargs)
        self.gw = Gateway(self.broker, options=opts, **kw)
        self.addCleanup(self._close_gateway)
        self.addCleanup(self.sub.close)
        return self.gw

    def _close_gateway(self):
        # A gateway still running at the end is stopped here with SIGTERM and must exit 0:
        # so every test also catches a sanitizer report (or a crash) at exit.
        rc = self.gw.stop(expect=None) if self.gw.running() else 0
        self.gw.close()
        lines = self.gw.output().splitlines()
        sys.stderr.write("---- %s (%.1f s): eds-gateway log (last %d of %d lines)\n%s\n" % (
            self.id(), time.monotonic() - self._t0, min(len(lines), 80), len(lines),
            "\n".join(lines[-80:])))
        if rc != 0:
            self.fail("eds-gateway exited with %s after SIGTERM at the end of the test; see its "
                      "log above" % rc)

    def session(self, device="myrio-01", password=None, stream="s1"):
        c, welcome = agent_session(self.gw, device, password, stream)
        self.addCleanup(c.close)
        return c, welcome

    def connect(self):
        c = self.gw.connect()
        self.addCleanup(c.close)
        return c

    def payloads(self, device, leaf="data"):
        return [m.payload for m in self.sub.messages(self.gw.topic(device, leaf))]

    def wait_payloads(self, device, count, leaf="data", timeout=None):
        return [m.payload for m in self.sub.wait_for_count(self.gw.topic(device, leaf), count,
                                                           timeout)]

    def retained(self, topic, match=None, timeout=None):
        """The retained message on topic, seen by a fresh subscriber (its retain flag is
        asserted). With match: first waits until self.sub has seen a message on topic for
        which match(msg) is true, so the broker has it (publishes are asynchronous to the
        lines an agent receives)."""
        if match is not None:
            self.sub.wait_for_message(topic, timeout, match)
        s = edsrig.Subscriber(self.broker, topic)
        try:
            msg = s.wait_for_message(topic, timeout)
        finally:
            s.close()
        self.assertTrue(msg.retain, "%r is not a retained message" % (msg,))
        return msg

    def assertClosedWithError(self, client, code, timeout=None, before=()):
        """The connection closes after exactly the lines `before` (dicts) and one error line
        with this code, byte for byte {"type":"error","code":CODE,"message":"..."}."""
        raw = raw_lines_until_closed(client, timeout)
        got = [json.loads(line) for line in raw]
        self.assertEqual(len(got), len(before) + 1, "lines before close: %r" % (raw,))
        self.assertEqual(got[:len(before)], list(before))
        self.assertRegex(raw[-1], ERROR_LINE % re.escape(code).encode())
        return got[-1]


ERROR_LINE = rb'^\{"type":"error","code":"%s","message":"(?:[^"\\]|\\.)*"\}$'


def raw_lines_until_closed(client, timeout=None):
    """Waits until the peer closes; returns the complete lines (bytes) received before."""
    deadline = time.monotonic() + (client.timeout if timeout is None else timeout)
    while not client.closed:
        if not client._fill(deadline):
            raise RigTimeout("connection still open after %.1f s; received %r" % (
                client.timeout if timeout is None else timeout, client.buf[-300:]))
    lines = client.buf.split(b"\n")
    client.buf = lines.pop()
    return lines
