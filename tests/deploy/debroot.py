"""debroot: the Debian packages and a fresh Debian 12 root to install them into.

Shared by the deploy tests that install the packages:
  build_packages(outdir)   scripts/package.sh --out outdir: {package name: .deb path}
  TestRoot                 a fresh root file system unpacked from the cached
                           debootstrap tarball (scripts/make-test-root.sh), for
                           chroot (run, files, a snapshot to compare) and
                           systemd-nspawn (boot, run inside, power off)
  skip_unless_root()       the reason these tests cannot run, or None

The root shares the host's network namespace (no --private-network), so a
process in it reaches the test's broker on 127.0.0.1. Processes are stopped by
their own pid; the nspawn container by powering it off (then by its pid).
"""

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from edsrig import (GATEWAY_PASSWORD, MOSQUITTO_PASSWD, RigTimeout, source_path,  # noqa: E402
                    wait_until)


def run(argv, timeout=120, check=True, **kw):
    out = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                         timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (" ".join(map(str, argv)), out.returncode,
                                                       out.stdout, out.stderr))
    return out


def skip_unless_root():
    if os.geteuid() != 0:
        return "needs root (chroot, dpkg into a test root, systemd-nspawn)"
    for tool in ("chroot", "tar", "dpkg-deb", "debootstrap"):
        if not shutil.which(tool):
            return "%s not installed (scripts/install-deps.sh)" % tool
    return None


def skip_in_sanitizer_build():
    """The packages are built by scripts/package.sh in its own folder, whatever
    build runs the test: in the sanitizer build's ctest (CI runs the deploy tests
    in both) they would only repeat the normal build's run."""
    cache = os.path.join(os.environ.get("EDS_BUILD_DIR") or source_path("build"),
                         "CMakeCache.txt")
    try:
        with open(cache) as f:
            if "\nEDS_SANITIZE:BOOL=ON\n" in f.read():
                return "the packages do not depend on this (sanitizer) build: tested in build/"
    except FileNotFoundError:
        pass
    return None


def packages_for_module(prefix, tools=()):
    """For a setUpModule: raises SkipTest with the reason these tests cannot run
    here, else builds the packages into a new temp folder; returns (folder, debs)."""
    why = skip_in_sanitizer_build() or skip_unless_root()
    for tool in tools:
        if not why and not shutil.which(tool):
            why = "%s not installed (scripts/install-deps.sh)" % tool
    if why:
        raise unittest.SkipTest(why)
    tmp = tempfile.mkdtemp(prefix=prefix)
    return tmp, build_packages(os.path.join(tmp, "debs"))


def build_packages(outdir, arch=None):
    """Runs scripts/package.sh (its own build folder, build-deb/) into outdir."""
    argv = [source_path("scripts", "package.sh"), "--out", outdir]
    if arch:
        argv += ["--arch", arch]
    out = run(argv, timeout=900, stdin=subprocess.DEVNULL,
              env=dict(os.environ, JOBS=os.environ.get("JOBS", "2")))
    debs = {}
    for name in os.listdir(outdir):
        if name.endswith(".deb"):
            debs[name.split("_")[0]] = os.path.join(outdir, name)
    if not debs:
        raise AssertionError("package.sh made no .deb:\n%s" % out.stdout)
    return debs


# What a snapshot ignores: file systems the kernel or the test provides, dpkg's
# and the tools' own logs and databases (compared separately where it matters),
# and the account tools' backup copies (/etc/passwd- etc.).
_SNAPSHOT_SKIP = ("/proc", "/sys", "/dev", "/run", "/tmp", "/var/log", "/var/cache",
                  "/var/lib/dpkg")
_SNAPSHOT_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow",
                   "/var/lib/dpkg/statoverride")


class TestRoot:
    """A fresh Debian 12 root in a temp folder (removed by close())."""

    def __init__(self):
        tarball = run([source_path("scripts", "make-test-root.sh"), "--print-path"]).stdout.strip()
        run([source_path("scripts", "make-test-root.sh")], timeout=900)
        self.tmp = tempfile.mkdtemp(prefix="eds-debroot-")
        self.path = os.path.join(self.tmp, "root")
        os.mkdir(self.path)
        run(["tar", "-C", self.path, "--numeric-owner", "-xf", tarball], timeout=300)
        self.container = None

    def host_path(self, path):
        return os.path.join(self.path, path.lstrip("/"))

    def chroot(self, argv, user=None, check=True, timeout=120, input=None):
        """Runs argv inside the root (as user, a name known there)."""
        cmd = ["chroot"]
        if user:
            cmd.append("--userspec=%s:%s" % (user, user))
        cmd += [self.path] + list(argv)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "DEBIAN_FRONTEND": "noninteractive"}
        return run(cmd, check=check, timeout=timeout, env=env, input=input)

    def chroot_argv(self, argv, user):
        return ["chroot", "--userspec=%s:%s" % (user, user), self.path] + list(argv)

    def install_debs(self, debs):
        """dpkg -i inside the root: the packages' maintainer scripts run there."""
        inside = []
        os.makedirs(self.host_path("/tmp/debs"), exist_ok=True)
        for deb in debs:
            shutil.copy(deb, self.host_path("/tmp/debs"))
            inside.append("/tmp/debs/" + os.path.basename(deb))
        return self.chroot(["dpkg", "-i"] + inside, timeout=300)

    def write(self, path, text, owner="root", group="root", mode=0o640):
        """A file as the operator writes it (owner and group: names inside the root)."""
        host = self.host_path(path)
        with open(host, "w") as f:
            f.write(text)
        self.chroot(["chown", "%s:%s" % (owner, group), path])
        os.chmod(host, mode)

    def write_credentials(self, tmp, device, password):
        """The operator's files, as docs/getting-started.md makes them: the device's
        line in devices.passwd and the broker password (root:eds-gateway 0640), the
        agent's password (root:eds-agent 0640)."""
        devices = os.path.join(tmp, "devices.passwd")
        run([MOSQUITTO_PASSWD, "-c", "-b", devices, device, password])
        with open(devices) as f:
            self.write("/etc/eds/devices.passwd", f.read(), group="eds-gateway")
        self.write("/etc/eds/broker.pw", GATEWAY_PASSWORD + "\n", group="eds-gateway")
        self.write("/etc/eds/agent.pw", password + "\n", group="eds-agent")

    def stat(self, path):
        """(user name, group name, mode) of path, as the root's ls says."""
        out = self.chroot(["stat", "-c", "%U %G %a", path]).stdout.split()
        return out[0], out[1], int(out[2], 8)

    def read(self, path):
        with open(self.host_path(path)) as f:
            return f.read()

    def set_option(self, path, name, value):
        """Replaces the line `name ...` (or `#name ...`) of a config file."""
        lines = self.read(path).splitlines()
        done = False
        for i, line in enumerate(lines):
            if line.split(" ")[0] in (name, "#" + name) and not done:
                lines[i] = "%s %s" % (name, value)
                done = True
        if not done:
            lines.append("%s %s" % (name, value))
        with open(self.host_path(path), "w") as f:
            f.write("\n".join(lines) + "\n")

    def snapshot(self):
        """Every path (type, mode, owner) outside _SNAPSHOT_SKIP, and the account and
        statoverride files' contents: what a package could leave behind."""
        entries = {}
        for dirpath, dirnames, filenames in os.walk(self.path):
            rel = "/" + os.path.relpath(dirpath, self.path).lstrip(".")
            rel = "/" if rel == "/" else rel.rstrip("/")
            dirnames[:] = [d for d in dirnames
                           if not (rel.rstrip("/") + "/" + d).startswith(_SNAPSHOT_SKIP)]
            for name in dirnames + filenames:
                full = os.path.join(dirpath, name)
                p = rel.rstrip("/") + "/" + name
                if p.startswith(_SNAPSHOT_SKIP) or p.endswith("-") and p.startswith("/etc/"):
                    continue
                if p in ("/etc/ld.so.cache",):
                    continue  # rewritten by the ldconfig trigger, same entries after purge
                st = os.lstat(full)
                entries[p] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                              st.st_gid)
        contents = {}
        for p in _SNAPSHOT_FILES:
            try:
                contents[p] = self.read(p)
            except FileNotFoundError:
                contents[p] = None
        return entries, contents

    # ---- systemd-nspawn -----------------------------------------------------------

    def boot(self, timeout=60):
        """Boots the root with systemd as PID 1 (systemd-nspawn --boot, the host's
        network) and waits until its systemd has finished starting up."""
        if not shutil.which("systemd-nspawn") or not shutil.which("nsenter"):
            raise FileNotFoundError("systemd-nspawn/nsenter not installed")
        # The container shares the host's network: none of its timers may reach
        # out (apt's daily update would run at boot: Persistent=true).
        self.chroot(["systemctl", "mask", "apt-daily.timer", "apt-daily-upgrade.timer",
                     "e2scrub_all.timer", "dpkg-db-backup.timer"])
        self.console = open(os.path.join(self.tmp, "console.log"), "w")
        # --register=no --keep-unit: no host systemd/D-Bus is needed (the host may not run
        # systemd); --pipe: no terminal.
        self.container = subprocess.Popen(
            ["systemd-nspawn", "-q", "-D", self.path, "--boot", "--register=no",
             "--keep-unit", "--pipe"], stdin=subprocess.DEVNULL, stdout=self.console,
            stderr=subprocess.STDOUT)
        self.leader = wait_until(self._leader, timeout=timeout,
                                 what="the container's PID 1 (console: %s)" % self.console.name)
        state = wait_until(lambda: self._system_state() in ("running", "degraded") and
                           self._system_state(), timeout=timeout,
                           what="the container's systemd to finish starting")
        return state

    def _leader(self):
        if self.container.poll() is not None:
            raise AssertionError("systemd-nspawn exited (%d):\n%s" % (
                self.container.returncode, open(self.console.name).read()[-3000:]))
        try:
            with open("/proc/%d/task/%d/children" % (self.container.pid, self.container.pid)) as f:
                kids = f.read().split()
        except FileNotFoundError:
            return None
        return int(kids[0]) if kids else None

    def _system_state(self):
        out = self.inside(["systemctl", "is-system-running"], check=False)
        return out.stdout.strip()

    def inside(self, argv, check=True, timeout=60):
        """Runs argv in the booted container (all its namespaces, as root)."""
        cmd = ["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-p", "-r", "-w"] + \
            list(argv)
        return run(cmd, check=check, timeout=timeout,
                   env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})

    def unit(self, name, *props):
        """systemctl show NAME -p ...: {property: value}."""
        out = self.inside(["systemctl", "show", name] + ["-p%s" % p for p in props]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def poweroff(self, timeout=60):
        if not self.container or self.container.poll() is not None:
            return
        self.inside(["systemctl", "poweroff", "--no-block"], check=False)
        try:
            self.container.wait(timeout)
        except subprocess.TimeoutExpired:
            self.container.kill()  # our own systemd-nspawn, by its pid
            self.container.wait()
        self.console.close()

    def close(self):
        try:
            self.poweroff()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def poll_for(seconds, cond):
    """Calls cond() for `seconds` (bounded observation, e.g. 'no restart happens');
    returns the first true value, or None if it never was."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    return None


__all__ = ["run", "skip_unless_root", "build_packages", "TestRoot", "poll_for", "RigTimeout"]
