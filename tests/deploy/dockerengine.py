"""dockerengine: a Docker engine for the tests, and the rig's images in it.

  Engine.find_or_start()  the engine at DOCKER_HOST or /var/run/docker.sock if one
                          answers; else, as root with Debian's docker.io installed, a
                          private dockerd (own socket, exec root and pid file; data
                          root cached in ~/.cache/eds/docker so images survive runs);
                          else raises Unavailable with the reason (the test skips)
  Engine.ensure_base()    debian:12-slim: present, pulled, or made here with
                          `debootstrap --variant=minbase bookworm` + `docker import`
                          when no registry answers (tarball cached in ~/.cache/eds)
  Engine.build(...)       `docker build --network host` with the classic builder
  Engine.compose(...)     docker-compose 1.29 (Debian) or `docker compose` v2

The private dockerd runs with --iptables=false --ip-masq=false --bridge=none:
it changes no firewall rule and makes no default bridge. Containers on the
compose project's own network still reach each other; published ports go
through docker-proxy on the host address the compose file names (127.0.0.1).
Without NAT a container cannot reach deb.debian.org, so image builds use the
host's network (`--network host`), as apt on the host would.
Stopped by its pid (SIGTERM, then SIGKILL after 30 s); nothing else is killed.
Its pid is kept in ~/.cache/eds/dockerd.pid, so a run that was killed before
it could stop its dockerd has it stopped by the next run (if that pid still
runs dockerd on our data root).
"""

import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time

import deployutil

CACHE = os.path.join(os.path.expanduser("~"), ".cache", "eds")
BASE_IMAGE = "debian:12-slim"
BASE_TARBALL = os.path.join(CACHE, "debian-12-minbase.tar")
PIDFILE = os.path.join(CACHE, "dockerd.pid")  # our private dockerd: "PID RUN_FOLDER"
MIRROR = "http://deb.debian.org/debian"
# What a real debian:12-slim lists (minbase's sources.list has only "bookworm main").
SOURCES = ("deb http://deb.debian.org/debian bookworm main\n"
           "deb http://deb.debian.org/debian bookworm-updates main\n"
           "deb http://deb.debian.org/debian-security bookworm-security main\n")


class Unavailable(Exception):
    """No engine can run here; the message says why."""


def _run(argv, timeout, env=None, check=True, what=None):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if check and out.returncode != 0:
        raise AssertionError("%s failed (exit %d):\n%s%s" % (
            what or " ".join(argv), out.returncode, out.stdout[-3000:], out.stderr[-3000:]))
    return out


def _stop_leftover_dockerd():
    """A test run that was killed (a ctest timeout) cannot stop the dockerd it started,
    which then holds the cached data root. Its pid is in PIDFILE: stop it if that pid
    still runs our dockerd on our data root, and clean its run folder."""
    try:
        with open(PIDFILE) as f:
            pid_s, work = f.read().split()
        with open("/proc/%s/cmdline" % pid_s, "rb") as f:
            argv = f.read().split(b"\0")
    except (OSError, ValueError):
        return
    if os.path.basename(argv[0]) != b"dockerd" or \
            os.path.join(CACHE, "docker").encode() not in argv:
        return
    pid = int(pid_s)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if os.path.exists("/proc/%d" % pid):
        os.kill(pid, signal.SIGKILL)
    _remove_run_folder(work)


def _remove_run_folder(work):
    # dockerd leaves its default network namespace bind-mounted in the exec root.
    netns = os.path.join(work, "x", "netns", "default")
    if os.path.ismount(netns):
        subprocess.run(["umount", netns], timeout=30, check=False)
    shutil.rmtree(work, ignore_errors=True)


class Engine:
    def __init__(self, host, docker, proc=None, workdir=None, lock=None):
        self.host = host          # DOCKER_HOST value
        self.docker = docker      # the docker CLI
        self.proc = proc          # our private dockerd, or None
        self.workdir = workdir
        self._lock = lock
        self.env = dict(os.environ, DOCKER_HOST=host)
        self.log = []             # what took how long, for the test's output

    # ---- engine ----------------------------------------------------------------------
    @classmethod
    def find_or_start(cls):
        docker = shutil.which("docker", path="/usr/bin") or shutil.which("docker")
        if not docker:
            raise Unavailable("no docker CLI (apt-get install docker.io)")
        for host in filter(None, [os.environ.get("DOCKER_HOST"), "unix:///var/run/docker.sock"]):
            if host.startswith("unix://") and not os.path.exists(host[7:]):
                continue
            out = _run([docker, "version", "--format", "{{.Server.Version}}"], 20,
                       env=dict(os.environ, DOCKER_HOST=host), check=False)
            if out.returncode == 0:
                return cls(host, docker)
        dockerd = shutil.which("dockerd")
        if not dockerd:
            raise Unavailable("no Docker engine answers and dockerd is not installed "
                              "(apt-get install docker.io)")
        if os.geteuid() != 0:
            raise Unavailable("no Docker engine answers and starting one needs root")
        os.makedirs(CACHE, exist_ok=True)
        # One private engine per data root at a time: a second test run waits here.
        lock = open(os.path.join(CACHE, "docker.lock"), "w")
        deadline = time.monotonic() + 900
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Unavailable("another test run holds %s/docker.lock" % CACHE)
                time.sleep(1)
        _stop_leftover_dockerd()
        # Short paths: containerd's sockets live under the exec root (108-byte limit).
        work = tempfile.mkdtemp(prefix="eds-dk-", dir="/tmp")
        sock = os.path.join(work, "docker.sock")
        with open(os.path.join(work, "dockerd.log"), "w") as log:
            proc = subprocess.Popen(
                [dockerd, "--iptables=false", "--ip-masq=false", "--bridge=none",
                 "--data-root", os.path.join(CACHE, "docker"), "--exec-root",
                 os.path.join(work, "x"), "--pidfile", os.path.join(work, "dockerd.pid"),
                 "--host", "unix://" + sock],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        with open(PIDFILE, "w") as f:
            f.write("%d %s\n" % (proc.pid, work))
        eng = cls("unix://" + sock, docker, proc, work, lock)
        try:
            eng._wait_ready(sock, 180)
            eng._forget_leftovers()
        except BaseException:
            eng.stop()
            raise
        return eng

    def _wait_ready(self, sock, timeout):
        """Until our dockerd answers `docker version` (it may take long on a busy machine);
        Unavailable if it exits, AssertionError after timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise Unavailable("dockerd exited (%s): %s" % (self.proc.returncode,
                                                               self.dockerd_log()[-800:]))
            try:
                if os.path.exists(sock) and self.run(["version"], 30, check=False).returncode == 0:
                    return
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("dockerd did not answer within %d s:\n%s" % (
                    timeout, self.dockerd_log()[-2000:]))
            time.sleep(0.2)

    def dockerd_log(self):
        if not self.workdir:
            return ""
        try:
            with open(os.path.join(self.workdir, "dockerd.log")) as f:
                return f.read()
        except OSError:
            return ""

    def _forget_leftovers(self):
        """Our private engine's data root holds only what earlier test runs left: a run
        that was killed may have left containers that restart with the engine
        (restart: unless-stopped). Remove them, keep the images (the cache)."""
        ids = self.run(["ps", "-aq"], 30).stdout.split()
        if ids:
            self.run(["rm", "-f", "-v"] + ids, 60, check=False)
        self.run(["volume", "prune", "-f"], 60, check=False)
        self.run(["network", "prune", "-f"], 60, check=False)

    def stop(self):
        """Stops our private dockerd (by its pid) and removes its run folder."""
        if self.proc:
            deployutil.stop_process(self.proc, 30)
        if self.workdir:
            _remove_run_folder(self.workdir)
            self.workdir = None
            try:
                os.unlink(PIDFILE)
            except OSError:
                pass
        if self._lock:
            self._lock.close()
            self._lock = None

    # ---- commands ----------------------------------------------------------------------
    def run(self, args, timeout, check=True, env=None):
        return _run([self.docker] + args, timeout, env=dict(self.env, **(env or {})),
                    check=check)

    def timed(self, what, fn):
        t = time.monotonic()
        result = fn()
        self.log.append("%s: %.1f s" % (what, time.monotonic() - t))
        return result

    def has_image(self, ref):
        return self.run(["image", "inspect", ref], 30, check=False).returncode == 0

    def ensure_base(self):
        """debian:12-slim in the engine: present, pulled, or imported from a debootstrap."""
        if self.has_image(BASE_IMAGE):
            return "present"
        if self.run(["pull", BASE_IMAGE], 120, check=False).returncode == 0:
            return "pulled"
        if not os.path.exists(BASE_TARBALL):
            self.timed("debootstrap", self._debootstrap)
        self.timed("docker import", lambda: self.run(
            ["import", "--change", 'CMD ["bash"]', BASE_TARBALL, BASE_IMAGE], 300))
        return "imported from a debootstrap"

    def _debootstrap(self):
        if not shutil.which("debootstrap"):
            raise Unavailable("%s cannot be pulled and debootstrap is not installed" %
                              BASE_IMAGE)
        os.makedirs(CACHE, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="eds-rootfs-") as tmp:
            root = os.path.join(tmp, "root")
            _run(["debootstrap", "--variant=minbase", "bookworm", root, MIRROR], 900)
            shutil.rmtree(os.path.join(root, "var/lib/apt/lists"), ignore_errors=True)
            os.makedirs(os.path.join(root, "var/lib/apt/lists/partial"))
            for name in os.listdir(os.path.join(root, "var/cache/apt/archives")):
                if name.endswith(".deb"):
                    os.unlink(os.path.join(root, "var/cache/apt/archives", name))
            with open(os.path.join(root, "etc/apt/sources.list"), "w") as f:
                f.write(SOURCES)
            part = BASE_TARBALL + ".part"
            _run(["tar", "-C", root, "--numeric-owner", "-cf", part, "."], 300)
            os.rename(part, BASE_TARBALL)

    def build(self, dockerfile, tag, context):
        # The classic builder (BuildKit is not in Debian's docker.io 20.10), on the host's
        # network: the private engine has no NAT for containers.
        return self.timed("build " + tag, lambda: self.run(
            ["build", "--network", "host", "-q", "-f", dockerfile, "-t", tag, context], 1200,
            env={"DOCKER_BUILDKIT": "0"}))

    def prune(self):
        """Drops dangling images (earlier builds of a tag) so the cached data root does
        not grow with every source change; the layers of tagged images stay."""
        self.run(["image", "prune", "-f"], 120, check=False)

    def compose_cmd(self):
        """argv prefix of a compose that works with this engine, or None."""
        dc = shutil.which("docker-compose")
        if dc:
            return [dc]
        if self.run(["compose", "version"], 20, check=False).returncode == 0:
            return [self.docker, "compose"]
        return None
