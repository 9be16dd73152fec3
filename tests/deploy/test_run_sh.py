"""scripts/run.sh, the README's main command, as a newcomer runs it (minus
the install and build steps, which the test command has just done):
`scripts/run.sh --no-build --duration N` must show device status changes
and records from all three simulated agents as mosquitto_sub prints them,
print its summary, exit 0, and leave none of the processes it started
running. Also: Ctrl-C (SIGINT) stops it early with the same clean-up.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from edsrig import Process, source_path  # noqa: E402

BUILD_DIR = os.environ.get("EDS_BUILD_DIR") or source_path("build")
DEVICES = ["myrio-01", "myrio-02", "myrio-03"]


def alive(pid):
    """True if pid runs (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def pids_started(output):
    """The pids of the processes run.sh started, from the pid list it prints."""
    m = re.search(r"^== stopped: (.*)$", output, re.M)
    if not m:
        raise AssertionError("run.sh did not print its pids:\n" + output)
    return [int(p) for p in re.findall(r"\((\d+)\)", m.group(1))]


class RunSh(unittest.TestCase):
    def run_sh(self, *args):
        env = dict(os.environ, BUILD_DIR=BUILD_DIR, CI="true")
        # SIGINT back to its default first: a shell cannot trap a signal that
        # was ignored when it started (as for background jobs of a script).
        argv = [source_path("scripts", "run.sh"), "--no-build"] + list(args)
        return Process([sys.executable, "-c", "import os, signal, sys; "
                        "signal.signal(signal.SIGINT, signal.SIG_DFL); "
                        "os.execv(sys.argv[1], sys.argv[1:])"] + argv, name="run.sh", env=env)

    def test_duration(self):
        p = self.run_sh("--duration", "5")
        try:
            rc = p.wait(60)
        finally:
            p.stop()
        out = p.output()
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"== mosquitto on 127\.0\.0\.1:\d+ .* eds-gateway on 127\.0\.0\.1:\d+")
        self.assertRegex(out, r'(?m)^energy/_gateway/status \{"online":true')
        for dev in DEVICES:
            self.assertRegex(out, r'(?m)^energy/%s/status \{"online":true' % dev)
            self.assertRegex(out, r'(?m)^energy/%s/data \{"timestamp":"' % dev)
            self.assertRegex(out, r'(?m)^energy/%s/status \{"online":false' % dev)
            m = re.search(r"(?m)^   %s: (\d+) records? on energy/%s/data, 0 rejected$" % (
                dev, dev), out)
            self.assertTrue(m, out)
            self.assertGreater(int(m.group(1)), 0)
        # The stats topic has exactly the fields docs/operations.md explains.
        m = re.search(r"(?m)^energy/_gateway/stats (\{.*\})$", out)
        self.assertTrue(m, "no stats message in the output")
        published = set(json.loads(m.group(1)))
        with open(source_path("docs", "operations.md")) as f:
            doc = f.read()
        section = doc.split("## The stats topic, field by field", 1)[1].split("\n## ", 1)[0]
        documented = set(re.findall(r"(?m)^\| `([a-z_]+)` \|", section))
        self.assertEqual(published - documented, set(), "stats fields not in docs/operations.md")
        self.assertEqual(documented - published, set(), "documented fields not published")
        # It prints the metrics URL (test_dashboard.py reads it while run.sh runs).
        self.assertRegex(out, r"(?m)^== metrics: http://127\.0\.0\.1:\d+/metrics ")
        pids = pids_started(out)
        self.assertEqual(len(pids), 7, out)  # mosquitto, gateway, viewer, tail, 3 agents
        self.assertEqual([pid for pid in pids if alive(pid)], [])

    def test_ctrl_c(self):
        p = self.run_sh()
        try:
            for dev in DEVICES:
                p.wait_for_line(r"^energy/%s/data " % dev, timeout=30)
            p.signal(signal.SIGINT)
            rc = p.wait(30)
        finally:
            p.stop()
        out = p.output()
        self.assertEqual(rc, 0, out)
        self.assertIn("== summary after", out)
        deadline = time.monotonic() + 5
        left = [pid for pid in pids_started(out) if alive(pid)]
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = [pid for pid in left if alive(pid)]
        self.assertEqual(left, [])

    def test_tls(self):
        """--tls: the agents connect to the TLS listener with their certificates."""
        p = self.run_sh("--tls", "--duration", "4", "--keep")
        try:
            rc = p.wait(60)
        finally:
            p.stop()
        out = p.output()
        work = re.search(r"(?m)^== kept (\S+) ", out)
        try:
            self.assertEqual(rc, 0, out)
            m = re.search(r"(?m)^== TLS: agents connect to 127\.0\.0\.1:(\d+) ", out)
            self.assertTrue(m, out)
            for dev in DEVICES:
                self.assertRegex(out, r"(?m)^   %s: [1-9]\d* records on" % dev)
                with open(os.path.join(work.group(1), dev + ".log")) as f:
                    self.assertIn("connected to gateway 127.0.0.1:%s as %s" % (m.group(1), dev),
                                  f.read())
        finally:
            if work:
                shutil.rmtree(work.group(1), ignore_errors=True)

    def test_usage(self):
        out = subprocess.run([source_path("scripts", "run.sh"), "--help"], capture_output=True,
                             text=True, timeout=10)
        self.assertEqual(out.returncode, 0)
        self.assertIn("--duration SECONDS", out.stdout)
        bad = subprocess.run([source_path("scripts", "run.sh"), "--bogus"], capture_output=True,
                             text=True, timeout=10)
        self.assertEqual(bad.returncode, 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
