"""The Debian package and the install rules.

Builds the eds-gateway package with CPack from this build folder (as
scripts/package.sh does, into a temp folder) and checks what an operator
relies on: where dpkg puts the binary, the config example (a conffile, not
readable by everyone), the systemd unit and the schemas; the maintainer
scripts; and that the packaged files work: the binary runs, the example
config passes --check once its paths exist, and systemd accepts the unit.
Also stages the agent component with `cmake --install` and checks the
NI Linux RT start-up script and config land in /etc.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from edsrig import source_path  # noqa: E402

BUILD_DIR = os.environ.get("EDS_BUILD_DIR") or source_path("build")


def run(argv, **kw):
    kw.setdefault("timeout", 120)
    out = subprocess.run(argv, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (" ".join(argv), out.returncode,
                                                       out.stdout, out.stderr))
    return out.stdout


class GatewayPackage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isfile(os.path.join(BUILD_DIR, "CPackConfig.cmake")):
            raise unittest.SkipTest("no CPackConfig.cmake in %s" % BUILD_DIR)
        cls.tmp = tempfile.mkdtemp(prefix="eds-package-")
        run(["cpack", "-G", "DEB", "--config", os.path.join(BUILD_DIR, "CPackConfig.cmake"),
             "-B", cls.tmp, "-D", "CPACK_COMPONENTS_ALL=gateway"], cwd=BUILD_DIR, timeout=150)
        debs = [f for f in os.listdir(cls.tmp) if f.endswith(".deb")]
        if len(debs) != 1:
            raise AssertionError("expected one .deb in %s, got %s" % (cls.tmp, debs))
        cls.deb = os.path.join(cls.tmp, debs[0])
        # "-rw-r----- root/root 1234 2026-11-24 10:00 ./etc/eds/eds-gateway.conf"
        cls.entries = {}
        for line in run(["dpkg-deb", "-c", cls.deb]).splitlines():
            fields = line.split(None, 5)
            cls.entries[fields[5].split(" -> ")[0].lstrip(".")] = fields[0]
        cls.root = os.path.join(cls.tmp, "root")
        run(["dpkg-deb", "-x", cls.deb, cls.root])
        cls.control = os.path.join(cls.tmp, "control")
        run(["dpkg-deb", "-e", cls.deb, cls.control])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def field(self, name):
        return run(["dpkg-deb", "-f", self.deb, name]).strip()

    def test_name_and_architecture(self):
        arch = run(["dpkg", "--print-architecture"]).strip()
        self.assertRegex(os.path.basename(self.deb), r"^eds-gateway_\d+\.\d+\.\d+_%s\.deb$" % arch)
        self.assertEqual(self.field("Package"), "eds-gateway")
        self.assertEqual(self.field("Architecture"), arch)
        depends = self.field("Depends")
        self.assertIn("libpaho-mqtt1.3", depends)
        self.assertIn("libcjson1", depends)
        self.assertIn("mosquitto", self.field("Recommends"))

    def test_contents_in_the_usual_places(self):
        for path in ["/usr/sbin/eds-gateway", "/usr/bin/eds-validate",
                     "/etc/eds/eds-gateway.conf", "/lib/systemd/system/eds-gateway.service",
                     "/usr/share/eds/schemas/energy.json",
                     "/usr/share/eds/broker-config/mosquitto.conf",
                     "/usr/share/eds/broker-config/acl",
                     "/usr/share/doc/eds-gateway/examples/eds-gateway.conf",
                     "/usr/share/doc/eds-gateway/README.md"]:
            self.assertIn(path, self.entries, "missing from the package")
        self.assertTrue(self.entries["/usr/sbin/eds-gateway"].startswith("-rwxr-xr-x"))
        # The config names password files: not world-readable.
        self.assertEqual(self.entries["/etc/eds/eds-gateway.conf"], "-rw-r-----")
        # The man page, where this build made one (help2man; not in sanitizer builds).
        if os.path.exists(os.path.join(BUILD_DIR, "man", "eds-gateway.8")):
            self.assertIn("/usr/share/man/man8/eds-gateway.8", self.entries)
            with open(os.path.join(self.root, "usr/share/man/man8/eds-gateway.8")) as f:
                page = f.read()
            self.assertIn("broker\\-password\\-file", page)  # an option, as roff writes it
        # The dashboard, where this build assembled it (scripts/build-dashboard.sh), where
        # broker-config/dashboard.conf's http_dir looks.
        self.assertIn("/usr/share/eds/broker-config/dashboard.conf", self.entries)
        if os.path.exists(os.path.join(BUILD_DIR, "dashboard", "index.html")):
            for f in ["index.html", "dashboard.js", "vendor/mqtt.min.js", "vendor/uPlot.iife.min.js"]:
                self.assertIn("/usr/share/eds/dashboard/" + f, self.entries)
            with open(os.path.join(self.root, "usr/share/eds/broker-config/dashboard.conf")) as f:
                self.assertIn("http_dir /usr/share/eds/dashboard", f.read())
        # The agent's files are in the other package.
        self.assertNotIn("/usr/bin/eds-agent", self.entries)

    def test_conffile_and_maintainer_scripts(self):
        with open(os.path.join(self.control, "conffiles")) as f:
            self.assertIn("/etc/eds/eds-gateway.conf", f.read().split())
        with open(os.path.join(self.control, "postinst")) as f:
            postinst = f.read()
        self.assertIn("adduser --system", postinst)
        self.assertIn("chown root:eds-gateway /etc/eds/eds-gateway.conf", postinst)
        for script in ["postinst", "prerm", "postrm"]:
            path = os.path.join(self.control, script)
            self.assertTrue(os.access(path, os.X_OK), script)
            run(["sh", "-n", path])

    def test_postinst_creates_the_user_and_protects_the_config(self):
        """postinst configure, run with stub commands that only log their arguments
        (the real ones would change this machine)."""
        stubs = os.path.join(self.tmp, "stubs")
        os.makedirs(stubs, exist_ok=True)
        calls = os.path.join(self.tmp, "calls.log")
        for cmd, rc in [("getent", 2), ("adduser", 0), ("chown", 0), ("chmod", 0),
                        ("systemctl", 0)]:
            path = os.path.join(stubs, cmd)
            with open(path, "w") as f:
                f.write('#!/bin/sh\necho "%s $*" >>"%s"\nexit %d\n' % (cmd, calls, rc))
            os.chmod(path, 0o755)
        env = dict(os.environ, PATH=stubs + ":/usr/bin:/bin")
        out = subprocess.run(["/bin/sh", os.path.join(self.control, "postinst"), "configure"],
                             env=env, capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("systemctl enable --now eds-gateway", out.stdout)
        with open(calls) as f:
            log = f.read().splitlines()
        self.assertIn("getent passwd eds-gateway", log)
        adduser = [c for c in log if c.startswith("adduser ")]
        self.assertEqual(len(adduser), 1, log)
        for word in ["--system", "--group", "eds-gateway"]:
            self.assertIn(word, adduser[0].split())
        self.assertIn("chown root:eds-gateway /etc/eds/eds-gateway.conf", log)
        self.assertIn("chmod 0640 /etc/eds/eds-gateway.conf", log)

    def test_packaged_binary_and_example_config(self):
        gw = os.path.join(self.root, "usr/sbin/eds-gateway")
        self.assertRegex(run([gw, "--version"]), r"^eds-gateway \d+\.\d+\.\d+")
        # The example with its /etc and /usr paths pointed into the unpacked tree.
        etc = os.path.join(self.tmp, "etc-eds")
        os.mkdir(etc)
        with open(os.path.join(etc, "broker.pw"), "w") as f:
            f.write("secret\n")
        devices = os.path.join(etc, "devices.passwd")
        run(["mosquitto_passwd", "-c", "-b", devices, "myrio-01", "pw1"])
        os.chmod(devices, 0o600)
        with open(os.path.join(self.root, "etc/eds/eds-gateway.conf")) as f:
            text = f.read()
        text = text.replace("/etc/eds/", etc + "/")
        text = text.replace("/usr/share/eds/", os.path.join(self.root, "usr/share/eds") + "/")
        text = text.replace("/var/lib/eds-gateway", os.path.join(self.tmp, "state"))
        conf = os.path.join(self.tmp, "gw.conf")
        with open(conf, "w") as f:
            f.write(text)
        self.assertEqual(run([gw, "-c", conf, "--check"]).strip(), "eds-gateway: configuration OK")
        # --check fails (exit 2) when a file it names is missing.
        os.unlink(devices)
        out = subprocess.run([gw, "-c", conf, "--check"], capture_output=True, text=True,
                             timeout=30)
        self.assertEqual(out.returncode, 2)
        self.assertIn("devices.passwd", out.stderr)

    def test_systemd_unit(self):
        with open(os.path.join(self.root, "lib/systemd/system/eds-gateway.service")) as f:
            unit = f.read()
        for line in ["Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict",
                     "ProtectHome=yes", "PrivateTmp=yes", "StateDirectory=eds-gateway",
                     "User=eds-gateway",
                     "ExecStart=/usr/sbin/eds-gateway -c /etc/eds/eds-gateway.conf",
                     "RestartPreventExitStatus=2"]:
            self.assertIn(line + "\n", unit)
        analyze = shutil.which("systemd-analyze")
        if not analyze:
            print("systemd-analyze not installed: unit syntax not verified")
            return
        # systemd-analyze checks that ExecStart exists: point it at the unpacked binary.
        unit = unit.replace("/usr/sbin/eds-gateway", os.path.join(self.root, "usr/sbin/eds-gateway"))
        path = os.path.join(self.tmp, "eds-gateway.service")
        with open(path, "w") as f:
            f.write(unit)
        out = subprocess.run([analyze, "verify", path], capture_output=True, text=True,
                             timeout=60)
        problems = [ln for ln in (out.stdout + out.stderr).splitlines()
                    if "eds-gateway.service" in ln]
        self.assertEqual(problems, [])
        self.assertEqual(out.returncode, 0, out.stderr)


class AgentInstall(unittest.TestCase):
    def test_agent_component_installs_init_script_and_config(self):
        with tempfile.TemporaryDirectory(prefix="eds-stage-") as stage:
            run(["cmake", "--install", BUILD_DIR, "--prefix", "/usr", "--component", "agent"],
                env=dict(os.environ, DESTDIR=stage))
            for path in ["usr/bin/eds-agent", "etc/init.d/eds-agent", "etc/eds/eds-agent.conf",
                         "usr/share/eds-agent/schemas/energy.json", "usr/include/edsagent.h"]:
                self.assertTrue(os.path.exists(os.path.join(stage, path)), path)
            self.assertTrue(os.access(os.path.join(stage, "etc/init.d/eds-agent"), os.X_OK))
            libs = os.listdir(os.path.join(stage, "usr/lib"))
            self.assertTrue(any(re.match(r"libedsagent\.so\.\d", n) for n in libs), libs)
            self.assertFalse(os.path.exists(os.path.join(stage, "usr/sbin/eds-gateway")))


if __name__ == "__main__":
    unittest.main(verbosity=2)
