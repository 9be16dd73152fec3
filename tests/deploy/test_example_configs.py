"""The example configurations in deploy/ and docker/ stay in step with the
programs: every option they set or show commented out is one the program
knows (its --help lists the config-file names), and every commented-out
value marked as a default in the "defaults shown" block is the program's
default. (That the active lines load is checked by --check in
test_package.py and by running the programs in test_getting_started.py and
test_docker_rig.py.)"""

import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from edsrig import bin_path, source_path  # noqa: E402


def options(program):
    """{config-file name: default or None} from `program --help`."""
    text = subprocess.run([bin_path(program), "--help"], capture_output=True, text=True,
                          timeout=30).stdout
    out = {}
    for m in re.finditer(r"\(config file: ([a-z_]+)([^)]*)\)", text):
        d = re.search(r"default ([^,)]+)", m.group(2))
        out[m.group(1)] = d.group(1).strip() if d else None
    return out


def settings(path):
    """[(name, value, commented, in_defaults_block)] of `name value` lines."""
    out, in_defaults = [], False
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if re.match(r"# ---", line):
                in_defaults = "defaults shown" in line
            m = re.match(r"^(#?)([a-z_]+) (\S.*)$", line)
            if m:
                out.append((m.group(2), m.group(3), m.group(1) == "#", in_defaults))
    return out


class ExampleConfigs(unittest.TestCase):
    def check(self, program, path):
        known = options(program)
        self.assertGreater(len(known), 10, "%s --help lists its options" % program)
        found = settings(path)
        self.assertGreater(len(found), 5)
        for name, value, commented, in_defaults in found:
            self.assertIn(name, known, "%s: '%s' is not an option of %s" % (path, name, program))
            if in_defaults and commented and known[name] is not None:
                self.assertEqual(value, known[name], "%s: %s shown as default %s, %s says %s" % (
                    path, name, value, program, known[name]))
        return found

    def test_gateway_examples(self):
        found = self.check("eds-gateway", source_path("deploy", "eds-gateway.conf"))
        self.assertTrue(any(d for _, _, _, d in found), "the defaults block is there")
        # The packaged example shows every option (set or commented out), except the
        # ones it explains in prose (the listeners' and TLS keys are lines too).
        missing = set(options("eds-gateway")) - {name for name, _, _, _ in found}
        self.assertEqual(missing, set(), "options missing from deploy/eds-gateway.conf")
        self.check("eds-gateway", source_path("docker", "gateway", "eds-gateway.conf"))

    def test_agent_example(self):
        self.check("eds-agent", source_path("deploy", "eds-agent.conf"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
