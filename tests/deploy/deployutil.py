"""Small helpers shared by the deployment tests that drive outside programs
(a Docker engine, a browser):

  stop_process(proc, grace)  SIGTERM to a subprocess.Popen we started, SIGKILL
                             after `grace` seconds; only that pid
  main()                     unittest.main, then exit 77 (ctest: skipped) when
                             every test was skipped, after printing why
"""

import signal
import subprocess
import sys
import unittest


def stop_process(proc, grace):
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def main():
    result = unittest.main(verbosity=2, exit=False).result
    if result.skipped and not result.failures and not result.errors and \
            result.testsRun <= len(result.skipped):
        print("SKIPPED: %s" % result.skipped[0][1])
        sys.exit(77)
    sys.exit(0 if result.wasSuccessful() else 1)
