#!/usr/bin/python3
"""The docker rig (docker/docker-compose.yml) run for real in a Docker engine.

Builds the three images (broker, gateway, agent) from debian:12-slim, brings
the rig up with docker-compose, and checks what a user would:
  - records from the three simulated myRIOs reach the viewer;
  - nothing is published beyond 127.0.0.1 (only the gateway's agent port);
  - the gateway container killed (SIGKILL to its process) comes back by its
    restart policy, and no record is lost across it: every device's samples
    seen by the viewer have no gap, and new ones arrive after the restart;
  - `down -v` leaves no container, volume or network of the project.
Exit 77 (ctest: skipped) where no Docker engine can run, saying why.
See tests/deploy/dockerengine.py for how the engine and base image are made.
"""

import json
import os
import re
import signal
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import debroot  # noqa: E402
import deployutil  # noqa: E402
import dockerengine  # noqa: E402
from edsrig import free_port, source_path, wait_until  # noqa: E402

COMPOSE = source_path("docker", "docker-compose.yml")
DEVICES = ["myrio-01", "myrio-02", "myrio-03"]
IMAGES = [("docker/Dockerfile.broker", "eds-broker:dev"),
          ("docker/Dockerfile.gateway", "eds-gateway:dev"),
          ("docker/Dockerfile.agent", "eds-agent:dev")]
DATA = re.compile(r"^energy/(myrio-\d\d)/data (\{.*\})$", re.M)

engine = None
skip_reason = None


def setUpModule():
    global engine, skip_reason
    # The images build from the source tree, not from this build folder: the
    # sanitizer build's ctest would only repeat the normal build's run.
    skip_reason = debroot.skip_in_sanitizer_build()
    if skip_reason:
        return
    try:
        engine = dockerengine.Engine.find_or_start()
    except dockerengine.Unavailable as e:
        skip_reason = str(e)


def tearDownModule():
    if engine:
        engine.stop()


class RigInDocker(unittest.TestCase):
    def setUp(self):
        if skip_reason:
            self.skipTest(skip_reason)
        self.compose = engine.compose_cmd()
        if not self.compose:
            self.skipTest("neither docker-compose nor `docker compose` is installed")
        self.project = "edstest%d" % os.getpid()
        self.env = {"EDS_GATEWAY_PORT": str(free_port())}

    def dc(self, *args, timeout=300, check=True):
        return dockerengine._run(self.compose + ["-p", self.project, "-f", COMPOSE] + list(args),
                                 timeout, env=dict(engine.env, **self.env), check=check)

    def cid(self, service):
        ids = self.dc("ps", "-q", service, timeout=60).stdout.split()
        self.assertEqual(len(ids), 1, "%s: containers %s" % (service, ids))
        return ids[0]

    def inspect(self, cid):
        return json.loads(engine.run(["inspect", cid], 30).stdout)[0]

    def viewer_samples(self, viewer):
        """{device: [sample, ...]} in the viewer's output so far."""
        out = engine.run(["logs", viewer], 60).stdout
        seen = {d: [] for d in DEVICES}
        for dev, body in DATA.findall(out):
            seen.setdefault(dev, []).append(json.loads(body)["sample"])
        return seen

    def test_rig_runs_and_survives_a_gateway_crash(self):
        base = engine.timed("base image", engine.ensure_base)
        for dockerfile, tag in IMAGES:
            engine.build(source_path(dockerfile), tag, source_path())
        engine.prune()
        self.addCleanup(self.down)
        engine.timed("up", lambda: self.dc("up", "-d", "--no-build"))

        viewer, gateway = self.cid("viewer"), self.cid("gateway")
        t0 = time.monotonic()
        wait_until(lambda: all(self.viewer_samples(viewer)[d] for d in DEVICES), 90,
                   "records from %s at the viewer" % ", ".join(DEVICES), interval=0.5)
        engine.log.append("first records from all three: %.1f s after up" % (
            time.monotonic() - t0))

        # Published ports: only the gateway's agent port, only on 127.0.0.1.
        published = []
        for svc in ["secrets", "mosquitto", "gateway", "agent-1", "agent-2", "agent-3",
                    "viewer"]:
            ids = self.dc("ps", "-q", svc, timeout=60).stdout.split()
            for c in ids:
                for port, binds in (self.inspect(c)["NetworkSettings"]["Ports"] or {}).items():
                    for b in binds or []:
                        published.append((svc, port, b["HostIp"], b["HostPort"]))
        self.assertEqual(published, [("gateway", "5883/tcp", "127.0.0.1",
                                      self.env["EDS_GATEWAY_PORT"])])

        # Crash the gateway: SIGKILL to its process (ours: the container we started).
        state = self.inspect(gateway)["State"]
        before = self.viewer_samples(viewer)
        os.kill(state["Pid"], signal.SIGKILL)
        t0 = time.monotonic()
        wait_until(lambda: (lambda s: s["Running"] and s["Pid"] != state["Pid"])(
            self.inspect(gateway)["State"]), 60, "the gateway container to restart",
            interval=0.5)
        self.assertGreaterEqual(self.inspect(gateway)["RestartCount"], 1)
        # Records made after the crash arrive: each device passes its highest sample
        # at the crash by 10 (5 s at 2 records/s).
        wait_until(lambda: all(max(self.viewer_samples(viewer)[d]) >= max(before[d]) + 10
                               for d in DEVICES), 90,
                   "records after the gateway's restart", interval=0.5)
        engine.log.append("records flowing again: %.1f s after the kill" % (
            time.monotonic() - t0))
        after = self.viewer_samples(viewer)
        for dev in DEVICES:
            got = set(after[dev])
            missing = sorted(set(range(min(got), max(got) + 1)) - got)
            self.assertEqual(missing, [], "%s: samples lost across the crash" % dev)
        logs = engine.run(["logs", gateway], 60).stdout + engine.run(
            ["logs", gateway], 60).stderr
        self.assertGreaterEqual(logs.count("connected to the broker"), 2, logs)
        print("\n".join(["engine %s; base image %s" % (engine.host, base)] + engine.log))
        print("samples per device: %s" % {d: len(after[d]) for d in DEVICES})

    def down(self):
        engine.timed("down -v", lambda: self.dc("down", "-v", "--remove-orphans"))
        label = "label=com.docker.compose.project=%s" % self.project
        for kind in ["ps -aq", "volume ls -q", "network ls -q"]:
            left = engine.run(kind.split() + ["--filter", label], 30).stdout.split()
            self.assertEqual(left, [], "%s after down -v: %s" % (kind, left))


if __name__ == "__main__":
    deployutil.main()
