"""The packaged systemd units under a real systemd.

The packages are installed into a fresh Debian 12 root (debroot), which is
then booted with systemd as PID 1 (systemd-nspawn --boot, sharing the host's
network so the services reach the test's broker on 127.0.0.1). Then, with
the packaged units and configs (ports and credentials set as an operator
would):
  - eds-gateway.service starts as eds-gateway with all its hardening and
    publishes its status; eds-agent.service starts as eds-agent and its
    records arrive on the broker;
  - the start-up guard: with a broken configuration (a password file that is
    missing) the gateway exits 2 at start and systemd does not restart it
    (watched for three times RestartSec);
  - a crash (SIGKILL) is restarted.
Needs root and systemd-nspawn (package systemd-container); skipped without.
"""

import os
import shutil
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import debroot  # noqa: E402
from edsrig import Broker, Subscriber, free_port  # noqa: E402

PACKAGES = ["eds-gateway", "eds-agent", "libedsagent0"]


def setUpModule():
    global TMP, DEBS
    TMP, DEBS = debroot.packages_for_module("eds-pkg-systemd-", tools=("systemd-nspawn",))


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


class UnitsUnderSystemd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.broker = Broker()
        r = cls.root = debroot.TestRoot()
        try:
            r.install_debs([DEBS[n] for n in PACKAGES])
            r.write_credentials(TMP, "myrio-07", "pw-07")
            cls.gw_port = free_port()
            r.set_option("/etc/eds/eds-gateway.conf", "listener", "%d 127.0.0.1" % cls.gw_port)
            r.set_option("/etc/eds/eds-gateway.conf", "broker_port", str(cls.broker.port))
            aconf = "/etc/eds/eds-agent.conf"
            r.set_option(aconf, "device", "myrio-07")
            r.set_option(aconf, "gateway", "127.0.0.1:%d" % cls.gw_port)
            for opt in ("tcp", "udp", "cmd_udp"):
                r.set_option(aconf, opt, str(free_port()))
            r.set_option(aconf, "simulate", "5")
            try:
                cls.state = r.boot()
            except (AssertionError, FileNotFoundError) as e:
                # Booting does not involve the packages (their units are started
                # below): a machine where systemd-nspawn cannot boot a container
                # (no cgroup access, inside another container) skips, saying why.
                raise unittest.SkipTest("systemd-nspawn cannot boot the test root here: %s" %
                                        str(e)[-1500:])
        except BaseException:
            r.close()
            cls.broker.close()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.root.close()
        finally:
            cls.broker.close()

    def restore(self, path, text):
        with open(self.root.host_path(path), "w") as f:
            f.write(text)

    def active(self, unit):
        return self.root.unit(unit, "ActiveState")["ActiveState"] == "active"

    def test_1_services_run_hardened_as_their_users(self):
        r = self.root
        with Subscriber(self.broker, ["energy/_gateway/status", "energy/myrio-07/data"]) as sub:
            r.inside(["systemctl", "start", "eds-gateway.service"])
            debroot.wait_until(lambda: self.active("eds-gateway.service"), timeout=20,
                               what="eds-gateway.service active")
            sub.wait_for_message("energy/_gateway/status", timeout=20,
                                 match=lambda m: m.json().get("online") is True)
            r.inside(["systemctl", "start", "eds-agent.service"])
            sub.wait_for_count("energy/myrio-07/data", 3, timeout=30)
        for unit, user in [("eds-gateway.service", "eds-gateway"),
                           ("eds-agent.service", "eds-agent")]:
            props = r.unit(unit, "MainPID", "ActiveState", "NRestarts")
            self.assertEqual(props["ActiveState"], "active", unit)
            pid = props["MainPID"]
            owner = r.inside(["ps", "-o", "user=", "-p", pid], check=False).stdout.strip() or \
                r.inside(["stat", "-c", "%U", "/proc/%s" % pid]).stdout.strip()
            self.assertEqual(owner, user, unit)
            # The hardening is in force: no capabilities, no new privileges.
            status = r.inside(["cat", "/proc/%s/status" % pid]).stdout
            self.assertIn("CapEff:\t0000000000000000", status)
            self.assertIn("NoNewPrivs:\t1", status)
        r.inside(["systemctl", "stop", "eds-agent.service", "eds-gateway.service"])

    def test_2_broken_config_is_not_restarted(self):
        """The start-up guard: exit 2 at start, RestartPreventExitStatus=2 holds."""
        r = self.root
        conf = "/etc/eds/eds-gateway.conf"
        good = r.read(conf)
        self.addCleanup(self.restore, conf, good)
        r.set_option(conf, "password_file", "/etc/eds/missing.passwd")
        r.inside(["systemctl", "reset-failed", "eds-gateway.service"], check=False)
        r.inside(["systemctl", "start", "eds-gateway.service"], check=False)
        props = debroot.wait_until(
            lambda: (lambda p: p["ActiveState"] == "failed" and p)(
                r.unit("eds-gateway.service", "ActiveState", "Result", "ExecMainStatus",
                       "NRestarts")),
            timeout=20, what="eds-gateway.service failed")
        self.assertEqual((props["Result"], props["ExecMainStatus"], props["NRestarts"]),
                         ("exit-code", "2", "0"))
        # Watched for 3 x RestartSec (2 s): no restart comes.
        restarted = debroot.poll_for(6, lambda: r.unit("eds-gateway.service", "NRestarts",
                                                        "ActiveState") != {
            "NRestarts": "0", "ActiveState": "failed"})
        self.assertIsNone(restarted, "the unit was restarted with a broken config")
        journal = r.inside(["journalctl", "-u", "eds-gateway.service", "--no-pager", "-o", "cat"],
                           check=False).stdout
        self.assertIn("missing.passwd", journal)

    def test_3_a_crash_is_restarted(self):
        r = self.root
        r.inside(["systemctl", "reset-failed", "eds-gateway.service"], check=False)
        r.inside(["systemctl", "start", "eds-gateway.service"])
        debroot.wait_until(lambda: self.active("eds-gateway.service"), timeout=20,
                           what="eds-gateway.service active")
        first = r.unit("eds-gateway.service", "MainPID")["MainPID"]
        r.inside(["systemctl", "kill", "-s", str(int(signal.SIGKILL)), "eds-gateway.service"])
        props = debroot.wait_until(
            lambda: (lambda p: p["NRestarts"] == "1" and p["ActiveState"] == "active" and p)(
                r.unit("eds-gateway.service", "NRestarts", "ActiveState", "MainPID")),
            timeout=20, what="eds-gateway.service restarted after SIGKILL")
        self.assertNotEqual(props["MainPID"], first)
        r.inside(["systemctl", "stop", "eds-gateway.service"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
