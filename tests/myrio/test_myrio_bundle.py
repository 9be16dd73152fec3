#!/usr/bin/python3
"""The myRIO bundle (scripts/build-arm.sh --bundle) as an operator unpacks it at / and later
removes it: unpacking leaves the modes, owners and times of the directories already there
unchanged (the tarball holds files and symlinks only, no "./" or "./etc" entries), installs
no live configuration, passes scripts/check-abi.sh, and uninstall.sh removes exactly what it
installed (with --purge also the configuration, spool and logs).

Environment: EDS_MYRIO_BUNDLE (default build-arm/eds-agent-myrio.tar.gz), EDS_SOURCE_DIR."""

import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("EDS_SOURCE_DIR", os.path.join(HERE, "..", ".."))
BUNDLE = os.path.abspath(os.environ.get("EDS_MYRIO_BUNDLE",
                                        os.path.join(SRC, "build-arm", "eds-agent-myrio.tar.gz")))
# Directories a myRIO has before the bundle comes, with modes unlike tar's defaults.
PRESET = {"": 0o755, "etc": 0o751, "etc/init.d": 0o750, "usr": 0o711, "usr/local": 0o775,
          "usr/local/bin": 0o711, "usr/local/lib": 0o751, "usr/local/include": 0o700,
          "usr/local/share": 0o775, "var": 0o755, "var/log": 0o750}
OLD = 946684800  # 2000-01-01: a time tar would not set by accident


class BundleTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="eds-bundle-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.root = os.path.join(self.tmp, "root")
        for d in sorted(PRESET):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        for d, mode in PRESET.items():
            os.chmod(os.path.join(self.root, d), mode)
        for d in PRESET:
            os.utime(os.path.join(self.root, d), (OLD, OLD))

    def unpack(self):
        # As on the myRIO: tar -xzf bundle -C /
        subprocess.run(["tar", "-xzf", BUNDLE, "-C", self.root], check=True, timeout=60)

    def test_entries_are_files_and_symlinks_only(self):
        with tarfile.open(BUNDLE) as t:
            members = t.getmembers()
        names = [m.name for m in members]
        self.assertTrue(names)
        for m in members:
            self.assertFalse(m.isdir(), "directory entry %s in the bundle" % m.name)
            self.assertFalse(m.name.startswith(("./", "/")), m.name)
            self.assertEqual((m.uid, m.gid), (0, 0), m.name)
        for want in ("usr/local/bin/eds-agent", "usr/local/lib/libedsagent.so.0",
                     "usr/local/include/edsagent.h", "usr/local/include/eds_err.h",
                     "etc/init.d/eds-agent", "etc/eds/eds-agent.conf.example",
                     "usr/local/share/eds-agent/uninstall.sh"):
            self.assertIn(want, names)
        self.assertNotIn("etc/eds/eds-agent.conf", names)

    def test_unpacking_keeps_existing_directories_as_they_were(self):
        before = {d: os.stat(os.path.join(self.root, d)) for d in PRESET}
        self.unpack()
        self.assertTrue(os.access(os.path.join(self.root, "usr/local/bin/eds-agent"), os.X_OK))
        for d, st in before.items():
            now = os.stat(os.path.join(self.root, d))
            self.assertEqual(stat.S_IMODE(now.st_mode), PRESET[d], "/%s: mode changed" % d)
            self.assertEqual((now.st_uid, now.st_gid), (st.st_uid, st.st_gid), "/%s" % d)
        # Directories that gained no new entry keep their time too (/etc gains eds/,
        # usr/local/share gains eds-agent/: the kernel updates those, as for any new file).
        for d in ("", "usr", "usr/local", "var", "var/log"):
            self.assertEqual(os.stat(os.path.join(self.root, d)).st_mtime, OLD,
                             "/%s: time changed" % d)
        # A second unpack (an upgrade) keeps the operator's configuration.
        conf = os.path.join(self.root, "etc/eds/eds-agent.conf")
        with open(conf, "w") as f:
            f.write("device myrio-07\n")
        self.unpack()
        with open(conf) as f:
            self.assertEqual(f.read(), "device myrio-07\n")

    def test_bundle_passes_the_abi_check(self):
        r = subprocess.run([os.path.join(SRC, "scripts", "check-abi.sh"), BUNDLE],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("usr/local/bin/eds-agent: static", r.stdout)
        self.assertIn("libedsagent.so", r.stdout)

    def uninstall(self, *args):
        env = dict(os.environ, ROOT=self.root,
                   EDS_AGENT_DEFAULTS=os.path.join(self.tmp, "defaults"))
        with open(env["EDS_AGENT_DEFAULTS"], "w") as f:
            f.write("PIDFILE=%s\n" % os.path.join(self.tmp, "agent.pid"))
        return subprocess.run([os.path.join(self.root, "usr/local/share/eds-agent/uninstall.sh")]
                              + list(args), env=env, capture_output=True, text=True, timeout=60)

    def installed(self):
        out = []
        for dirpath, dirs, files in os.walk(self.root):
            for name in files:
                out.append(os.path.relpath(os.path.join(dirpath, name), self.root))
        return sorted(out)

    def test_uninstall_removes_what_was_installed(self):
        self.unpack()
        os.makedirs(os.path.join(self.root, "etc/rc5.d"))
        os.symlink("../init.d/eds-agent", os.path.join(self.root, "etc/rc5.d/S99eds-agent"))
        with open(os.path.join(self.root, "etc/eds/eds-agent.conf"), "w") as f:
            f.write("device myrio-07\n")
        os.makedirs(os.path.join(self.root, "var/lib/eds-agent"))
        r = self.uninstall()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.installed(), ["etc/eds/eds-agent.conf"])
        self.assertFalse(os.path.lexists(os.path.join(self.root, "etc/rc5.d/S99eds-agent")))
        self.assertFalse(os.path.exists(os.path.join(self.root, "usr/local/share/eds-agent")))
        for d, mode in PRESET.items():
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.root, d)).st_mode), mode)
        self.assertTrue(os.path.isdir(os.path.join(self.root, "var/lib/eds-agent")))

    def test_uninstall_purge(self):
        self.unpack()
        with open(os.path.join(self.root, "etc/eds/eds-agent.conf"), "w") as f:
            f.write("device myrio-07\n")
        os.makedirs(os.path.join(self.root, "var/lib/eds-agent"))
        with open(os.path.join(self.root, "var/log/eds-agent.log.1"), "w") as f:
            f.write("old\n")
        r = self.uninstall("--purge")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.installed(), [])
        self.assertFalse(os.path.exists(os.path.join(self.root, "var/lib/eds-agent")))
        self.assertTrue(os.path.isdir(os.path.join(self.root, "var/log")))


if __name__ == "__main__":
    if not os.path.exists(BUNDLE):
        sys.exit("no bundle at %s: run scripts/build-arm.sh --bundle" % BUNDLE)
    unittest.main(verbosity=2)
