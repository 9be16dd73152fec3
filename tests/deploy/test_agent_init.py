#!/usr/bin/python3
"""deploy/eds-agent.init, the myRIO's sysvinit script, run here with the host's eds-agent and
every path in a temp folder (EDS_AGENT_DEFAULTS), as root with RUNAS=nobody (lvuser on the
myRIO), as that user itself, and as another user:

- start reports success only for an agent that stays up; a bad config or a port in use
  (an agent that exits at once, with RESPAWN=yes too) is reported as a failure with the
  log's lines, and leaves no supervisor or agent behind;
- stop and status act only on eds-agent running as RUNAS: a pid file naming a root process
  or another process of RUNAS (as RUNAS could write it) is left alone, and status says so;
- stop still finds the agent after an upgrade replaced its binary;
- only root and RUNAS may start or stop it;
- the log is rotated past LOGMAX bytes (one old file kept), so it cannot fill the flash.

Needs root (su, chown, setpriv); skipped without it."""

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

SRC = os.environ.get("EDS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("EDS_BIN_DIR", os.path.join(SRC, "build", "bin"))
RUNAS = "nobody"
OTHER = "daemon"


def wait_until(cond, timeout=20.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))


def sleep_state(pid):
    """(State letter, pending signal bits of the process and its thread) from /proc."""
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields["State"][:1], int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@unittest.skipUnless(os.geteuid() == 0, "needs root (su to the RUNAS user, chown)")
class InitScriptTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="eds-init-test-")
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.addCleanup(self.kill_leftovers)
        self.daemon = self.path("eds-agent")
        shutil.copy2(os.path.join(BIN, "eds-agent"), self.daemon)
        self.script = self.path("eds-agent.init")
        shutil.copy2(os.path.join(SRC, "deploy", "eds-agent.init"), self.script)
        os.makedirs(self.path("log"))
        # No gateway listens: the agent runs and retries, which is all start needs.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.closed_port = s.getsockname()[1]
        self.write_conf()
        self.defaults = {"DAEMON": self.daemon, "CONF": self.path("agent.conf"),
                         "RUNAS": RUNAS, "SPOOL": self.path("spool"),
                         "LOGFILE": self.path("log", "eds-agent.log"),
                         "PIDFILE": self.path("run", "eds-agent.pid"), "START_CHECK": "1"}

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def write_conf(self, *extra):
        with open(self.path("agent.conf"), "w") as f:
            f.write("gateway 127.0.0.1:%d\ndevice myrio-01\nsimulate 1\n" % self.closed_port)
            f.write("".join(line + "\n" for line in extra))
        os.chmod(self.path("agent.conf"), 0o644)

    def init(self, cmd, user=None, **overrides):
        d = dict(self.defaults, **overrides)
        with open(self.path("defaults"), "w") as f:
            f.write("".join("%s='%s'\n" % kv for kv in d.items()))
        env = dict(os.environ, EDS_AGENT_DEFAULTS=self.path("defaults"))
        argv = ["/bin/sh", self.script, cmd]
        if user:
            pw = pwd.getpwnam(user)
            argv = ["setpriv", "--reuid", str(pw.pw_uid), "--regid", str(pw.pw_gid),
                    "--clear-groups"] + argv
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        return r.returncode, r.stdout + r.stderr

    def ours(self):
        """Processes whose command line names this test's folder (supervisor, agent)."""
        pids = []
        for d in os.listdir("/proc"):
            if d.isdigit() and alive(int(d)):
                try:
                    with open("/proc/%s/cmdline" % d, "rb") as f:
                        if self.tmp.encode() in f.read():
                            pids.append(int(d))
                except OSError:
                    pass
        return pids

    def kill_leftovers(self):
        for pid in self.ours():
            os.kill(pid, signal.SIGKILL)

    def agent_pid(self):
        with open(self.defaults["PIDFILE"]) as f:
            return int(f.read())

    def uid_of(self, pid):
        with open("/proc/%d/status" % pid) as f:
            return int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))

    def start_ok(self, user=None):
        rc, out = self.init("start", user)
        self.assertEqual(rc, 0, out)
        m = re.search(r"eds-agent: started \(pid (\d+), log ", out)
        self.assertTrue(m, out)
        pid = int(m.group(1))
        self.assertTrue(alive(pid))
        self.assertEqual(self.uid_of(pid), pwd.getpwnam(RUNAS).pw_uid)
        return pid

    def test_start_status_stop(self):
        pid = self.start_ok()
        rc, out = self.init("status")
        self.assertEqual((rc, out.strip()), (0, "eds-agent: running (pid %d)" % pid))
        rc, out = self.init("start")
        self.assertEqual(rc, 0)
        self.assertIn("already running (pid %d)" % pid, out)
        rc, out = self.init("stop")
        self.assertEqual((rc, out.strip()), (0, "eds-agent: stopped"))
        wait_until(lambda: not self.ours(), what="agent and supervisor gone")
        rc, out = self.init("status")
        self.assertEqual((rc, out.strip()), (3, "eds-agent: not running"))

    def assert_failed_start(self, rc, out, why):
        self.assertEqual(rc, 1, out)
        self.assertIn("eds-agent: failed to start", out)
        self.assertRegex(out, why)
        self.assertNotIn("started (pid", out)
        wait_until(lambda: not self.ours(), what="nothing left running after a failed start")
        rc, out = self.init("status")
        self.assertEqual(rc, 3, out)

    def test_start_fails_on_bad_config(self):
        self.write_conf("no_such_option 1")
        rc, out = self.init("start")
        self.assert_failed_start(rc, out, r"unknown option 'no_such_option'")

    def test_start_fails_when_the_agent_exits_at_once_even_with_respawn(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            self.write_conf("tcp %d" % taken.getsockname()[1])
            rc, out = self.init("start", RESPAWN="yes")
        self.assert_failed_start(rc, out, r"(?i)address already in use")

    def test_stop_and_status_leave_a_foreign_pid_alone(self):
        os.makedirs(self.path("run"))
        for user in (None, RUNAS):  # a root process, then another process of RUNAS
            pre = []
            if user:
                pw = pwd.getpwnam(user)
                pre = ["setpriv", "--reuid", str(pw.pw_uid), "--regid", str(pw.pw_gid),
                       "--clear-groups"]
            victim = subprocess.Popen(pre + ["sleep", "300"])
            self.addCleanup(victim.wait)
            self.addCleanup(victim.kill)
            wait_until(lambda: sleep_state(victim.pid)[0] == "S", what="the victim asleep")
            # What RUNAS, who owns the pid file, could write into it.
            with open(self.defaults["PIDFILE"], "w") as f:
                f.write("%d\n" % victim.pid)
            rc, out = self.init("status")
            self.assertEqual(rc, 1, out)
            self.assertIn("stale", out)
            rc, out = self.init("stop")
            self.assertEqual(rc, 0, out)
            self.assertIn("names pid %d, which is not eds-agent running as %s: left alone"
                          % (victim.pid, RUNAS), out)
            # kill(2) has marked a signal pending before it returns, and stop has
            # returned: a signal it sent is still pending, or the victim is exiting
            # (not asleep in sleep(1)) or gone. Nothing to wait for.
            self.assertIsNone(victim.poll(), "stop killed a process that is not the agent")
            state, pending = sleep_state(victim.pid)
            self.assertEqual(pending, 0, "stop sent a signal to a process that is not the agent")
            self.assertEqual(state, "S", "the victim is not asleep: it is exiting")

    def test_stop_after_an_upgrade_replaced_the_binary(self):
        pid = self.start_ok()
        new = self.daemon + ".new"
        shutil.copy2(os.path.join(BIN, "eds-agent"), new)
        os.rename(new, self.daemon)  # as tar does: the running file is now "(deleted)"
        self.assertTrue(os.readlink("/proc/%d/exe" % pid).endswith(" (deleted)"))
        rc, out = self.init("status")
        self.assertEqual(rc, 0, out)
        rc, out = self.init("stop")
        self.assertEqual((rc, out.strip()), (0, "eds-agent: stopped"))
        wait_until(lambda: not alive(pid), what="the old agent stopped")

    def test_runas_user_may_run_it_other_users_may_not(self):
        rc, out = self.init("start", OTHER)
        self.assertEqual(rc, 4, out)
        self.assertIn("start needs root or %s" % RUNAS, out)
        # RUNAS itself, with everything it needs already its own.
        uid = pwd.getpwnam(RUNAS).pw_uid
        for d in ("log", "run", "spool"):
            os.makedirs(self.path(d), exist_ok=True)
            os.chown(self.path(d), uid, -1)
        pid = self.start_ok(RUNAS)
        rc, out = self.init("stop", OTHER)
        self.assertEqual(rc, 4, out)
        self.assertTrue(alive(pid))
        rc, out = self.init("stop", RUNAS)
        self.assertEqual((rc, out.strip()), (0, "eds-agent: stopped"), out)
        wait_until(lambda: not self.ours(), what="agent and supervisor gone")

    def test_stop_through_another_path_stops_for_good(self):
        # sysvinit starts the script as /etc/rcN.d/S99eds-agent, the admin stops it as
        # /etc/init.d/eds-agent: stop must find the supervisor, or it restarts the agent.
        link = self.path("S99eds-agent")
        os.symlink(self.script, link)
        started, self.script = self.script, link
        pid = self.start_ok()
        self.script = started
        rc, out = self.init("stop")
        self.assertEqual((rc, out.strip()), (0, "eds-agent: stopped"))
        # The supervisor would restart the agent 5 s after it ended.
        wait_until(lambda: not self.ours(), timeout=10, what="agent and supervisor gone")
        self.assertFalse(alive(pid))

    def test_start_does_not_follow_links_runas_put_in_the_pid_folder(self):
        # RUNAS owns the pid folder: a pid file swapped for a link to a root file must not
        # make root's start chown or empty that file.
        os.makedirs(self.path("run"))
        os.chown(self.path("run"), pwd.getpwnam(RUNAS).pw_uid, -1)
        victim = self.path("root-owned")
        with open(victim, "w") as f:
            f.write("root's data\n")
        os.symlink(victim, self.defaults["PIDFILE"])
        os.symlink(victim, self.defaults["PIDFILE"] + ".supervisor")
        self.start_ok()
        st = os.lstat(victim)
        self.assertEqual(st.st_uid, 0, "start gave a root file to RUNAS through a link")
        with open(victim) as f:
            self.assertEqual(f.read(), "root's data\n")
        rc, out = self.init("stop")
        self.assertEqual((rc, out.strip()), (0, "eds-agent: stopped"))

    def test_log_is_rotated(self):
        limit = 4000
        log = self.defaults["LOGFILE"]
        self.defaults.update(LOGMAX=str(limit), LOGCHECK="1",
                             EXTRA_ARGS="-vv --reconnect-min 0.02 --reconnect-max 0.02")
        self.start_ok()
        wait_until(lambda: os.path.exists(log + ".1") and os.path.getsize(log + ".1") > limit,
                   what="the first rotation")
        first = os.stat(log + ".1").st_mtime_ns
        wait_until(lambda: os.stat(log + ".1").st_mtime_ns != first, what="a second rotation")
        # Between two checks (1 s) the agent writes a few KiB at this rate: the live file
        # stays well under ten times the limit; nothing but the log and one old file.
        self.assertLess(os.path.getsize(log), 10 * limit)
        self.assertEqual(sorted(os.listdir(self.path("log"))),
                         ["eds-agent.log", "eds-agent.log.1"])
        rc, out = self.init("stop")
        self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
