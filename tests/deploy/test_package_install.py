"""The Debian packages installed into a fresh Debian 12 root, used, and purged.

As an operator on a new Pi would: build the packages (scripts/package.sh),
install them with dpkg into a fresh debootstrap'd bookworm root (chroot; the
root is cached by scripts/make-test-root.sh and unpacked anew for each run),
check what the maintainer scripts made (the users, the state directories,
the configs' owners), add the credentials as docs/getting-started.md does,
run `eds-gateway --check` as the service user before any start, start the
gateway and the agent as their users with the packaged configs (a few lines
changed: ports, device id) against a broker on 127.0.0.1, see records
arrive, then purge and show that nothing the packages made is left while a
file the admin made is kept. Needs root; skipped without it.
"""

import os
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import debroot  # noqa: E402
from edsrig import Broker, Process, Subscriber, free_port  # noqa: E402

PACKAGES = ["eds-gateway", "eds-agent", "libedsagent0", "libedsagent-dev"]


def setUpModule():
    global TMP, DEBS
    TMP, DEBS = debroot.packages_for_module("eds-pkg-install-")


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


class InstallUsePurge(unittest.TestCase):
    def setUp(self):
        self.root = debroot.TestRoot()
        self.addCleanup(self.root.close)

    def install(self, names):
        self.assertEqual(sorted(set(names) - set(DEBS)), [], "packages not built: %s" % DEBS)
        return self.root.install_debs([DEBS[n] for n in names])

    def test_install_check_run_purge(self):
        r = self.root
        before = r.snapshot()
        self.assertGreater(len(before[0]), 5000)  # the whole root, not an empty walk
        out = self.install(PACKAGES)
        self.assertIn("eds-gateway: edit /etc/eds/eds-gateway.conf, then: systemctl enable --now "
                      "eds-gateway", out.stdout)

        # What postinst made: system users without a login, the state directories
        # owned by them, the configs readable by their group only.
        for user, conf, state in [("eds-gateway", "/etc/eds/eds-gateway.conf",
                                   "/var/lib/eds-gateway"),
                                  ("eds-agent", "/etc/eds/eds-agent.conf", "/var/lib/eds-agent")]:
            pw = r.chroot(["getent", "passwd", user]).stdout.strip().split(":")
            self.assertLess(int(pw[2]), 1000, pw)  # a system account
            self.assertEqual(pw[5:], ["/nonexistent", "/usr/sbin/nologin"])
            self.assertEqual(r.stat(conf), ("root", user, 0o640))
            self.assertEqual(r.stat(state), (user, user, 0o750))
            self.assertIn("root %s 640 %s" % (user, conf),
                          r.chroot(["dpkg-statoverride", "--list"]).stdout)
        # The library: registered with ldconfig by the trigger.
        self.assertIn("libedsagent.so.0 ", r.chroot(["ldconfig", "-p"]).stdout)

        # The operator's files, as docs/getting-started.md makes them.
        r.write_credentials(TMP, "myrio-01", "pw-01")

        with Broker() as broker:
            gw_port = free_port()
            conf = "/etc/eds/eds-gateway.conf"
            r.set_option(conf, "listener", "%d 127.0.0.1" % gw_port)
            r.set_option(conf, "broker_port", str(broker.port))
            # --check as the service user before any start: the package made the
            # state directory, so it passes (it failed with 'Permission denied').
            check = r.chroot(["/usr/sbin/eds-gateway", "-c", conf, "--check"], user="eds-gateway",
                             check=False)
            self.assertEqual((check.returncode, check.stdout.strip(), check.stderr), (
                0, "eds-gateway: configuration OK", ""))

            aconf = "/etc/eds/eds-agent.conf"
            r.set_option(aconf, "gateway", "127.0.0.1:%d" % gw_port)
            for opt in ("tcp", "udp", "cmd_udp"):  # the host's ports: free ones
                r.set_option(aconf, opt, str(free_port()))
            r.set_option(aconf, "simulate", "20")
            with Subscriber(broker, "energy/myrio-01/data") as sub:
                gw = Process(r.chroot_argv(["/usr/sbin/eds-gateway", "-c", conf], "eds-gateway"),
                             name="eds-gateway (chroot)")
                with gw:
                    gw.wait_for_line(r"connected to the broker", timeout=15)
                    # In a with: a failed wait must not leave it running in the root.
                    with Process(r.chroot_argv(["/usr/bin/eds-agent", "-c", aconf,
                                                "--count", "10"], "eds-agent"),
                                 name="eds-agent (chroot)") as agent:
                        self.assertEqual(agent.wait(timeout=60), 0, agent.output())
                    sub.wait_for_count("energy/myrio-01/data", 10, timeout=20)
                    self.assertEqual(gw.stop(timeout=15), 0, gw.output())
            self.assertTrue(os.path.exists(r.host_path("/var/lib/eds-gateway/state.log")))
            self.assertTrue(os.listdir(r.host_path("/var/lib/eds-agent")))  # the spool

        # Enabled at boot by the admin: purge must remove the symlink too.
        r.chroot(["systemctl", "enable", "eds-gateway.service"])
        self.assertTrue(os.path.lexists(r.host_path(
            "/etc/systemd/system/multi-user.target.wants/eds-gateway.service")))

        # Decommission: the admin removes their files, then purges. Nothing the
        # packages made is left: users, groups, state, statoverrides, symlinks, /etc/eds.
        for f in ("devices.passwd", "broker.pw", "agent.pw"):
            os.unlink(r.host_path("/etc/eds/" + f))
        r.chroot(["dpkg", "--purge"] + PACKAGES)
        after = r.snapshot()
        self.assertEqual(sorted(set(after[0]) - set(before[0])), [], "left behind by purge")
        self.assertEqual(sorted(set(before[0]) - set(after[0])), [], "removed by purge")
        changed = [p for p in before[0] if before[0][p] != after[0][p]]
        self.assertEqual(changed, [], "mode or owner changed")
        for path, text in before[1].items():
            self.assertEqual(after[1][path], text, path)

    def test_purge_keeps_the_admins_files(self):
        """A credential the admin made is kept by purge, and so is the account it
        belongs to (another account given the same id later would own it)."""
        r = self.root
        self.install(["eds-agent"])
        r.write("/etc/eds/agent.pw", "secret\n", group="eds-agent")
        out = r.chroot(["dpkg", "--purge", "eds-agent"])
        self.assertIn("keeping the user and group eds-agent: files in /etc/eds belong to them "
                      "(/etc/eds/agent.pw)", out.stderr)
        self.assertEqual(r.stat("/etc/eds/agent.pw"), ("root", "eds-agent", 0o640))
        self.assertFalse(os.path.exists(r.host_path("/etc/eds/eds-agent.conf")))
        self.assertFalse(os.path.exists(r.host_path("/var/lib/eds-agent")))
        self.assertNotIn("eds-agent.conf", r.chroot(["dpkg-statoverride", "--list"]).stdout)

    def test_purge_keeps_an_account_it_did_not_make(self):
        """An eds-agent account the admin made before installing is used, and purge
        leaves it (and its group) alone: the package removes only what it made."""
        r = self.root
        r.chroot(["groupadd", "--system", "eds-agent"])
        r.chroot(["useradd", "--system", "-g", "eds-agent", "-c", "made by the admin",
                  "-d", "/nonexistent", "-s", "/usr/sbin/nologin", "eds-agent"])
        before = r.chroot(["getent", "passwd", "eds-agent"]).stdout
        self.install(["eds-agent"])
        self.assertEqual(r.stat("/var/lib/eds-agent"), ("eds-agent", "eds-agent", 0o750))
        r.chroot(["dpkg", "--purge", "eds-agent"])
        self.assertEqual(r.chroot(["getent", "passwd", "eds-agent"]).stdout, before)
        self.assertEqual(r.chroot(["getent", "group", "eds-agent"], check=False).returncode, 0)
        self.assertFalse(os.path.exists(r.host_path("/var/lib/eds-agent")))

    def test_dev_package_builds_a_program(self):
        """libedsagent-dev's header and -ledsagent link a C program that runs against
        libedsagent0 (installed here into the fresh root's /usr/lib)."""
        r = self.root
        self.install(["libedsagent0", "libedsagent-dev"])
        src = os.path.join(TMP, "use.c")
        with open(src, "w") as f:
            f.write('#include <stdio.h>\n#include <edsagent.h>\n'
                    'int main(void) { eds_agent_config c; eds_agent_config_init(&c);\n'
                    '    printf("window %u\\n", (unsigned)c.window); return 0; }\n')
        exe = os.path.join(TMP, "use")
        triplet = debroot.run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"]).stdout.strip()
        libdir = r.host_path("/usr/lib/" + triplet)
        debroot.run(["gcc", "-std=c11", "-Wall", "-Werror", "-I", r.host_path("/usr/include"),
                     src, "-L", libdir, "-ledsagent", "-o", exe])
        shutil.copy(exe, r.host_path("/tmp/use"))
        self.assertRegex(r.chroot(["/tmp/use"]).stdout, r"^window \d+\n$")


if __name__ == "__main__":
    unittest.main(verbosity=2)
