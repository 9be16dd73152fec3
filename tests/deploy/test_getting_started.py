"""docs/getting-started.md, followed end to end on this machine.

The same steps and files as the guide, with three differences only: the
"Pi" and the two "myRIOs" are folders under a temp dir (every absolute path
of the guide is mapped into them), addresses are 127.0.0.1 with free ports
instead of eds-pi.local and the fixed ports, and the agent is this build's
eds-agent instead of the cross-built one. Installation is `cmake --install`
of the components the packages hold (tests/deploy/test_package.py checks the
.deb itself), the gateway runs with the ExecStart line of the packaged
systemd unit, and the agents are started and stopped by the packaged
/etc/init.d/eds-agent script. The test asserts that records from both
myRIOs arrive on the broker, and that stopping the agents shows them offline.

TLS: the gateway's TLS listener is configured and checked as the guide says
when scripts/make-certs.sh is there (a TLS client with myrio-01's
certificate must get `welcome`). The agents connect over TLS when eds-agent
supports it; otherwise that part is skipped with a message and they use the
plain listener.
"""

import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import edsrig  # noqa: E402
from edsrig import LineClient, Process, bin_path, can_connect, free_port, source_path  # noqa
from edsrig import wait_until  # noqa: E402

BUILD_DIR = os.environ.get("EDS_BUILD_DIR") or source_path("build")
DEVICES = ["myrio-01", "myrio-02"]


def run(argv, env=None, **kw):
    kw.setdefault("timeout", 60)
    full_env = dict(os.environ)
    full_env.update(env or {})
    out = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=full_env,
                         **kw)
    if out.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (" ".join(map(str, argv)), out.returncode,
                                                       out.stdout, out.stderr))
    return out.stdout


def agent_supports_tls():
    """(True, "") if eds-agent has the guide's TLS options and TLS built in."""
    text = run([bin_path("eds-agent"), "--help"])
    for opt in ["--tls", "--cafile", "--cert", "--key", "--server-name"]:
        if not re.search(r"^\s*%s\b" % re.escape(opt), text, re.M):
            return False, "eds-agent --help has no %s" % opt
    # Options present; is TLS built in? The agent refuses --tls at start if not.
    probe = Process([bin_path("eds-agent"), "--tls", "--gateway", "127.0.0.1:%d" % free_port(),
                     "--device", "tls-probe", "--count", "1"], name="tls-probe")
    try:
        probe.wait_for_line(r"TLS is not built|not built into", timeout=3)
        return False, "eds-agent says TLS is not built in"
    except AssertionError:
        pass
    finally:
        probe.stop()
    return True, ""


class GettingStarted(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="eds-guide-")
        self.pi = os.path.join(self.tmp, "pi")
        self.admin = os.path.join(self.tmp, "admin")
        self.procs = []
        self.agents_started = []  # (init script, env) to stop in tearDown

    def tearDown(self):
        for script, env in self.agents_started:
            subprocess.run(["/bin/sh", script, "stop"], env=env, capture_output=True, timeout=30)
        for p in reversed(self.procs):
            p.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def on_pi(self, path):
        """A path of the guide on the Pi, mapped into the temp folder."""
        return os.path.join(self.pi, path.lstrip("/"))

    def pi_text(self, text):
        for prefix in ["/etc/eds/", "/etc/mosquitto/", "/usr/share/eds/", "/usr/sbin/",
                       "/var/lib/eds-gateway", "/var/lib/mosquitto/"]:
            text = text.replace(prefix, self.on_pi(prefix) + ("/" if prefix.endswith("/")
                                                               else ""))
        return text

    def start(self, argv, name):
        p = Process(argv, name=name)
        self.procs.append(p)
        return p

    def test_guide(self):
        user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        have_certs = os.path.isfile(source_path("scripts", "make-certs.sh"))
        agent_tls, why = agent_supports_tls()
        if not have_certs:
            agent_tls, why = False, "scripts/make-certs.sh is missing"
        # The guide sets the myRIOs up with mutual TLS: both pieces ship with the project,
        # so their absence is a failure, not a reason to skip that part.
        self.assertTrue(have_certs, "scripts/make-certs.sh is missing")
        self.assertTrue(agent_tls, "eds-agent cannot do TLS: %s" % why)

        # -- 1. Packages: what the eds-gateway package installs, into the Pi folder.
        run(["cmake", "--install", BUILD_DIR, "--prefix", "/usr", "--component", "gateway"],
            env={"DESTDIR": self.pi})
        for f in ["/usr/sbin/eds-gateway", "/etc/eds/eds-gateway.conf",
                  "/lib/systemd/system/eds-gateway.service", "/usr/share/eds/schemas/energy.json"]:
            self.assertTrue(os.path.exists(self.on_pi(f)), f)

        # -- 2. The broker, from /usr/share/eds/broker-config.
        bc = self.on_pi("/usr/share/eds/broker-config")
        os.makedirs(self.on_pi("/etc/mosquitto/eds"))
        os.makedirs(self.on_pi("/etc/mosquitto/conf.d"))  # Debian's mosquitto package has it
        os.makedirs(self.on_pi("/var/lib/mosquitto"))
        shutil.copy(os.path.join(bc, "acl"), self.on_pi("/etc/mosquitto/eds/acl"))
        gw_pw, reader_pw = "gw-" + os.urandom(8).hex(), "rd-" + os.urandom(8).hex()
        run(["/bin/sh", os.path.join(bc, "make-users.sh"), self.on_pi("/etc/mosquitto/eds/passwd")],
            env={"EDS_GATEWAY_PASSWORD": gw_pw, "EDS_READER_PASSWORD": reader_pw})
        mqtt_port = free_port()
        with open(os.path.join(bc, "mosquitto.conf")) as f:
            conf = self.pi_text(f.read())
        self.assertIn("listener 1883 127.0.0.1\n", conf)
        conf = conf.replace("listener 1883 127.0.0.1\n", "listener %d 127.0.0.1\n" % mqtt_port)
        if os.geteuid() == 0:
            conf += "user root\n"  # as root mosquitto would become user mosquitto
        with open(self.on_pi("/etc/mosquitto/mosquitto.conf"), "w") as f:
            f.write(conf)
        broker = self.start([edsrig.MOSQUITTO, "-c", self.on_pi("/etc/mosquitto/mosquitto.conf")],
                            "mosquitto")
        wait_until(lambda: can_connect(mqtt_port) or not broker.running(), 10,
                   "mosquitto on %d" % mqtt_port)
        self.assertTrue(broker.running(), broker.output())
        with open(self.on_pi("/etc/eds/broker.pw"), "w") as f:
            f.write(gw_pw + "\n")
        os.chmod(self.on_pi("/etc/eds/broker.pw"), 0o640)

        # -- 3. Certificates (admin PC), installed on the Pi.
        tls_dir = os.path.join(self.admin, "eds-tls")
        if have_certs:
            run(["bash", source_path("scripts", "make-certs.sh"), "--host", "127.0.0.1",
                 tls_dir] + DEVICES, timeout=120)
            os.makedirs(self.on_pi("/etc/eds/tls"))
            for f in ["ca.crt", "gateway.crt", "gateway.key"]:
                shutil.copy(os.path.join(tls_dir, f), self.on_pi("/etc/eds/tls/" + f))

        # -- 4. Device passwords.
        devices_passwd = self.on_pi("/etc/eds/devices.passwd")
        passwords = {d: os.urandom(16).hex() for d in DEVICES}
        for i, d in enumerate(DEVICES):
            run(["mosquitto_passwd"] + (["-c"] if i == 0 else []) +
                ["-b", devices_passwd, d, passwords[d]])
        os.chmod(devices_passwd, 0o640)

        # -- 5. The gateway: the guide's edits of the example config.
        gw_port, tls_port = free_port(), free_port()
        conf_path = self.on_pi("/etc/eds/eds-gateway.conf")
        with open(conf_path) as f:
            lines = f.read().splitlines()
        out = []
        for line in lines:
            if line == "listener 5883":
                line = "listener %d 127.0.0.1" % gw_port
            elif line == "broker_port 1883":  # our broker's port instead of the standard one
                line = "broker_port %d" % mqtt_port
            elif have_certs and line == "#tls_listener 5884":
                line = "tls_listener %d 127.0.0.1" % tls_port
            elif have_certs and re.match(r"#(certfile|keyfile|cafile|require_certificate) ", line):
                line = line[1:]
            out.append(line)
        self.assertIn("listener %d 127.0.0.1" % gw_port, out, "the example has 'listener 5883'")
        if have_certs:
            self.assertIn("tls_listener %d 127.0.0.1" % tls_port, out)
            self.assertIn("require_certificate true", out)
        with open(conf_path, "w") as f:
            f.write(self.pi_text("\n".join(out) + "\n"))
        os.makedirs(self.on_pi("/var/lib/eds-gateway"))
        gateway_bin = self.on_pi("/usr/sbin/eds-gateway")
        self.assertEqual(run([gateway_bin, "-c", conf_path, "--check"]).strip(),
                         "eds-gateway: configuration OK")
        # Start it as the unit does: its ExecStart (which checks the config first).
        with open(self.on_pi("/lib/systemd/system/eds-gateway.service")) as f:
            unit = f.read().splitlines()
        exec_start = [ln.split("=", 1)[1] for ln in unit if ln.startswith("ExecStart=")]
        self.assertEqual(len(exec_start), 1)
        gateway = self.start(self.pi_text(exec_start[0]).split(), "eds-gateway")
        gateway.wait_for_line(r"listening on 127\.0\.0\.1 port %d" % gw_port, timeout=10)
        if have_certs:
            gateway.wait_for_line(r"listening on 127\.0\.0\.1 port %d" % tls_port, timeout=10)
        viewer = self.start(["mosquitto_sub", "-h", "127.0.0.1", "-p", mqtt_port, "-u", "reader",
                             "-P", reader_pw, "-v", "-t", "energy/#"], "viewer")
        try:
            viewer.wait_for_line(r'^energy/_gateway/status \{"online":true', timeout=15)
        except AssertionError:
            print("--- gateway:\n" + gateway.output()[-3000:])
            print("--- mosquitto:\n" + self.procs[0].output()[-3000:])
            raise

        if have_certs:
            # The TLS listener as an agent with myrio-01's certificate sees it.
            ctx = ssl.create_default_context(cafile=os.path.join(tls_dir, "ca.crt"))
            ctx.load_cert_chain(os.path.join(tls_dir, "devices", "myrio-01.crt"),
                                os.path.join(tls_dir, "devices", "myrio-01.key"))
            c = LineClient(tls_port, ssl_context=ctx, server_hostname="127.0.0.1")
            c.send_json({"type": "hello", "device": "myrio-01", "password": passwords["myrio-01"],
                         "stream": "guide-check", "proto": 1})
            self.assertEqual(c.recv_json()["type"], "welcome")
            c.sock.close()
            # Without a client certificate the handshake is refused.
            bare = ssl.create_default_context(cafile=os.path.join(tls_dir, "ca.crt"))
            c = None
            with self.assertRaises((ssl.SSLError, ConnectionError, edsrig.ConnectionClosed,
                                    socket.timeout, edsrig.RigTimeout)):
                try:
                    c = LineClient(tls_port, ssl_context=bare, server_hostname="127.0.0.1",
                                   timeout=5)
                    c.send_json({"type": "hello", "device": "myrio-01",
                                 "password": passwords["myrio-01"], "proto": 1})
                    c.recv_json()
                finally:
                    if c is not None:
                        c.sock.close()

        # -- 6 + 7. Each myRIO: the bundle of scripts/build-arm.sh --bundle is the agent
        # component installed under /usr/local with the config as .example; here
        # from this build instead of the cross build.
        for dev in DEVICES:
            root = os.path.join(self.tmp, dev)

            def m(path, root=root):
                return os.path.join(root, path.lstrip("/"))

            run(["cmake", "--install", BUILD_DIR, "--prefix", "/usr/local", "--component",
                 "agent"], env={"DESTDIR": root})
            os.rename(m("/etc/eds/eds-agent.conf"), m("/etc/eds/eds-agent.conf.example"))
            for d in ["/etc/eds/tls", "/etc/default", "/var/lib", "/var/log", "/var/run"]:
                os.makedirs(m(d), exist_ok=True)
            shutil.copy(m("/etc/eds/eds-agent.conf.example"), m("/etc/eds/eds-agent.conf"))
            shutil.copy(m("/usr/local/share/eds-agent/schemas/energy.json"),
                        m("/etc/eds/energy.json"))
            if have_certs:
                shutil.copy(os.path.join(tls_dir, "ca.crt"), m("/etc/eds/tls/ca.crt"))
                for ext in ["crt", "key"]:
                    shutil.copy(os.path.join(tls_dir, "devices", "%s.%s" % (dev, ext)),
                                m("/etc/eds/tls/%s.%s" % (dev, ext)))
                os.chmod(m("/etc/eds/tls/%s.key" % dev), 0o600)
            with open(m("/etc/eds/agent.pw"), "w") as f:
                f.write(passwords[dev] + "\n")
            os.chmod(m("/etc/eds/agent.pw"), 0o600)
            # The guide's edits of the example config.
            with open(m("/etc/eds/eds-agent.conf")) as f:
                conf = f.read()
            edits = {"device": dev}
            if agent_tls:
                edits.update({"gateway": "127.0.0.1:%d" % tls_port, "tls": "true",
                              "cafile": m("/etc/eds/tls/ca.crt"),
                              "cert": m("/etc/eds/tls/%s.crt" % dev),
                              "key": m("/etc/eds/tls/%s.key" % dev),
                              "server_name": "127.0.0.1"})
            else:
                edits["gateway"] = "127.0.0.1:%d" % gw_port
            # Two "myRIOs" share this machine: their LabVIEW ports must differ.
            edits.update({"tcp": str(free_port()), "udp": str(free_port()),
                          "cmd_udp": str(free_port())})
            lines = []
            for line in conf.splitlines():
                words = line.split()
                if words and words[0] in edits:
                    line = "%s %s" % (words[0], edits.pop(words[0]))
                lines.append(line)
            lines += ["%s %s" % kv for kv in edits.items()]  # the TLS lines, added
            lines.append("simulate 1")
            text = "\n".join(lines) + "\n"
            for p in ["/etc/eds/", "/var/lib/eds-agent"]:
                text = text.replace(" " + p, " " + m(p))
            with open(m("/etc/eds/eds-agent.conf"), "w") as f:
                f.write(text)
            with open(m("/etc/default/eds-agent"), "w") as f:
                f.write("DAEMON=%s\nCONF=%s\nRUNAS=%s\nSPOOL=%s\nLOGFILE=%s\nPIDFILE=%s\n" % (
                    m("/usr/local/bin/eds-agent"), m("/etc/eds/eds-agent.conf"), user,
                    m("/var/lib/eds-agent"), m("/var/log/eds-agent.log"),
                    m("/var/run/eds-agent.pid")))
            env = dict(os.environ, EDS_AGENT_DEFAULTS=m("/etc/default/eds-agent"))
            script = m("/etc/init.d/eds-agent")
            self.agents_started.append((script, env))
            out = subprocess.run(["/bin/sh", script, "start"], env=env, capture_output=True,
                                 text=True, timeout=30)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertRegex(out.stdout, r"eds-agent: started \(pid \d+, log ")
            status = subprocess.run(["/bin/sh", script, "status"], env=env, capture_output=True,
                                    text=True, timeout=30)
            self.assertEqual(status.returncode, 0)
            self.assertIn("running (pid", status.stdout)

        # -- 8. Check: both myRIOs online, records arriving.
        try:
            for dev in DEVICES:
                viewer.wait_for_line(r'^energy/%s/status \{"online":true' % dev, timeout=20)
                viewer.wait_for_line(r'^energy/%s/data \{"timestamp":' % dev, timeout=20)
        except AssertionError:
            for dev in DEVICES:
                log = os.path.join(self.tmp, dev, "var/log/eds-agent.log")
                if os.path.exists(log):
                    with open(log) as f:
                        print("--- %s:\n%s" % (log, f.read()[-3000:]))
            print("--- gateway:\n" + gateway.output()[-3000:])
            raise

        # Each agent reached the gateway on the port the guide says: TLS when it can.
        port = tls_port if agent_tls else gw_port
        for dev in DEVICES:
            with open(os.path.join(self.tmp, dev, "var/log/eds-agent.log")) as f:
                log = f.read()
            self.assertIn("connected to gateway 127.0.0.1:%d as %s" % (port, dev), log)
        if agent_tls:
            print("TLS: both agents connected to the TLS listener with their certificates")

        # Stopping an agent: its process ends and the device goes offline.
        for script, env in self.agents_started:
            with open(env["EDS_AGENT_DEFAULTS"]) as f:
                pidfile = re.search(r"^PIDFILE=(.*)$", f.read(), re.M).group(1)
            with open(pidfile) as f:
                pid = int(f.read())
            out = subprocess.run(["/bin/sh", script, "stop"], env=env, capture_output=True,
                                 text=True, timeout=30)
            self.assertIn("eds-agent: stopped", out.stdout)
            self.assertFalse(os.path.exists("/proc/%d" % pid) and
                             open("/proc/%d/stat" % pid).read().split()[2] != "Z",
                             "agent pid %d still running" % pid)
            status = subprocess.run(["/bin/sh", script, "status"], env=env, capture_output=True,
                                    text=True, timeout=30)
            self.assertEqual(status.returncode, 3, status.stdout)
        self.agents_started = []
        for dev in DEVICES:
            viewer.wait_for_line(r'^energy/%s/status \{"online":false' % dev, timeout=10)


if __name__ == "__main__":
    unittest.main(verbosity=2)
