"""faultrig: a small network on one machine, and faults to throw at it.

The Pi (broker + gateway + a counting subscriber) gets its own network
namespace with a fixed address, each agent another, all joined by a bridge
in a third namespace. Nothing touches the host's own network: every address
lives inside namespaces this rig creates and deletes. Needs root and
`ip netns`; without them, `available()` says why and tests skip.

Faults: packet loss and black holes with nftables in the Pi's input chain
(only for traffic from the bridge, so the broker on the Pi's loopback is
untouched), link cuts (`ip link set down`), latency and stalls through
stallproxy.py in the path, SIGKILL and restart of the gateway, a restart of
mosquitto, SIGKILL of an agent and a restart on its spool.

Each scenario counts every record by (device, n) where n is a unique
number inside the record, and reports sent, acked, delivered, lost,
duplicated.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import edsrig  # noqa: E402
from edsrig import (GATEWAY_PASSWORD, GATEWAY_USER, READER_PASSWORD, READER_USER,  # noqa: E402
                    Process, bin_path, make_broker_config, make_password_file, source_path,
                    wait_until)

PI_ADDR = "10.77.0.1"
BROKER_PORT = 1883  # inside the Pi's namespace, so a fixed port is free by construction
GATEWAY_PORT = 5883
PROXY_PORT = 5884
SCHEMA = source_path("schemas", "energy.json")


def available():
    """None when the rig can run here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "not root: network namespaces need CAP_SYS_ADMIN"
    if not shutil.which("ip"):
        return "iproute2 (ip) is not installed"
    if not shutil.which("nft"):
        return "nftables (nft) is not installed"
    probe = "edsprobe%d" % os.getpid()
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return "cannot create a network namespace: %s" % r.stderr.strip()
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def sh(*argv, ns=None, check=True):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + [str(a) for a in argv]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(cmd), r.stderr.strip()))
    return r


class Net:
    """Namespaces: <p>sw (bridge), <p>pi (10.77.0.1), <p>a1.. (10.77.0.11..)."""

    def __init__(self, n_agents):
        self.prefix = "edsf%d" % os.getpid()
        self.sw = self.prefix + "sw"
        self.pi = self.prefix + "pi"
        self.agents = [self.prefix + "a%d" % (i + 1) for i in range(n_agents)]
        self.created = []
        try:
            self._build()
        except Exception:
            self.close()
            raise

    def _add_ns(self, name):
        sh("ip", "netns", "add", name)
        self.created.append(name)
        sh("ip", "link", "set", "lo", "up", ns=name)

    def _attach(self, ns, ifname, addr):
        """veth pair: ifname inside ns, its peer on the bridge."""
        peer = "v" + ns[-6:]
        sh("ip", "link", "add", ifname, "netns", ns, "type", "veth", "peer", "name", peer,
           "netns", self.sw)
        sh("ip", "link", "set", peer, "master", "br0", "up", ns=self.sw)
        sh("ip", "addr", "add", addr + "/24", "dev", ifname, ns=ns)
        sh("ip", "link", "set", ifname, "up", ns=ns)

    def _build(self):
        self._add_ns(self.sw)
        sh("ip", "link", "add", "br0", "type", "bridge", ns=self.sw)
        sh("ip", "link", "set", "br0", "up", ns=self.sw)
        self._add_ns(self.pi)
        self._attach(self.pi, "pi0", PI_ADDR)
        for i, ns in enumerate(self.agents):
            self._add_ns(ns)
            self._attach(ns, "eth0", "10.77.0.%d" % (11 + i))
        sh("nft", "add", "table", "inet", "fault", ns=self.pi)
        sh("nft", "add", "chain", "inet", "fault", "input",
           "{ type filter hook input priority 0; policy accept; }", ns=self.pi)

    def prefix_argv(self, ns):
        return ["ip", "netns", "exec", ns]

    # faults ----------------------------------------------------------------
    def drop_percent(self, pct):
        sh("nft", "add", "rule", "inet", "fault", "input", "iifname", "pi0", "numgen", "random",
           "mod", "100", "<", str(pct), "drop", ns=self.pi)

    def blackhole(self):
        sh("nft", "add", "rule", "inet", "fault", "input", "iifname", "pi0", "drop", ns=self.pi)

    def heal(self):
        sh("nft", "flush", "chain", "inet", "fault", "input", ns=self.pi)

    def link(self, up):
        sh("ip", "link", "set", "pi0", "up" if up else "down", ns=self.pi)

    def close(self):
        for ns in reversed(self.created):
            sh("ip", "netns", "del", ns, check=False)
        self.created = []


def record(n):
    return {"timestamp": "2026-11-24T10:%02d:%02dZ" % (n // 60 % 60, n % 60),
            "day-ahead-price": 50.0 + (n % 100) / 10.0, "power_factor": 0.95, "n": n}


class Pi:
    """Broker, counting subscriber and gateway inside the Pi namespace."""

    def __init__(self, net, workdir, devices, mqtt_version="5"):
        self.net = net
        self.workdir = workdir
        self.devices = devices
        self.broker = self.gateway = self.sub = None
        self.passwd = os.path.join(workdir, "broker.passwd")
        make_password_file(self.passwd, {GATEWAY_USER: GATEWAY_PASSWORD,
                                         READER_USER: READER_PASSWORD})
        persist = os.path.join(workdir, "persist")
        os.makedirs(persist, exist_ok=True)
        self.broker_conf = os.path.join(workdir, "mosquitto.conf")
        with open(self.broker_conf, "w") as f:
            f.write(make_broker_config(BROKER_PORT, workdir, self.passwd, persist))
        self.dev_passwd = os.path.join(workdir, "devices.passwd")
        make_password_file(self.dev_passwd, devices)
        os.chmod(self.dev_passwd, 0o600)
        bpw = os.path.join(workdir, "broker-password")
        with open(bpw, "w") as f:
            f.write(GATEWAY_PASSWORD + "\n")
        self.gw_conf = os.path.join(workdir, "gateway.conf")
        with open(self.gw_conf, "w") as f:
            f.write("listener %d\n" % GATEWAY_PORT)
            f.write("broker_host 127.0.0.1\nbroker_port %d\n" % BROKER_PORT)
            f.write("broker_username %s\nbroker_password_file %s\n" % (GATEWAY_USER, bpw))
            f.write("schema %s\npassword_file %s\n" % (SCHEMA, self.dev_passwd))
            f.write("state_dir %s\n" % os.path.join(workdir, "gw-state"))
            f.write("idle_timeout 30\nstats_interval 0\nshutdown_timeout 5\n")
            # Exactly once: QoS 2 with the gateway's persistent session (docs/gateway.md).
            f.write("qos 2\nbroker_receive_maximum 100\n")
            # The broker link at either MQTT version (5 takes the receive maximum from
            # the broker's CONNACK; broker_receive_maximum applies at 3.1.1).
            f.write("mqtt_version %s\n" % mqtt_version)
        self.lock = threading.Lock()
        self.seen = {}  # (device, n) -> count
        self.total = 0

    def start_broker(self):
        self.broker = Process(self.net.prefix_argv(self.net.pi) +
                              ["/usr/sbin/mosquitto", "-c", self.broker_conf], name="mosquitto")
        self.broker.wait_for_line(r"mosquitto version .* running", timeout=10)

    def stop_broker(self):
        rc = self.broker.stop()
        return rc

    def start_subscriber(self):
        # A persistent session (-c) keeps messages across a broker restart; QoS 2 makes the
        # broker's leg to this counter exactly once too, so every extra copy it counts is
        # one the gateway published twice.
        self.sub = Process(self.net.prefix_argv(self.net.pi) + [
            "mosquitto_sub", "-h", "127.0.0.1", "-p", str(BROKER_PORT), "-u", READER_USER,
            "-P", READER_PASSWORD, "-q", "2", "-c", "-i", "eds-fault-counter", "-v",
            "-t", "energy/+/data"], name="subscriber")
        threading.Thread(target=self._count, daemon=True).start()

    def _count(self):
        done = 0
        while True:
            lines = self.sub.lines("stdout")
            for text in lines[done:]:
                topic, _, payload = text.partition(" ")
                try:
                    n = json.loads(payload)["n"]
                except (ValueError, KeyError, TypeError):
                    continue
                device = topic.split("/")[1]
                with self.lock:
                    self.seen[(device, n)] = self.seen.get((device, n), 0) + 1
                    self.total += 1
            done = len(lines)
            if not self.sub.running() and done == len(self.sub.lines("stdout")):
                return
            time.sleep(0.02)  # polling the collected lines, not waiting for a result

    def delivered(self, device=None):
        with self.lock:
            return sum(1 for (d, _n) in self.seen if device is None or d == device)

    def start_gateway(self):
        self.gateway = Process(self.net.prefix_argv(self.net.pi) +
                               [bin_path("eds-gateway"), "-c", self.gw_conf], name="gateway")
        self.gateway.wait_for_line(r"connected to the broker", timeout=15)

    def close(self):
        for p in (self.gateway, self.sub, self.broker):
            if p is not None and p.running():
                p.kill()


class Agent:
    """eds-agent in its own namespace, fed records {..., "n": i} on stdin."""

    def __init__(self, net, ns, device, password, workdir, port=GATEWAY_PORT, extra=()):
        self.net, self.ns, self.device, self.workdir = net, ns, device, workdir
        self.pwfile = os.path.join(workdir, device + ".pw")
        with open(self.pwfile, "w") as f:
            f.write(password + "\n")
        os.chmod(self.pwfile, 0o600)
        self.spool = os.path.join(workdir, device + ".spool")
        self.port = port
        self.extra = list(extra)
        self.proc = None
        self.sent = 0
        self.summaries = []

    def argv(self):
        return self.net.prefix_argv(self.ns) + [
            bin_path("eds-agent"), "--gateway", "%s:%d" % (PI_ADDR, self.port),
            "--device", self.device, "--password-file", self.pwfile, "--schema", SCHEMA,
            "--spool", self.spool, "--ping-interval", "1", "--ping-timeout", "2",
            "--reconnect-min", "0.2", "--reconnect-max", "1", "--connect-timeout", "3",
            "--drain-timeout", "60"] + self.extra

    def start(self, stdin=subprocess.PIPE):
        self.proc = Process(self.argv(), name=self.device, stdin=stdin)
        return self.proc

    def feed(self, first, count, rate):
        """Writes records first..first+count-1 at `rate` per second, then closes stdin."""
        pipe = self.proc.proc.stdin
        t0 = time.monotonic()
        try:
            for i in range(count):
                due = t0 + i / float(rate)
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing the producer, not waiting for a result
                pipe.write((json.dumps(record(first + i)) + "\n").encode())
                pipe.flush()
                self.sent += 1
        except BrokenPipeError:
            pass
        finally:
            try:
                pipe.close()
            except BrokenPipeError:
                pass

    def wait(self, timeout):
        rc = self.proc.wait(timeout)
        lines = [l for l in self.proc.lines("stderr") if "records:" in l and "accepted" in l]
        if lines:
            self.summaries.append(lines[-1])  # one closing summary per run
        return rc

    def acked(self):
        """Records confirmed by the gateway (by ack or by a welcome's last_seq): accepted
        minus still pending, from the closing summary line of the agent's last run."""
        if not self.summaries:
            return 0
        m = re.search(r"(\d+) accepted.* (\d+) pending", self.summaries[-1])
        return int(m.group(1)) - int(m.group(2)) if m else 0


class Result:
    def __init__(self, name, sent, acked, delivered, lost, duplicated, seconds, note=""):
        self.name, self.sent, self.acked = name, sent, acked
        self.delivered, self.lost, self.duplicated = delivered, lost, duplicated
        self.seconds, self.note = seconds, note

    def line(self):
        return "%-16s sent %6d  acked %6d  delivered %6d  lost %4d  duplicated %4d  (%.1f s)%s" % (
            self.name, self.sent, self.acked, self.delivered, self.lost, self.duplicated,
            self.seconds, "  " + self.note if self.note else "")

    @property
    def ok(self):
        # Every scenario, gateway SIGKILL and broker restart included: exactly once.
        return not self.lost and not self.duplicated and self.sent > 0 and \
            self.acked == self.sent


def count_result(name, pi, expected, sent, acked, t0, note=""):
    """expected: {device: set of n} that must each arrive exactly once."""
    with pi.lock:
        seen = dict(pi.seen)
    lost = sum(1 for d, ns in expected.items() for n in ns if (d, n) not in seen)
    dup = sum(c - 1 for c in seen.values() if c > 1)
    delivered = sum(1 for d, ns in expected.items() for n in ns if (d, n) in seen)
    return Result(name, sent, acked, delivered, lost, dup, time.monotonic() - t0, note)


SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__.replace("sc_", "")] = fn
    return fn


class Rig:
    """One scenario's world: net + Pi + agents, torn down by close()."""

    def __init__(self, n_agents=3, mqtt_version="5"):
        self.workdir = tempfile.mkdtemp(prefix="eds-fault-")
        self.net = Net(n_agents)
        self.devices = {"fault-a%d" % (i + 1): "pw-fault-%d" % (i + 1) for i in range(n_agents)}
        self.pi = Pi(self.net, self.workdir, self.devices, mqtt_version)
        self.pi.start_broker()
        self.pi.start_subscriber()
        self.pi.start_gateway()
        self.proxy = None
        self.agents = [Agent(self.net, ns, dev, pw, self.workdir)
                       for ns, (dev, pw) in zip(self.net.agents, self.devices.items())]

    def start_proxy(self, delay_ms):
        self.proxy = Process(self.net.prefix_argv(self.net.pi) + [
            sys.executable, os.path.join(HERE, "stallproxy.py"),
            "%s:%d" % (PI_ADDR, PROXY_PORT), "127.0.0.1:%d" % GATEWAY_PORT,
            "--delay-ms", str(delay_ms)], name="stallproxy")
        self.proxy.wait_for_line("READY", timeout=10)
        for a in self.agents:
            a.port = PROXY_PORT

    def run_live(self, name, records, rate, fault, timeout):
        """Feeds every agent `records` at `rate`/s; calls fault(self) once a third of all
        records were delivered; waits for every agent to drain and exit."""
        t0 = time.monotonic()
        for a in self.agents:
            a.start()
        feeders = [threading.Thread(target=a.feed, args=(1, records, rate), daemon=True)
                   for a in self.agents]
        for t in feeders:
            t.start()
        total = records * len(self.agents)
        note = ""
        if fault:
            wait_until(lambda: self.pi.delivered() >= total // 3, timeout=timeout,
                       what="a third of the records delivered before the fault")
            note = fault(self) or ""
        deadline = time.monotonic() + timeout
        for a in self.agents:
            rc = a.wait(max(1.0, deadline - time.monotonic()))
            if rc != 0:
                note += " agent %s exited %s" % (a.device, rc)
        # Everything acked must already be on the broker; give the subscriber its
        # deadline to see the last messages.
        expected = {a.device: set(range(1, records + 1)) for a in self.agents}
        try:
            wait_until(lambda: all((d, n) in self.pi.seen for d, ns in expected.items()
                                   for n in ns), timeout=10, what="all records delivered")
        except AssertionError:
            pass
        return count_result(name, self.pi, expected, sum(a.sent for a in self.agents),
                            sum(a.acked() for a in self.agents), t0, note.strip())

    def close(self):
        for a in self.agents:
            if a.proc is not None and a.proc.running():
                a.proc.kill()
        if self.proxy is not None and self.proxy.running():
            self.proxy.kill()
        self.pi.close()
        self.net.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def hold(seconds):
    """A fault's duration: the fault itself is what is being exercised."""
    time.sleep(seconds)


@scenario
def sc_baseline(rig, records, rate):
    return rig.run_live("baseline", records, rate, None, 60)


@scenario
def sc_loss5(rig, records, rate):
    rig.net.drop_percent(5)
    try:
        return rig.run_live("loss 5%", records, rate, None, 90)
    finally:
        rig.net.heal()


@scenario
def sc_blackhole(rig, records, rate):
    def fault(r):
        r.net.blackhole()
        hold(3)
        r.net.heal()
        return "black hole 3 s"
    return rig.run_live("black hole", records, rate, fault, 90)


@scenario
def sc_linkcut(rig, records, rate):
    def fault(r):
        r.net.link(False)
        hold(3)
        r.net.link(True)
        return "link down 3 s"
    return rig.run_live("link cut", records, rate, fault, 90)


@scenario
def sc_stall(rig, records, rate):
    rig.start_proxy(delay_ms=20)

    def fault(r):
        r.proxy.signal(signal.SIGUSR1)
        hold(3)
        r.proxy.signal(signal.SIGUSR2)
        return "20 ms latency, stalled 3 s"
    return rig.run_live("proxy stall", records, rate, fault, 90)


@scenario
def sc_gateway_kill(rig, records, rate):
    def fault(r):
        r.pi.gateway.kill()
        r.pi.start_gateway()
        return "gateway SIGKILL + restart"
    return rig.run_live("gateway kill", records, rate, fault, 90)


@scenario
def sc_broker_restart(rig, records, rate):
    def fault(r):
        r.pi.stop_broker()
        hold(1)
        r.pi.start_broker()
        return "mosquitto stopped 1 s, restarted"
    return rig.run_live("broker restart", records, rate, fault, 90)


@scenario
def sc_agent_kill(rig, records, rate):
    """The agent spools all records while the gateway is unreachable, is killed with
    SIGKILL in the middle of delivering them, and restarted on its spool."""
    t0 = time.monotonic()
    agent = rig.agents[0]
    data = os.path.join(rig.workdir, "records.ndjson")
    with open(data, "w") as f:
        for n in range(1, records + 1):
            f.write(json.dumps(record(n)) + "\n")
    agent.sent = records
    rig.net.blackhole()
    # Phase 1: everything goes into the spool; the agent cannot deliver, gives up
    # after its drain timeout and exits non-zero, keeping the spool.
    agent.extra = ["--drain-timeout", "2"]
    with open(data, "rb") as f:
        agent.start(stdin=f)
    rc1 = agent.wait(30)
    agent.extra = []
    accepted = re.search(r"(\d+) accepted", agent.summaries[-1] if agent.summaries else "")
    rig.net.heal()
    # Phase 2: deliver from the spool; SIGKILL half-way.
    agent.start(stdin=subprocess.DEVNULL)
    wait_until(lambda: rig.pi.delivered(agent.device) >= records // 2, timeout=60,
               what="half the spooled records delivered")
    agent.proc.kill()
    # Phase 3: restart on the spool; it delivers the rest and exits 0.
    agent.start(stdin=subprocess.DEVNULL)
    rc3 = agent.wait(60)
    expected = {agent.device: set(range(1, records + 1))}
    try:
        wait_until(lambda: all((agent.device, n) in rig.pi.seen for n in expected[agent.device]),
                   timeout=10, what="all spooled records delivered")
    except AssertionError:
        pass
    note = "SIGKILL mid-delivery, restarted on spool (exit codes %s, %s)" % (rc1, rc3)
    if not accepted or int(accepted.group(1)) != records:
        note += "; phase 1 did not spool all %d records" % records
    # The restarted agent accepted nothing new: what it left pending is what is unacked.
    pending = re.search(r"(\d+) pending", agent.summaries[-1] if agent.summaries else "")
    acked = records - int(pending.group(1)) if pending else 0
    return count_result("agent kill", rig.pi, expected, records, acked, t0, note)


def run(names, records, rate, out=sys.stdout, mqtt_version="5"):
    results = []
    for name in names:
        rig = Rig(mqtt_version=mqtt_version)
        try:
            res = SCENARIOS[name](rig, records, rate)
        finally:
            rig.close()
        print("mqtt %-5s %s" % (mqtt_version, res.line()), file=out, flush=True)
        results.append(res)
    return results


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="EDS fault-injection rig (needs root).")
    ap.add_argument("scenarios", nargs="*", default=list(SCENARIOS),
                    help="which: %s (default all)" % ", ".join(SCENARIOS))
    ap.add_argument("--records", type=int, default=2000, help="records per agent")
    ap.add_argument("--rate", type=float, default=200, help="records per second per agent")
    ap.add_argument("--mqtt-version", default="5", choices=["5", "3.1.1"],
                    help="the gateway's broker link (default 5)")
    args = ap.parse_args()
    why = available()
    if why:
        print("fault rig not available: %s" % why)
        sys.exit(77)
    res = run(args.scenarios, args.records, args.rate, mqtt_version=args.mqtt_version)
    bad = [r for r in res if not r.ok]
    print("%d scenarios, %d with loss or duplicates" % (len(res), len(bad)))
    sys.exit(1 if bad else 0)
