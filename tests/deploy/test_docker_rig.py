"""The docker rig (docker/), checked without a Docker engine.

1. Static: `docker-compose config` accepts docker/docker-compose.yml (or, if
   Debian's docker-compose is missing, python3-yaml parses it); the rig has
   the services the docs promise; every path that a Dockerfile COPYs or the
   compose file bind-mounts exists in the repository and is not excluded by
   the root .dockerignore; every image is built from docker/Dockerfile.*
   (the broker from Debian's mosquitto, nothing from Docker Hub); the gateway
   and agent Dockerfiles are multi-stage on
   debian:12-slim, the runtime stage installs no -dev package and runs as a
   non-root user.
2. The rig's own commands, run here on 127.0.0.1: make-secrets.sh writes the
   password files, the mosquitto entrypoint builds the broker config from
   broker-config/, the gateway runs with docker/gateway/eds-gateway.conf,
   the agents with the compose file's command lines and the viewer with its
   mosquitto_sub command; records from all three agents must reach the
   viewer. Container paths and host names are mapped to temp folders and
   loopback ports, nothing else is changed.
"""

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import edsrig  # noqa: E402
from edsrig import Process, bin_path, can_connect, free_port, source_path, wait_until  # noqa: E402

import yaml  # noqa: E402  python3-yaml

DOCKER = source_path("docker")
COMPOSE = os.path.join(DOCKER, "docker-compose.yml")
DOCKERFILES = {"gateway": os.path.join(DOCKER, "Dockerfile.gateway"),
               "agent": os.path.join(DOCKER, "Dockerfile.agent")}
DEVICES = ["myrio-01", "myrio-02", "myrio-03"]


def load_compose():
    """The compose file as docker-compose resolves it (anchors and merges
    applied), or as python3-yaml reads it when docker-compose is missing."""
    dc = shutil.which("docker-compose")
    if dc:
        out = subprocess.run([dc, "-f", COMPOSE, "config"], capture_output=True, text=True,
                             timeout=60, env=dict(os.environ, COMPOSE_PROJECT_NAME="edstest"))
        if out.returncode != 0:
            raise AssertionError("docker-compose config failed:\n" + out.stderr)
        return yaml.safe_load(out.stdout), True
    with open(COMPOSE) as f:
        return yaml.safe_load(f), False


def dockerfile_stages(path):
    """[(base image, [instructions as (KEYWORD, args)])] per FROM, with line
    continuations joined and comments dropped."""
    with open(path) as f:
        text = f.read()
    text = re.sub(r"\\\n", " ", text)
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stages.append((rest.split()[0], []))
        elif stages:
            stages[-1][1].append((word, rest.strip()))
    return stages


def copy_sources(args):
    """Source paths of a COPY/ADD (JSON or shell form), or [] for COPY --from."""
    if "--from=" in args:
        return []
    parts = [p for p in shlex.split(args) if not p.startswith("--")]
    if args.lstrip().startswith("["):
        parts = yaml.safe_load(args)
    return parts[:-1]


def ignored(path, patterns):
    path = path.rstrip("/")
    for pat in patterns:
        pat = pat.rstrip("/")
        if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path.split("/")[0], pat):
            return True
    return False


class StaticChecks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.compose, cls.by_docker_compose = load_compose()

    def test_compose_has_the_rig(self):
        services = self.compose["services"]
        for name in ["mosquitto", "gateway", "agent-1", "agent-2", "agent-3", "viewer"]:
            self.assertIn(name, services)
        agents = [services["agent-%d" % i]["command"] for i in (1, 2, 3)]
        self.assertEqual(sorted(c[c.index("--device") + 1] for c in agents), DEVICES)
        for cmd in agents:
            self.assertIn("--simulate", cmd)
        viewer = " ".join(services["viewer"]["command"])
        self.assertIn("mosquitto_sub", viewer)
        self.assertIn("-v -t 'energy/#'", viewer)
        mounts = [str(v) for v in services["mosquitto"]["volumes"]]
        self.assertTrue(any("broker-config" in m for m in mounts), mounts)

    def test_images_are_built_here(self):
        """No image from a registry: every service runs an image the rig builds from
        debian:12-slim (docker/Dockerfile.*), the broker with Debian's mosquitto."""
        for name, svc in self.compose["services"].items():
            self.assertIn("build", svc, "%s pulls %s" % (name, svc.get("image")))
            self.assertRegex(svc["image"], r"^eds-(broker|gateway|agent):dev$")
        stages = dockerfile_stages(os.path.join(DOCKER, "Dockerfile.broker"))
        self.assertEqual([b for b, _ in stages], ["debian:12-slim"])
        runs = " ".join(a for w, a in stages[0][1] if w == "RUN")
        self.assertRegex(runs, r"apt-get install .*\bmosquitto\b")

    def test_build_stages_share_their_package_layer(self):
        """The gateway's and the agent's build stages install the same packages with the
        same RUN line, so the second build reuses the first one's layer (one apt run)."""
        first_runs = [[a for w, a in dockerfile_stages(p)[0][1] if w == "RUN"][0]
                      for p in DOCKERFILES.values()]
        self.assertEqual(first_runs[0], first_runs[1])

    def test_bind_mounts_exist(self):
        checked = 0
        for name, svc in self.compose["services"].items():
            for vol in svc.get("volumes", []):
                source = vol["source"] if isinstance(vol, dict) else vol.split(":")[0]
                vtype = vol.get("type") if isinstance(vol, dict) else None
                if vtype == "volume" or not (source.startswith(("/", "."))):
                    continue  # a named volume
                path = source if os.path.isabs(source) else os.path.join(DOCKER, source)
                self.assertTrue(os.path.exists(path), "%s mounts %s: missing" % (name, path))
                checked += 1
        self.assertGreaterEqual(checked, 2)

    def test_build_contexts_and_dockerfiles(self):
        for name in ["gateway", "agent-1"]:
            build = self.compose["services"][name]["build"]
            context = build["context"]
            if not os.path.isabs(context):
                context = os.path.join(DOCKER, context)
            self.assertEqual(os.path.realpath(context), os.path.realpath(source_path()))
            self.assertTrue(os.path.isfile(os.path.join(context, build["dockerfile"])))

    def test_dockerfiles(self):
        for name, path in DOCKERFILES.items():
            with self.subTest(dockerfile=name):
                stages = dockerfile_stages(path)
                self.assertGreaterEqual(len(stages), 2, "multi-stage")
                for base, _ in stages:
                    self.assertEqual(base, "debian:12-slim")
                ignore_file = source_path(".dockerignore")
                self.assertTrue(os.path.isfile(ignore_file), ignore_file)
                with open(ignore_file) as f:
                    patterns = [ln.strip() for ln in f
                                if ln.strip() and not ln.startswith("#")]
                copied = 0
                for _, instructions in stages:
                    for word, args in instructions:
                        if word not in ("COPY", "ADD"):
                            continue
                        for src in copy_sources(args):
                            full = source_path(src)
                            self.assertTrue(os.path.exists(full), "%s: COPY %s: missing" % (
                                name, src))
                            self.assertFalse(ignored(src, patterns),
                                             "%s: COPY %s is excluded by %s" % (name, src,
                                                                                ignore_file))
                            copied += 1
                self.assertGreater(copied, 3)
                # The runtime stage: no compilers or -dev packages, a non-root user.
                runtime = stages[-1][1]
                runs = " ".join(a for w, a in runtime if w == "RUN")
                self.assertNotRegex(runs, r"-dev\b|\bgcc\b|\bcmake\b")
                users = [a for w, a in runtime if w == "USER"]
                self.assertTrue(users and users[-1] not in ("root", "0"), users)
                self.assertTrue(any(w == "COPY" and "--from=build" in a for w, a in runtime))


class BuildStageRecipe(unittest.TestCase):
    """The build stage's cmake configure step, run on a copy of exactly what
    the Dockerfile COPYs: catches a source folder the build needs but the
    Dockerfile does not copy (the configure step fails on it)."""

    def test_configure_with_only_the_copied_files(self):
        for name, path in DOCKERFILES.items():
            with self.subTest(dockerfile=name), tempfile.TemporaryDirectory(
                    prefix="eds-docker-%s-" % name) as tmp:
                stages = dockerfile_stages(path)
                build_stage = stages[0][1]
                src = os.path.join(tmp, "src")
                os.mkdir(src)
                for word, args in build_stage:
                    if word != "COPY":
                        continue
                    for item in copy_sources(args):
                        full = source_path(item)
                        dest = os.path.join(src, item.rstrip("/"))
                        if os.path.isdir(full):
                            shutil.copytree(full, dest, ignore=shutil.ignore_patterns(
                                "build*", "__pycache__"))
                        else:
                            shutil.copy(full, dest)
                runs = " ".join(a for w, a in build_stage if w == "RUN")
                m = re.search(r"cmake -S \. -B (\S+)((?:\s+-D\S+)+)", runs)
                self.assertTrue(m, "no 'cmake -S . -B DIR -D...' in %s" % path)
                flags = m.group(2).split()
                out = subprocess.run(["cmake", "-S", src, "-B", os.path.join(tmp, "build")] +
                                     flags, capture_output=True, text=True, timeout=120)
                self.assertEqual(out.returncode, 0, "%s: configure failed:\n%s%s" % (
                    name, out.stdout[-2000:], out.stderr[-3000:]))


class RigCommands(unittest.TestCase):
    """Runs the rig's commands on this machine, as the containers would."""

    def setUp(self):
        self.compose, _ = load_compose()
        self.tmp = tempfile.mkdtemp(prefix="eds-docker-rig-")
        self.procs = []

    def tearDown(self):
        for p in reversed(self.procs):
            p.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, argv, name):
        p = Process(argv, name=name)
        self.procs.append(p)
        return p

    def test_rig_delivers_records_from_three_agents(self):
        secrets = os.path.join(self.tmp, "secrets")
        env = dict(os.environ, SECRETS_DIR=secrets, DEVICES=" ".join(DEVICES), CHOWN="0")
        subprocess.run(["/bin/sh", os.path.join(DOCKER, "rig", "make-secrets.sh")], env=env,
                       check=True, timeout=60, capture_output=True)
        for f in ["mosquitto.passwd", "broker.pw", "reader.pw", "devices.passwd"] + [
                d + ".pw" for d in DEVICES]:
            path = os.path.join(secrets, f)
            self.assertTrue(os.path.isfile(path), f)
            self.assertEqual(os.stat(path).st_mode & 0o077, 0, "%s is readable by others" % f)
        # Run again: keeps the passwords.
        with open(os.path.join(secrets, "broker.pw")) as f:
            before = f.read()
        subprocess.run(["/bin/sh", os.path.join(DOCKER, "rig", "make-secrets.sh")], env=env,
                       check=True, timeout=60, capture_output=True)
        with open(os.path.join(secrets, "broker.pw")) as f:
            self.assertEqual(f.read(), before)

        # mosquitto from the entrypoint's config
        mqtt_port, gw_port = free_port(), free_port()
        data = os.path.join(self.tmp, "data")
        os.mkdir(data)
        conf = os.path.join(self.tmp, "eds.conf")
        subprocess.run(["/bin/sh", os.path.join(DOCKER, "mosquitto", "entrypoint.sh")],
                       env=dict(os.environ, EDS_BROKER_CONFIG=source_path("broker-config"),
                                SECRETS_DIR=secrets, MQTT_PORT=str(mqtt_port),
                                MQTT_BIND="127.0.0.1", MOSQUITTO_DATA=data + "/", OUT=conf,
                                PRINT_ONLY="1"), check=True, timeout=30)
        with open(conf) as f:
            text = f.read()
        self.assertIn("allow_anonymous false", text)
        self.assertIn("acl_file %s/acl" % source_path("broker-config"), text)
        if os.geteuid() == 0:
            with open(conf, "a") as f:  # as root mosquitto would become user mosquitto
                f.write("user root\n")
        broker = self.start([edsrig.MOSQUITTO, "-c", conf], "mosquitto")
        wait_until(lambda: can_connect(mqtt_port), 10, "mosquitto on %d" % mqtt_port)

        # The gateway with the container's config, paths mapped.
        state = os.path.join(self.tmp, "state")
        os.mkdir(state)
        mapping = [("/run/secrets/eds", secrets),
                   ("/usr/share/eds/schemas", source_path("schemas")),
                   ("/usr/share/eds-agent/schemas", source_path("schemas")),
                   ("/var/lib/eds-gateway", state)]

        def mapped(s):
            for a, b in mapping:
                s = s.replace(a, b)
            return s

        gw_conf = os.path.join(self.tmp, "eds-gateway.conf")
        with open(os.path.join(DOCKER, "gateway", "eds-gateway.conf")) as f:
            lines = []
            for line in f:
                words = line.split()
                if words[:2] == ["listener", "5883"]:
                    line = "listener %d 127.0.0.1\n" % gw_port
                elif words[:2] == ["broker_host", "mosquitto"]:
                    line = "broker_host 127.0.0.1\n"
                elif words[:2] == ["broker_port", "1883"]:
                    line = "broker_port %d\n" % mqtt_port
                lines.append(mapped(line))
        with open(gw_conf, "w") as f:
            f.writelines(lines)
        gw_cmd = self.compose["services"]["gateway"]["command"]
        self.assertEqual(gw_cmd, ["-c", "/etc/eds/eds-gateway.conf"])
        gateway = self.start([bin_path("eds-gateway"), "-c", gw_conf], "eds-gateway")
        wait_until(lambda: can_connect(gw_port) or not gateway.running(), 10,
                   "gateway on %d" % gw_port)
        self.assertTrue(gateway.running(), gateway.output())

        # The viewer, with the compose file's shell command.
        viewer_cmd = self.compose["services"]["viewer"]["command"][0]
        viewer_cmd = viewer_cmd.replace("$$", "$")  # compose's escape
        viewer_cmd = viewer_cmd.replace("-h mosquitto", "-h 127.0.0.1 -p %d" % mqtt_port)
        viewer = self.start(["/bin/sh", "-c", mapped(viewer_cmd)], "viewer")
        viewer.wait_for_line(r"^energy/_gateway/status ", timeout=10)

        # The three agents with their compose command lines.
        for i, dev in enumerate(DEVICES, 1):
            spool = os.path.join(self.tmp, "spool-%d" % i)
            argv = [mapped(a) for a in self.compose["services"]["agent-%d" % i]["command"]]
            argv = [a.replace("gateway:5883", "127.0.0.1:%d" % gw_port) for a in argv]
            argv = [spool if a == "/var/lib/eds-agent" else a for a in argv]
            self.start([bin_path("eds-agent")] + argv, dev)
        try:
            for dev in DEVICES:
                viewer.wait_for_line(r"^energy/%s/status \{\"online\":true" % dev, timeout=15)
                viewer.wait_for_line(r"^energy/%s/data \{\"timestamp\":" % dev, timeout=15)
        except AssertionError:
            for p in self.procs:
                if p is not viewer:
                    print("--- %s:\n%s" % (p.name, "\n".join(p.lines()[-15:])))
            raise
        self.assertTrue(broker.running())


if __name__ == "__main__":
    unittest.main(verbosity=2)
