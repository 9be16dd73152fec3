"""edsrig: the test rig shared by every EDS integration test.

Run tests with /usr/bin/python3 (it has Debian's python3-paho-mqtt). Needs
only the standard library, paho-mqtt 1.6 and mosquitto 2.0 (/usr/sbin/mosquitto,
mosquitto_passwd).

What is here:
  free_port()          a free TCP port on 127.0.0.1
  wait_until(...)      poll a condition until a deadline; raise with a clear message
  Process              start a binary, capture its output lines, wait for a line, stop it by pid
  Broker               a private mosquitto built from broker-config/ on a free port
  MqttClient           a paho client that waits for CONNACK/SUBACK/PUBACK and collects messages
  Subscriber           an MqttClient logged in as `reader` that subscribes on creation
  LineClient           the EDS line protocol (newline-delimited JSON) over TCP or TLS
  bin_path(), source_path()   locate built binaries (EDS_BIN_DIR) and repo files (EDS_SOURCE_DIR)

Rules the helpers follow (and tests should too): no bare sleeps, every wait
has a deadline and names what it waited for; only 127.0.0.1; processes are
stopped by their own pid.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("EDS_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
BIN_DIR = os.environ.get("EDS_BIN_DIR") or os.path.join(SOURCE_DIR, "build", "bin")

MOSQUITTO = os.environ.get("EDS_MOSQUITTO", "/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"

# Users of the project's ACL (broker-config/acl) and the passwords the rig gives them.
GATEWAY_USER = "eds-gateway"
GATEWAY_PASSWORD = "gw-test-secret"
READER_USER = "reader"
READER_PASSWORD = "reader-test-secret"

DEFAULT_TIMEOUT = 10.0


class RigTimeout(AssertionError):
    """A wait_until() deadline passed. An AssertionError so unittest reports a failure."""


def source_path(*parts):
    return os.path.join(SOURCE_DIR, *parts)


def bin_path(name):
    """Path of a built binary in EDS_BIN_DIR; raises if it is missing."""
    path = os.path.join(BIN_DIR, name)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError("%s not built (EDS_BIN_DIR=%s)" % (name, BIN_DIR))
    return path


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout=DEFAULT_TIMEOUT, what="condition", interval=0.01):
    """Calls cond() until it returns a true value (which is returned) or timeout
    seconds pass (raises RigTimeout naming `what`). The poll interval grows from
    `interval` up to 0.1 s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        now = time.monotonic()
        if now >= deadline:
            raise RigTimeout("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(min(interval, deadline - now))
        interval = min(interval * 2, 0.1)


def _wait_cond(condvar, pred, timeout, what):
    """Like wait_until but on a threading.Condition that the caller holds."""
    if not condvar.wait_for(pred, timeout):
        raise RigTimeout("timed out after %.1f s waiting for %s" % (timeout, what))


def can_connect(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# Processes


class Process:
    """A child process whose stdout and stderr lines are collected (as str, without the
    newline) by two reader threads. Stopped only through its own pid.

        p = Process([bin_path("eds-gateway"), "-c", conf], name="gateway")
        p.wait_for_line(r"listening on .*:(\\d+)", timeout=5)
        rc = p.stop()
    """

    def __init__(self, argv, name=None, env=None, cwd=None, stdin=subprocess.DEVNULL,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE):
        """stdout: PIPE (collected) or a file descriptor the test reads itself; stderr: PIPE
        (collected) or STDOUT (2>&1, with stdout a file descriptor: the test reads both)."""
        self.argv = [str(a) for a in argv]
        self.name = name or os.path.basename(self.argv[0])
        self._cond = threading.Condition()
        self._lines = []  # (stream, text)
        # streams fully read (one not collected counts as read)
        self._eof = (stdout != subprocess.PIPE) + (stderr != subprocess.PIPE)
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(self.argv, stdin=stdin, stdout=stdout,
                                     stderr=stderr, env=full_env, cwd=cwd)
        self.pid = self.proc.pid
        self._readers = []
        if stderr == subprocess.PIPE:
            self._readers.append(threading.Thread(target=self._read,
                                                  args=(self.proc.stderr, "stderr"), daemon=True))
        if stdout == subprocess.PIPE:
            self._readers.append(threading.Thread(target=self._read,
                                                  args=(self.proc.stdout, "stdout"), daemon=True))
        for t in self._readers:
            t.start()

    def _read(self, pipe, stream):
        for raw in iter(pipe.readline, b""):
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._cond:
                self._lines.append((stream, text))
                self._cond.notify_all()
        pipe.close()
        with self._cond:
            self._eof += 1
            self._cond.notify_all()

    def lines(self, stream=None):
        """Snapshot of the lines so far (both streams interleaved unless stream is given)."""
        with self._cond:
            return [t for s, t in self._lines if stream is None or s == stream]

    def output(self):
        return "\n".join(self.lines())

    def wait_for_line(self, regex, timeout=DEFAULT_TIMEOUT, stream=None, start=0):
        """Waits for a line (from index `start` of lines(stream)) matching regex; returns the
        re.Match. Raises RigTimeout (with the output so far) on timeout or if the process
        exits without printing it."""
        pat = re.compile(regex)
        found = []

        def scan():
            lines = [t for s, t in self._lines if stream is None or s == stream]
            for text in lines[start:]:
                m = pat.search(text)
                if m:
                    found.append(m)
                    return True
            return self._eof == 2  # the process closed its output: nothing more will come

        deadline = time.monotonic() + timeout
        with self._cond:
            ended = self._cond.wait_for(scan, timeout)
        if found:
            return found[0]
        if ended:  # output closed: the process is exiting, collect its status
            try:
                self.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        state = "exited with %s" % self.proc.returncode if self.proc.poll() is not None else \
            "still running"
        why = "its output ended" if ended else "none within %.1f s" % timeout
        raise RigTimeout("%s: no line matching %r, %s (%s); output:\n%s" % (
            self.name, regex, why, state, self.output()))

    def running(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout=DEFAULT_TIMEOUT):
        """Waits for exit; returns the return code (negative: killed by that signal). Its
        output is then complete: the readers have seen both pipes close (a child that
        inherited them may hold them open; then after 5 s at most)."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise RigTimeout("%s (pid %d) did not exit within %.1f s" % (
                self.name, self.pid, timeout)) from None
        self._join()
        return rc

    def stop(self, timeout=DEFAULT_TIMEOUT):
        """SIGTERM, then SIGKILL if it has not exited after timeout s. Returns the return code."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
        self._join()
        return self.proc.returncode

    def kill(self):
        """SIGKILL now; returns the return code."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait()
        self._join()
        return self.proc.returncode

    def _join(self):
        for t in self._readers:
            t.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------------------------
# Broker

# Settings of broker-config/mosquitto.conf that the rig replaces; everything else is kept.
_REPLACED = {"listener", "port", "bind_address", "password_file", "acl_file",
             "persistence_location", "log_dest", "pid_file", "user", "include_dir"}
_REQUIRED = {"listener", "password_file", "acl_file", "persistence_location"}


def make_broker_config(port, workdir, passwd_file, persist_dir, conf_path=None, acl_path=None,
                       extra_lines=()):
    """Text of a mosquitto.conf generated from the project's one: same settings, with the
    listener on 127.0.0.1:port, the given password file, the project's ACL file, the given
    persistence location and logging to stderr."""
    conf_path = conf_path or source_path("broker-config", "mosquitto.conf")
    acl_path = acl_path or source_path("broker-config", "acl")
    kept, seen = [], set()
    with open(conf_path) as f:
        for line in f:
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            seen.add(words[0])
            if words[0] not in _REPLACED:
                kept.append(line.rstrip("\n"))
    missing = _REQUIRED - seen
    if missing:
        raise ValueError("%s lacks %s" % (conf_path, ", ".join(sorted(missing))))
    out = ["# generated by edsrig from %s" % conf_path] + kept + [
        "listener %d 127.0.0.1" % port,
        "password_file %s" % passwd_file,
        "acl_file %s" % acl_path,
        "persistence_location %s/" % persist_dir.rstrip("/"),
        "log_dest stderr",
        "log_type information",  # the rig waits for "mosquitto version ... running"
    ]
    if os.geteuid() == 0:
        # Run as root, mosquitto would switch to user "mosquitto", who cannot read our
        # private temp dir.
        out.append("user root")
    out.extend(extra_lines)
    return "\n".join(out) + "\n"


def make_password_file(path, users):
    """Creates a mosquitto password file with {user: password} using mosquitto_passwd."""
    open(path, "w").close()
    os.chmod(path, 0o600)
    for user, password in users.items():
        subprocess.run([MOSQUITTO_PASSWD, "-b", path, user, password], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)


def make_test_certs(outdir, hosts=("127.0.0.1", "localhost")):
    """A throw-away CA and a server certificate for hosts (IPs and DNS names) with the
    openssl CLI. Returns {"ca": path, "cert": path, "key": path}."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=60)
    ca, ca_key = os.path.join(outdir, "ca.crt"), os.path.join(outdir, "ca.key")
    crt, key = os.path.join(outdir, "server.crt"), os.path.join(outdir, "server.key")
    csr, ext = os.path.join(outdir, "server.csr"), os.path.join(outdir, "server.ext")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
        "-days", "2", "-subj", "/CN=EDS test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
        "-subj", "/CN=%s" % hosts[0])
    san = ",".join(("IP:%s" if re.match(r"^[0-9.:]+$", h) else "DNS:%s") % h for h in hosts)
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n" % san)
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", crt, "-days", "2", "-extfile", ext)
    return {"ca": ca, "cert": crt, "key": key}


class Broker:
    """A private mosquitto from the project's broker-config on 127.0.0.1:<free port>.

        with Broker() as broker:
            broker.port, broker.host
            broker.restart()   # same port, same persistence dir
            broker.kill()      # SIGKILL by pid (no persistence save)

    Users: GATEWAY_USER/GATEWAY_PASSWORD and READER_USER/READER_PASSWORD (plus `users`).
    tls=True adds a TLS listener on tls_port (throw-away CA in certs["ca"]); acl_path
    replaces the project's ACL (e.g. for a stand-in central broker).
    """

    def __init__(self, users=None, extra_lines=(), start=True, timeout=DEFAULT_TIMEOUT,
                 tls=False, acl_path=None):
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls_port = None  # with tls=True: a second listener with TLS (certs in self.certs)
        self.certs = None
        self.workdir = tempfile.mkdtemp(prefix="eds-broker-")
        self.passwd_file = os.path.join(self.workdir, "passwd")
        self.persist_dir = os.path.join(self.workdir, "persist")
        self.conf_file = os.path.join(self.workdir, "mosquitto.conf")
        self.timeout = timeout
        self.proc = None
        self.previous_output = []
        os.mkdir(self.persist_dir)
        all_users = {GATEWAY_USER: GATEWAY_PASSWORD, READER_USER: READER_PASSWORD}
        all_users.update(users or {})
        make_password_file(self.passwd_file, all_users)
        self._acl_path = acl_path
        self._extra_lines = list(extra_lines)
        if tls:
            self.certs = make_test_certs(self.workdir)
            self.tls_port = free_port()
        self._write_config()
        if start:
            # free_port() cannot reserve a port: a test running in parallel may take it
            # before mosquitto binds. Then pick new ports (only here, restart() keeps them).
            for attempt in range(5):
                try:
                    self.start()
                    break
                except RuntimeError as e:
                    if "Address already in use" not in str(e) or attempt == 4:
                        raise
                    self.port = free_port()
                    if self.tls_port:
                        self.tls_port = free_port()
                    self._write_config()

    def _write_config(self):
        extra = list(self._extra_lines)
        if self.tls_port:
            extra += ["listener %d 127.0.0.1" % self.tls_port,
                      "cafile %s" % self.certs["ca"],
                      "certfile %s" % self.certs["cert"],
                      "keyfile %s" % self.certs["key"]]
        with open(self.conf_file, "w") as f:
            f.write(make_broker_config(self.port, self.workdir, self.passwd_file,
                                       self.persist_dir, acl_path=self._acl_path,
                                       extra_lines=extra))

    def start(self):
        if self.proc is not None and self.proc.running():
            raise RuntimeError("broker already running")
        self.proc = Process([MOSQUITTO, "-c", self.conf_file], name="mosquitto")
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        # "running" is logged once every listener is bound; a port that accepts before
        # that may belong to someone else.
        try:
            self.proc.wait_for_line(r"mosquitto version \S+ running", self.timeout)
        except RigTimeout as e:
            if self.proc.running():
                self.proc.kill()
                raise
            # Most likely a port was taken between free_port() and bind.
            raise RuntimeError("mosquitto exited (%s): %s" % (self.proc.proc.returncode, e)) \
                from None
        wait_until(lambda: all(can_connect(p) for p in ports), self.timeout,
                   "mosquitto to accept connections on %s" % ports)
        return self

    def stop(self):
        """SIGTERM (mosquitto saves persistence), SIGKILL after the timeout. Returns rc."""
        if self.proc is None:
            return None
        rc = self.proc.stop(self.timeout)
        self.previous_output += self.proc.lines()
        wait_until(lambda: not can_connect(self.port), self.timeout,
                   "port %d to close after stopping mosquitto" % self.port)
        return rc

    def kill(self):
        """SIGKILL by pid: a crash, nothing saved."""
        if self.proc is None:
            return None
        rc = self.proc.kill()
        self.previous_output += self.proc.lines()
        return rc

    def restart(self):
        self.stop()
        return self.start()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def output(self):
        return "\n".join(self.previous_output + (self.proc.lines() if self.proc else []))

    def close(self):
        if self.proc is not None and self.proc.running():
            self.proc.stop(self.timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------------------------
# MQTT clients


class Message:
    __slots__ = ("topic", "payload", "qos", "retain", "time")

    def __init__(self, topic, payload, qos, retain):
        self.topic, self.payload, self.qos, self.retain = topic, payload, qos, retain
        self.time = time.monotonic()

    def json(self):
        return json.loads(self.payload.decode("utf-8"))

    def __repr__(self):
        return "Message(%r, %r, qos=%d, retain=%s)" % (self.topic, self.payload[:80], self.qos,
                                                        self.retain)


_client_seq = [0]


class MqttClient:
    """A paho-mqtt client (MQTT 3.1.1, clean session) whose network loop runs in a thread.
    Collects every message it receives; all waits have deadlines.

        c = MqttClient(broker, GATEWAY_USER, GATEWAY_PASSWORD)   # raises unless CONNACK 0
        c.publish("energy/dev1/data", b"{}", qos=1)             # waits for PUBACK
        rc = MqttClient.connect_rc(broker, None, None)          # 5 = not authorised
    """

    def __init__(self, broker, username, password, client_id=None, connect=True,
                 timeout=DEFAULT_TIMEOUT, will=None):
        _client_seq[0] += 1
        self.broker = broker
        self.timeout = timeout
        self.client_id = client_id or "edsrig-%d-%d" % (os.getpid(), _client_seq[0])
        self._cond = threading.Condition()
        self._messages = []
        self._connack = None
        self._disconnected = False
        self._subacks = {}
        self.client = mqtt.Client(client_id=self.client_id, clean_session=True,
                                  protocol=mqtt.MQTTv311)
        if username is not None:
            self.client.username_pw_set(username, password)
        if will:
            self.client.will_set(*will)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self._started = False
        if connect:
            rc = self.connect()
            if rc != 0:
                self.close()
                raise AssertionError("%s: CONNACK %d (%s) as %r" % (
                    self.client_id, rc, mqtt.connack_string(rc), username))

    # paho callbacks run on paho's thread
    def _on_connect(self, client, userdata, flags, rc):
        with self._cond:
            self._connack = rc
            self._cond.notify_all()

    def _on_disconnect(self, client, userdata, rc):
        with self._cond:
            self._disconnected = True
            self._cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self._cond:
            self._messages.append(Message(msg.topic, bytes(msg.payload), msg.qos, msg.retain))
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, granted_qos):
        with self._cond:
            self._subacks[mid] = granted_qos
            self._cond.notify_all()

    def connect(self):
        """Connects and waits for CONNACK (or the broker closing). Returns the CONNACK code
        (0 = accepted, 5 = not authorised), or -1 if the connection closed without one."""
        self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        self._started = True
        with self._cond:
            _wait_cond(self._cond, lambda: self._connack is not None or self._disconnected,
                       self.timeout, "CONNACK for %s" % self.client_id)
            return self._connack if self._connack is not None else -1

    @classmethod
    def connect_rc(cls, broker, username, password, timeout=DEFAULT_TIMEOUT):
        """CONNACK code for a connection with these credentials (None = anonymous)."""
        c = cls(broker, username, password, connect=False, timeout=timeout)
        try:
            return c.connect()
        finally:
            c.close()

    def subscribe(self, topic, qos=1):
        """Subscribes and waits for SUBACK; returns the granted QoS (128 = refused)."""
        rc, mid = self.client.subscribe(topic, qos)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise AssertionError("subscribe %s: %s" % (topic, mqtt.error_string(rc)))
        with self._cond:
            _wait_cond(self._cond, lambda: mid in self._subacks, self.timeout,
                       "SUBACK for %s" % topic)
            return self._subacks[mid][0]

    def publish(self, topic, payload, qos=1, retain=False, wait=True):
        """Publishes; with wait, waits until paho reports it sent (QoS 0) or acknowledged."""
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload, separators=(",", ":"))
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise AssertionError("publish %s: %s" % (topic, mqtt.error_string(info.rc)))
        if wait:
            info.wait_for_publish(self.timeout)
            if not info.is_published():
                raise RigTimeout("publish to %s not acknowledged within %.1f s" % (
                    topic, self.timeout))
        return info

    def messages(self, topic=None):
        """Snapshot of messages received so far, all or for one topic, in arrival order."""
        with self._cond:
            return [m for m in self._messages if topic is None or m.topic == topic]

    def by_topic(self):
        """Snapshot: {topic: [Message, ...]}."""
        out = {}
        with self._cond:
            for m in self._messages:
                out.setdefault(m.topic, []).append(m)
        return out

    def wait_for(self, predicate, timeout=None, what="messages"):
        """Waits until predicate(messages) is true, where messages is the list of Message
        received so far; returns the predicate's value."""
        result = []

        def check():
            v = predicate(list(self._messages))
            if v:
                result.append(v)
            return bool(v)

        with self._cond:
            try:
                _wait_cond(self._cond, check, self.timeout if timeout is None else timeout, what)
            except RigTimeout as e:
                raise RigTimeout("%s; received: %r" % (e, self._messages[-20:])) from None
        return result[0]

    def wait_for_message(self, topic, timeout=None, match=None):
        """First message on topic (for which match(msg) is true, if given)."""
        return self.wait_for(
            lambda ms: next((m for m in ms if m.topic == topic and (match is None or match(m))),
                            None), timeout, "a message on %s" % topic)

    def wait_for_count(self, topic, count, timeout=None):
        """The first `count` messages on topic."""
        return self.wait_for(
            lambda ms: [m for m in ms if m.topic == topic][:count]
            if sum(1 for m in ms if m.topic == topic) >= count else None,
            timeout, "%d messages on %s" % (count, topic))

    def clear(self):
        with self._cond:
            self._messages.clear()

    def close(self):
        if self._started:
            try:
                self.client.disconnect()
            finally:
                self.client.loop_stop()
                self._started = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Subscriber(MqttClient):
    """Logged in as `reader` (by default), subscribed (SUBACK received) to topics before the
    constructor returns: Subscriber(broker, "energy/#")."""

    def __init__(self, broker, topics="energy/#", qos=1, username=READER_USER,
                 password=READER_PASSWORD, **kw):
        super().__init__(broker, username, password, **kw)
        if isinstance(topics, str):
            topics = [topics]
        for t in topics:
            granted = self.subscribe(t, qos)
            if granted not in (0, 1, 2):
                self.close()
                raise AssertionError("subscription to %s refused (%d)" % (t, granted))


# --------------------------------------------------------------------------------------------
# EDS line protocol


class ConnectionClosed(AssertionError):
    """The peer closed the connection while a line was expected."""


class LineClient:
    """A client of the EDS line protocol: one JSON object per line over TCP (or TLS with an
    ssl.SSLContext).

        c = LineClient(port)
        c.send_json({"type": "hello", ...})
        reply = c.recv_json(timeout=5)     # dict; raises RigTimeout / ConnectionClosed
        c.send_raw(b"not json\\n")
        c.wait_closed(timeout=5)            # the gateway hung up; returns lines seen before
    """

    def __init__(self, port, host="127.0.0.1", timeout=DEFAULT_TIMEOUT, ssl_context=None,
                 server_hostname=None):
        self.timeout = timeout
        sock = socket.create_connection((host, port), timeout=timeout)
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_hostname=server_hostname)
        self.sock = sock
        self.buf = b""
        self.closed = False  # the peer closed (EOF or reset seen)

    def send_raw(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def send_json(self, obj):
        """Sends obj as compact JSON plus a newline."""
        self.send_raw(json.dumps(obj, separators=(",", ":")).encode("utf-8") + b"\n")

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
        self.buf += data
        return True

    def recv_line(self, timeout=None):
        """Next line as bytes without the newline."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line, self.buf = self.buf[:nl], self.buf[nl + 1:]
                return line
            if self.closed:
                raise ConnectionClosed("connection closed by peer (pending bytes: %r)" %
                                       self.buf[:200])
            if not self._fill(deadline):
                raise RigTimeout("no line received within %.1f s (pending bytes: %r)" % (
                    self.timeout if timeout is None else timeout, self.buf[:200]))

    def recv_json(self, timeout=None):
        """Next line parsed as JSON."""
        line = self.recv_line(timeout)
        try:
            return json.loads(line.decode("utf-8"))
        except ValueError as e:
            raise AssertionError("received a line that is not JSON: %r (%s)" % (line, e)) from None

    def recv_until(self, predicate, timeout=None, what="a matching message"):
        """Receives JSON objects until predicate(obj) is true; returns (obj, skipped list)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        skipped = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RigTimeout("timed out waiting for %s; received: %r" % (what, skipped[-20:]))
            obj = self.recv_json(remaining)
            if predicate(obj):
                return obj, skipped
            skipped.append(obj)

    def wait_closed(self, timeout=None):
        """Waits until the peer closes; returns the JSON objects (or raw bytes of lines that
        are not JSON) received before. Raises RigTimeout if it stays open."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.closed:
            if not self._fill(deadline):
                raise RigTimeout("connection still open after %.1f s" % (
                    self.timeout if timeout is None else timeout))
        out = []
        lines = self.buf.split(b"\n")
        self.buf = lines.pop()
        for line in lines:
            try:
                out.append(json.loads(line.decode("utf-8")))
            except ValueError:
                out.append(line)
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------------------------
# Command line: a broker for tests written in C.


def _serve_broker():
    """`python3 edsrig.py broker [--tls]`: starts a Broker, prints "READY <port> <pid>" (with
    --tls: "READY <port> <pid> <tls_port> <cafile>"), then obeys
    one command per stdin line and answers "OK <pid>" (or "ERR <text>"):
      stop | start | restart | kill (SIGKILL) | pause (SIGSTOP) | resume (SIGCONT)
      kick CLIENT_ID (connect and leave with that client id, so the broker drops the holder)
    Stops the broker and exits at EOF on stdin."""
    import sys
    broker = Broker(tls="--tls" in sys.argv[2:])
    try:
        if broker.tls_port:
            print("READY %d %d %d %s" % (broker.port, broker.pid, broker.tls_port,
                                         broker.certs["ca"]), flush=True)
        else:
            print("READY %d %d" % (broker.port, broker.pid), flush=True)
        for line in sys.stdin:
            cmd = line.strip()
            if not cmd:
                continue
            try:
                if cmd == "stop":
                    broker.stop()
                elif cmd == "start":
                    broker.start()
                elif cmd == "restart":
                    broker.restart()
                elif cmd == "kill":
                    broker.kill()
                elif cmd == "pause":
                    broker.proc.signal(signal.SIGSTOP)
                elif cmd == "resume":
                    broker.proc.signal(signal.SIGCONT)
                elif cmd.startswith("kick "):
                    # a client with the same id takes the session over: the broker drops the
                    # other one
                    MqttClient(broker, READER_USER, READER_PASSWORD, client_id=cmd[5:]).close()
                else:
                    raise ValueError("unknown command %r" % cmd)
                print("OK %d" % broker.pid, flush=True)
            except Exception as e:  # report to the C side, keep serving
                print("ERR %s" % str(e).replace("\n", " | "), flush=True)
    finally:
        if broker.proc is not None:
            broker.proc.signal(signal.SIGCONT)
        broker.close()


if __name__ == "__main__":
    import sys
    if sys.argv[1:2] == ["broker"] and set(sys.argv[2:]) <= {"--tls"}:
        _serve_broker()
    else:
        sys.exit("usage: %s broker [--tls]" % sys.argv[0])
