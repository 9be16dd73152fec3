"""The Debian packages as files: what scripts/package.sh builds and lintian says.

Builds the four packages with scripts/package.sh (its own build folder,
build-deb/, with Debian's hardening flags) into a temp folder and checks what
an operator and a Debian maintainer rely on: names and architecture, Depends
from dpkg-shlibdeps, where each file goes and in which package, conffiles,
the copyright and changelog in each package, compressed man pages, the
library's shlibs/symbols/ldconfig trigger, the maintainer scripts' syntax;
that lintian reports no error and no warning; that the packaged binary runs
and the packaged example config passes --check once its paths exist; that
systemd accepts both units. Also stages the agent component with
`cmake --install` (the myRIO bundle's source) and checks what it holds.
Installing them into a Debian root: test_package_install.py, test_package_systemd.py.
"""

import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import debroot  # noqa: E402
from debroot import run  # noqa: E402
from edsrig import source_path  # noqa: E402

BUILD_DIR = os.environ.get("EDS_BUILD_DIR") or source_path("build")
ARCH = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                      text=True).stdout.strip()


def setUpModule():
    global TMP, DEBS, TREES, CONTROL
    why = debroot.skip_in_sanitizer_build()
    if why:
        raise unittest.SkipTest(why)
    TMP = tempfile.mkdtemp(prefix="eds-package-")
    DEBS = debroot.build_packages(os.path.join(TMP, "debs"))
    TREES, CONTROL = {}, {}
    for name, deb in DEBS.items():
        TREES[name] = os.path.join(TMP, "root", name)
        CONTROL[name] = os.path.join(TMP, "control", name)
        os.makedirs(TREES[name])
        os.makedirs(os.path.dirname(CONTROL[name]), exist_ok=True)
        run(["dpkg-deb", "-x", deb, TREES[name]])
        run(["dpkg-deb", "-e", deb, CONTROL[name]])


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


def contents(name):
    """{path: 'drwxr-xr-x root/root'} of a package."""
    entries = {}
    for line in run(["dpkg-deb", "-c", DEBS[name]]).stdout.splitlines():
        fields = line.split(None, 5)
        entries[fields[5].split(" -> ")[0].lstrip(".")] = fields[0] + " " + fields[1]
    return entries


def field(name, key):
    return run(["dpkg-deb", "-f", DEBS[name], key]).stdout.strip()


class Packages(unittest.TestCase):
    def test_names_versions_architecture(self):
        self.assertEqual(sorted(DEBS), ["eds-agent", "eds-gateway", "libedsagent-dev",
                                        "libedsagent0"])
        with open(source_path("deploy", "debian", "changelog")) as f:
            version = re.match(r"eds \(([^)]+)\)", f.readline()).group(1)
        with open(source_path("CMakeLists.txt")) as f:
            upstream = re.search(r"project\(eds VERSION ([0-9.]+)", f.read()).group(1)
        self.assertTrue(version.startswith(upstream + "-"), version)
        for name, deb in DEBS.items():
            self.assertEqual(os.path.basename(deb), "%s_%s_%s.deb" % (name, version, ARCH))
            self.assertEqual(field(name, "Version"), version)
            self.assertEqual(field(name, "Architecture"), ARCH)
            self.assertEqual(field(name, "Source"), "eds")
            self.assertNotIn("localhost", field(name, "Maintainer"))
        # One synopsis each (lintian: duplicate-short-description otherwise).
        synopses = [field(n, "Description").splitlines()[0] for n in DEBS]
        self.assertEqual(len(set(synopses)), len(synopses), synopses)

    def test_depends(self):
        gw = field("eds-gateway", "Depends")
        for dep in ["adduser", "libc6 (>=", "libpaho-mqtt1.3", "libcjson1", "libssl3",
                    "libmicrohttpd12"]:
            self.assertIn(dep, gw)
        self.assertIn("mosquitto", field("eds-gateway", "Recommends"))
        agent = field("eds-agent", "Depends")
        self.assertIn("adduser", agent)
        self.assertNotIn("paho", agent)
        self.assertNotIn("adduser", field("libedsagent0", "Depends"))
        self.assertEqual(field("libedsagent-dev", "Depends"),
                         "libedsagent0 (= %s)" % field("libedsagent0", "Version"))
        self.assertEqual(field("libedsagent0", "Multi-Arch"), "same")

    def test_files_in_their_packages(self):
        triplet = run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"]).stdout.strip()
        where = {
            "eds-gateway": ["/usr/sbin/eds-gateway", "/usr/bin/eds-validate",
                            "/etc/eds/eds-gateway.conf", "/lib/systemd/system/eds-gateway.service",
                            "/usr/share/eds/schemas/energy.json",
                            "/usr/share/eds/broker-config/mosquitto.conf",
                            "/usr/share/eds/broker-config/acl",
                            "/usr/share/doc/eds-gateway/examples/eds-gateway.conf",
                            "/usr/share/doc/eds-gateway/operations.md",
                            "/usr/share/man/man8/eds-gateway.8.gz",
                            "/usr/share/man/man1/eds-validate.1.gz"],
            "eds-agent": ["/usr/bin/eds-agent", "/etc/eds/eds-agent.conf",
                          "/lib/systemd/system/eds-agent.service",
                          "/usr/share/eds-agent/schemas/energy.json",
                          "/usr/share/man/man1/eds-agent.1.gz"],
            "libedsagent0": ["/usr/lib/%s/libedsagent.so.0" % triplet],
            "libedsagent-dev": ["/usr/include/edsagent.h", "/usr/include/eds_err.h",
                                "/usr/lib/%s/libedsagent.so" % triplet],
        }
        every = {}
        for name in DEBS:
            entries = contents(name)
            for path in where[name]:
                self.assertIn(path, entries, "%s: missing %s" % (name, path))
            for path, mode in entries.items():
                if not path.endswith("/"):
                    self.assertNotIn(path, every, "%s in %s and %s" % (path, name, every.get(path)))
                    every[path] = name
                self.assertIn(" root/root", mode, path)
            # Debian asks for these in every package.
            self.assertIn("/usr/share/doc/%s/copyright" % name, entries)
            self.assertIn("/usr/share/doc/%s/changelog.Debian.gz" % name, entries)
            self.assertEqual([p for p in entries if re.search(r"/man/.*\.\d$", p)], [],
                             "uncompressed man pages")
        self.assertTrue(contents("eds-gateway")["/usr/sbin/eds-gateway"].startswith("-rwxr-xr-x"))
        # The live dashboard (scripts/build-dashboard.sh), where broker-config/dashboard.conf's
        # http_dir looks.
        gw = contents("eds-gateway")
        for f in ["index.html", "dashboard.js", "vendor/mqtt.min.js", "vendor/uPlot.iife.min.js"]:
            self.assertIn("/usr/share/eds/dashboard/" + f, gw)
        with open(os.path.join(TREES["eds-gateway"],
                               "usr/share/eds/broker-config/dashboard.conf")) as f:
            self.assertIn("http_dir /usr/share/eds/dashboard", f.read())
        # The myRIO's sysvinit script is not in the Debian package (systemd unit instead).
        self.assertNotIn("/etc/init.d/eds-agent", every)
        # The packaged agent config names the schema where the package puts it.
        with open(os.path.join(TREES["eds-agent"], "etc/eds/eds-agent.conf")) as f:
            self.assertIn("\nschema /usr/share/eds-agent/schemas/energy.json\n", f.read())
        # The man page says what --help says (an option, as roff writes it).
        with gzip.open(os.path.join(TREES["eds-gateway"],
                                    "usr/share/man/man8/eds-gateway.8.gz"), "rt") as f:
            self.assertIn("broker\\-password\\-file", f.read())
        with gzip.open(os.path.join(TREES["eds-gateway"],
                                    "usr/share/doc/eds-gateway/changelog.Debian.gz"), "rt") as f:
            self.assertRegex(f.readline(), r"^eds \(\S+\) \w+; urgency=")

    def test_copyright_is_dep5_with_the_license(self):
        with open(os.path.join(TREES["eds-gateway"], "usr/share/doc/eds-gateway/copyright")) as f:
            text = f.read()
        self.assertTrue(text.startswith(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"))
        self.assertIn("\nFiles: *\n", text)
        self.assertIn("\nLicense: MIT\n", text)
        with open(source_path("LICENSE")) as f:
            self.assertIn("MIT License", f.readline())

    def test_control_files(self):
        with open(os.path.join(CONTROL["eds-gateway"], "conffiles")) as f:
            self.assertEqual(f.read().split(), ["/etc/eds/eds-gateway.conf"])
        with open(os.path.join(CONTROL["eds-agent"], "conffiles")) as f:
            self.assertEqual(f.read().split(), ["/etc/eds/eds-agent.conf"])
        lib = CONTROL["libedsagent0"]
        with open(os.path.join(lib, "shlibs")) as f:
            self.assertRegex(f.read(), r"^libedsagent 0 libedsagent0 \(>= [0-9.]+\)\n$")
        with open(os.path.join(lib, "symbols")) as f:
            symbols = f.read()
        self.assertTrue(symbols.startswith("libedsagent.so.0 libedsagent0 #MINVER#\n"))
        self.assertIn(" eds_agent_create@", symbols)
        with open(os.path.join(lib, "triggers")) as f:
            self.assertEqual(f.read().strip(), "activate-noawait ldconfig")
        for name in ["eds-gateway", "eds-agent"]:
            for script in ["postinst", "prerm", "postrm"]:
                path = os.path.join(CONTROL[name], script)
                self.assertTrue(os.access(path, os.X_OK), script)
                run(["sh", "-n", path])
                with open(path) as f:
                    self.assertNotIn("@", f.read(), "%s %s: unreplaced placeholder" % (name,
                                                                                       script))
            with open(os.path.join(CONTROL[name], "postinst")) as f:
                postinst = f.read()
            self.assertIn("adduser --system --group", postinst)
            self.assertIn("dpkg-statoverride --update --add root %s 0640" % name, postinst)
            self.assertIn("install -d -o %s -g %s -m 0750 /var/lib/%s" % (name, name, name),
                          postinst)

    def test_lintian_no_errors_or_warnings(self):
        if not shutil.which("lintian"):
            self.skipTest("lintian not installed (scripts/install-deps.sh)")
        out = subprocess.run(["lintian", "--fail-on", "error,warning"] + sorted(DEBS.values()),
                             capture_output=True, text=True, timeout=300)
        tags = [ln for ln in out.stdout.splitlines() if re.match(r"^[EW]: ", ln)]
        self.assertEqual(tags, [])
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)

    def test_packaged_binary_and_example_config(self):
        root = TREES["eds-gateway"]
        gw = os.path.join(root, "usr/sbin/eds-gateway")
        self.assertRegex(run([gw, "--version"]).stdout, r"^eds-gateway \d+\.\d+\.\d+")
        # The --help examples name the packaged paths.
        help_text = run([gw, "--help"]).stdout
        for path in ["/etc/eds/eds-gateway.conf", "/usr/share/eds/schemas/energy.json",
                     "/etc/eds/devices.passwd", "/var/lib/eds-gateway"]:
            self.assertIn(path, help_text)
            if path.startswith(("/usr/", "/etc/eds/eds-")):  # what the package installs
                self.assertTrue(os.path.exists(root + path), path)
        etc = os.path.join(TMP, "etc-eds")
        os.makedirs(etc, exist_ok=True)
        with open(os.path.join(etc, "broker.pw"), "w") as f:
            f.write("secret\n")
        devices = os.path.join(etc, "devices.passwd")
        run(["mosquitto_passwd", "-c", "-b", devices, "myrio-01", "pw1"])
        os.chmod(devices, 0o600)
        with open(os.path.join(root, "etc/eds/eds-gateway.conf")) as f:
            text = f.read()
        text = text.replace("/etc/eds/", etc + "/")
        text = text.replace("/usr/share/eds/", os.path.join(root, "usr/share/eds") + "/")
        text = text.replace("/var/lib/eds-gateway", os.path.join(TMP, "state"))
        conf = os.path.join(TMP, "gw.conf")
        with open(conf, "w") as f:
            f.write(text)
        self.assertEqual(run([gw, "-c", conf, "--check"]).stdout.strip(),
                         "eds-gateway: configuration OK")
        # --check fails (exit 2) when a file it names is missing, and so does a start.
        os.unlink(devices)
        for extra in [["--check"], []]:
            out = subprocess.run([gw, "-c", conf] + extra, capture_output=True, text=True,
                                 timeout=30)
            self.assertEqual(out.returncode, 2, extra)
            self.assertIn("devices.passwd", out.stderr)

    def test_systemd_units(self):
        units = {"eds-gateway": "usr/sbin/eds-gateway", "eds-agent": "usr/bin/eds-agent"}
        for name, binary in units.items():
            with open(os.path.join(TREES[name], "lib/systemd/system/%s.service" % name)) as f:
                unit = f.read()
            for line in ["Restart=on-failure", "RestartPreventExitStatus=2",
                         "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                         "PrivateTmp=yes", "StateDirectory=%s" % name, "User=%s" % name,
                         "CapabilityBoundingSet=", "SystemCallFilter=@system-service",
                         "ExecStart=/%s -c /etc/eds/%s.conf" % (binary, name)]:
                self.assertIn(line + "\n", unit, name)
            # The check is inside the start (a failing ExecStartPre= is restarted anyway).
            self.assertNotRegex(unit, r"(?m)^ExecStartPre=")
            analyze = shutil.which("systemd-analyze")
            if not analyze:
                print("systemd-analyze not installed: unit syntax not verified")
                continue
            # systemd-analyze checks that ExecStart exists: point it at the unpacked binary.
            unit = unit.replace("/" + binary, os.path.join(TREES[name], binary))
            path = os.path.join(TMP, "%s.service" % name)
            with open(path, "w") as f:
                f.write(unit)
            out = subprocess.run([analyze, "verify", "--man=no", path], capture_output=True, text=True,
                                 timeout=60)
            problems = [ln for ln in (out.stdout + out.stderr).splitlines()
                        if "%s.service" % name in ln]
            self.assertEqual(problems, [])
            self.assertEqual(out.returncode, 0, out.stderr)


class AgentInstall(unittest.TestCase):
    def test_agent_component_installs_init_script_and_config(self):
        if not os.path.isfile(os.path.join(BUILD_DIR, "cmake_install.cmake")):
            self.skipTest("no build in %s" % BUILD_DIR)
        with tempfile.TemporaryDirectory(prefix="eds-stage-") as stage:
            run(["cmake", "--install", BUILD_DIR, "--prefix", "/usr", "--component", "agent"],
                env=dict(os.environ, DESTDIR=stage))
            for path in ["usr/bin/eds-agent", "etc/init.d/eds-agent", "etc/eds/eds-agent.conf",
                         "usr/share/eds-agent/schemas/energy.json", "usr/include/edsagent.h",
                         "usr/include/eds_err.h"]:
                self.assertTrue(os.path.exists(os.path.join(stage, path)), path)
            self.assertTrue(os.access(os.path.join(stage, "etc/init.d/eds-agent"), os.X_OK))
            libs = os.listdir(os.path.join(stage, "usr/lib"))
            self.assertTrue(any(re.match(r"libedsagent\.so\.\d", n) for n in libs), libs)
            self.assertFalse(os.path.exists(os.path.join(stage, "usr/sbin/eds-gateway")))


if __name__ == "__main__":
    unittest.main(verbosity=2)
