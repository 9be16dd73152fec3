#!/usr/bin/python3
"""The live dashboard (dashboard/, served by Mosquitto's websockets listener) in a real
headless Chromium, with `scripts/run.sh` running as a newcomer would run it:

  - the URL run.sh prints opens the page, which connects as the read-only `dashboard`
    user and shows the gateway online, its stats, the three devices online and a plot
    with points for every numeric field of each device;
  - a record that fails the schema (sent by the test as myrio-03) shows in the rejected
    table with the schema's error;
  - a command sent from the page as `dashboard` is refused by the broker (read-only);
    connected as `reader`, the same form's command is published with an "id" the page
    gives it, the page shows it `delivered` from the gateway's result, a message on
    energy/myrio-01/cmd/result with that id as "ref" and status delivered was published
    (seen by the test's own subscriber, logged in as the read-only `dashboard` user), and
    the agent of myrio-01 has printed it (--cmd-stdout), so it really arrived;
  - a command that is not valid JSON, typed in the form, is published as typed and the
    page shows it `rejected` with the gateway's reason from its result, the same reason
    the test's subscriber got on cmd/result;
  - a screenshot of the page is written to EDS_BUILD_DIR/dashboard.png (and to
    docs/img/dashboard.png with EDS_UPDATE_SCREENSHOT=1, for the README).
Exit 77 (ctest: skipped) without Chromium or python3-websocket, saying why.
"""

import json
import os
import re
import shutil
import signal
import sys
import types
import unittest
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import cdp  # noqa: E402
import deployutil  # noqa: E402
from edsrig import LineClient, Process, Subscriber, source_path, wait_until  # noqa: E402

BUILD_DIR = os.environ.get("EDS_BUILD_DIR") or source_path("build")
DEVICES = ["myrio-01", "myrio-02", "myrio-03"]
FIELDS = ["day-ahead-price", "power_factor", "voltage", "current", "power", "energy", "sample"]
COMMAND = '{"day-ahead-price":77.5,"valid_from":"2026-11-24T11:00:00Z"}'
BAD_COMMAND = '{"day-ahead-price":77.5,}'
RESULT_TOPIC = "energy/myrio-01/cmd/result"


def js_str(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Dashboard(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        why = cdp.available()
        if why:
            raise unittest.SkipTest(why)
        if not os.path.isfile(os.path.join(BUILD_DIR, "dashboard", "index.html")):
            raise AssertionError("%s/dashboard is not built (scripts/build.sh runs "
                                 "scripts/build-dashboard.sh)" % BUILD_DIR)
        env = dict(os.environ, BUILD_DIR=BUILD_DIR, CI="true")
        # SIGINT back to its default first (as in test_run_sh.py): a shell cannot trap a
        # signal that was ignored when it started.
        argv = [source_path("scripts", "run.sh"), "--no-build", "--keep", "--duration", "240"]
        cls.run_sh = Process([sys.executable, "-c", "import os, signal, sys; "
                              "signal.signal(signal.SIGINT, signal.SIG_DFL); "
                              "os.execv(sys.argv[1], sys.argv[1:])"] + argv, name="run.sh",
                             env=env)
        cls.work = None
        try:
            # The temp folder first: it is removed on the way out, also after a failure.
            cls.work = cls.run_sh.wait_for_line(r"^== temp folder (\S+) ", timeout=60).group(1)
            line = cls.run_sh.wait_for_line(r"^== dashboard: http://", timeout=60).string
            cls.url = re.search(r"(http://127\.0\.0\.1:\d+/#\S+)", line).group(1)
            cls.reader_pw = re.search(r"connect as reader, password (\S+)\)", line).group(1)
            m = cls.run_sh.wait_for_line(
                r"^== mosquitto on 127\.0\.0\.1:(\d+) .* eds-gateway on 127\.0\.0\.1:(\d+)")
            cls.broker = types.SimpleNamespace(host="127.0.0.1", port=int(m.group(1)))
            cls.gw_port = int(m.group(2))
            cls.metrics_url = cls.run_sh.wait_for_line(
                r"^== metrics: (http://127\.0\.0\.1:\d+/metrics) ").group(1)
            for dev in DEVICES:
                cls.run_sh.wait_for_line(r"^energy/%s/data " % dev, timeout=30)
            cls.browser = cdp.Browser(width=1280, height=1000)
        except BaseException:
            cls.stop_run_sh()
            raise

    @classmethod
    def stop_run_sh(cls):
        cls.run_sh.signal(signal.SIGINT)
        rc = cls.run_sh.wait(60)
        if cls.work:
            shutil.rmtree(cls.work, ignore_errors=True)
        return rc

    @classmethod
    def tearDownClass(cls):
        cls.browser.close()
        rc = cls.stop_run_sh()
        if rc != 0:
            raise AssertionError("run.sh exited %s:\n%s" % (rc, cls.run_sh.output()[-3000:]))

    def js(self, expr):
        return self.browser.evaluate(expr)

    def wait(self, expr, what, timeout=30):
        try:
            return self.browser.wait_js(expr, timeout, what)
        except AssertionError:
            print(self.js("document.body.innerText")[:3000])
            raise

    def send_command(self, device, command=COMMAND):
        """Sends command from the page's form; returns a JS expression for its outcome cell."""
        rows = self.js("document.querySelectorAll('#commands tbody tr').length")
        self.js("document.getElementById('cmd-device').value = %s; "
                "document.getElementById('cmd-payload').value = %s; "
                "document.getElementById('cmd-send').click(); 0" % (js_str(device),
                                                                    js_str(command)))
        self.wait("document.querySelectorAll('#commands tbody tr').length === %d" % (rows + 1),
                  "the command's row")
        return "document.querySelector('#commands tbody tr .outcome')"

    def test_dashboard(self):
        b = self.browser
        b.navigate(self.url)
        self.wait("document.getElementById('conn').dataset.state === 'connected'",
                  "the page to connect over WebSockets")
        self.assertEqual(self.js("document.getElementById('conn').dataset.user"), "dashboard")
        self.wait("document.getElementById('gw-status').dataset.online === 'true'",
                  "the gateway online")

        # Three devices online, a plot with points for each numeric field of each device.
        self.wait("document.querySelectorAll('.device[data-online=\"true\"]').length === 3",
                  "three devices online")
        self.assertEqual(sorted(self.js(
            "[...document.querySelectorAll('.device')].map(d => d.dataset.device)")), DEVICES)
        self.wait("[...document.querySelectorAll('.plot')].filter("
                  "p => +p.dataset.points >= 5).length === %d" % (len(DEVICES) * len(FIELDS)),
                  "%d plots with 5 points or more" % (len(DEVICES) * len(FIELDS)))
        for dev in DEVICES:
            fields = self.js("[...document.querySelectorAll('.device[data-device=\"%s\"] .plot')]"
                             ".map(p => p.dataset.field)" % dev)
            self.assertEqual(sorted(fields), sorted(FIELDS), dev)
        # uPlot drew them: its canvas is there and has the plot's size.
        self.assertEqual(self.js("document.querySelectorAll('.plot canvas').length"),
                         len(DEVICES) * len(FIELDS))
        self.wait("!!document.querySelector('#stats tr[data-field=\"acked\"]')",
                  "the gateway's stats", timeout=15)

        # A record that fails the schema, sent as myrio-03 (its agent is replaced for a
        # moment and reconnects), shows with its error.
        with open(os.path.join(self.work, "myrio-03.pw")) as f:
            password = f.read().strip()
        card3 = "document.querySelector('.device[data-device=\"myrio-03\"] .badge')"
        agent_peer = self.js("%s.title" % card3).rsplit(" ", 1)[-1]
        c = LineClient(self.gw_port)
        test_peer = "%s:%d" % c.sock.getsockname()[:2]
        try:
            c.send_json({"type": "hello", "device": "myrio-03", "password": password,
                         "stream": "dashboard-test", "proto": 1})
            self.assertEqual(c.recv_json()["type"], "welcome")
            c.send_json({"type": "data", "seq": 1, "data": {
                "timestamp": "2026-11-24T10:00:00Z", "day-ahead-price": 80.0,
                "power_factor": 1.7}})
            nack = c.recv_json()
        finally:
            c.close()
        self.assertEqual(nack["type"], "nack", nack)
        error = nack["errors"]["power_factor"][0]
        row = self.wait("(r => r && r.innerText)(document.querySelector("
                        "'#rejected tr.rejected-row[data-device=\"myrio-03\"][data-seq=\"1\"]'))",
                        "the rejected record on the page")
        self.assertIn("power_factor: " + error, row)
        # Its agent comes back: online again from a third address (not the agent's old
        # connection, not ours).
        self.wait("(b => b.textContent === 'online' && !b.title.endsWith(' %s') && "
                  "!b.title.endsWith(' %s'))(%s)" % (agent_peer, test_peer, card3),
                  "myrio-03's agent back online", timeout=50)  # replaced: it waits reconnect_max (30 s)

        # Read-only by default: the broker refuses the dashboard user's command (MQTT 5
        # PUBACK with "not authorized").
        outcome = self.send_command("myrio-01")
        self.wait("%s.dataset.state === 'refused'" % outcome, "the broker's refusal")
        self.assertIn("not authorized", self.js("%s.innerText" % outcome).lower())

        # The test's own view of the results, as the read-only dashboard user (the ACL
        # lets it read cmd/result).
        dash_pw = urllib.parse.parse_qs(self.url.split("#", 1)[1])["password"][0]
        results = Subscriber(self.broker, RESULT_TOPIC, username="dashboard", password=dash_pw)
        self.addCleanup(results.close)

        # As reader: published with an id, pending, then delivered from its result.
        self.js("document.getElementById('user').value = 'reader'; "
                "document.getElementById('password').value = %s; "
                "document.querySelector('#login button').click(); 0" % js_str(self.reader_pw))
        self.wait("document.getElementById('conn').dataset.state === 'connected' && "
                  "document.getElementById('conn').dataset.user === 'reader'",
                  "the page connected as reader")
        outcome = self.send_command("myrio-01")
        row = "%s.parentElement" % outcome
        ref = json.loads(self.js("%s.dataset.ref" % row))
        self.assertRegex(ref, r"^dash-\d+-\d+$")
        sent = self.js("%s.cells[2].textContent" % row)
        self.assertEqual(json.loads(sent), dict(json.loads(COMMAND), id=ref))
        self.assertTrue(sent.endswith(COMMAND[1:]), sent)  # the rest byte for byte
        state = self.wait("['published', 'delivered'].includes(%s.dataset.state) && "
                          "%s.dataset.state" % (outcome, outcome), "the broker's PUBACK")
        self.wait("%s.dataset.state === 'delivered'" % outcome,
                  "'delivered' (the gateway's result for it)", timeout=20)
        self.assertIn("delivered", self.js("%s.innerText" % outcome))
        msg = results.wait_for_message(RESULT_TOPIC, 20, lambda m: m.json().get("ref") == ref)
        self.assertEqual(msg.json(), {"status": "delivered", "ref": ref})
        # ... and the device really got it: the agent prints commands (--cmd-stdout).
        with open(os.path.join(self.work, "myrio-01.log")) as f:
            self.assertIn(sent, f.read())
        print("command outcome seen: %s, then delivered (ref %s)" % (state, ref))

        # Not JSON: published as typed (no id), rejected by the gateway with its reason.
        outcome = self.send_command("myrio-01", BAD_COMMAND)
        self.assertEqual(self.js("%s.parentElement.cells[2].textContent" % outcome), BAD_COMMAND)
        self.wait("%s.dataset.state === 'rejected'" % outcome, "'rejected' (the gateway's result)",
                  timeout=20)
        msg = results.wait_for_message(RESULT_TOPIC, 20,
                                       lambda m: m.json().get("status") == "rejected")
        result = msg.json()
        self.assertNotIn("ref", result)
        self.assertTrue(result["reason"].startswith("not valid JSON"), result)
        self.assertEqual(self.js("%s.textContent" % outcome), "rejected: " + result["reason"])
        print("rejected command shown: %s" % result["reason"])
        results.close()

        # run.sh's metrics URL agrees with the page: three devices online, one rejected.
        def scrape():
            with urllib.request.urlopen(self.metrics_url, timeout=10) as r:
                return r.read().decode()
        metrics = wait_until(lambda: (lambda t: re.search(r"(?m)^eds_devices_online 3$", t) and t)(
            scrape()), 20, "eds_devices_online 3 at %s" % self.metrics_url, interval=0.5)
        self.assertRegex(metrics, r'(?m)^eds_device_records_rejected_total\{device="myrio-03"\} 1$')

        path = os.path.join(BUILD_DIR, "dashboard.png")
        self.js("window.scrollTo(0, 0); 0")
        b.screenshot(path)
        if os.environ.get("EDS_UPDATE_SCREENSHOT") == "1":
            os.makedirs(source_path("docs", "img"), exist_ok=True)
            shutil.copy(path, source_path("docs", "img", "dashboard.png"))
        print("screenshot: %s" % path)


if __name__ == "__main__":
    deployutil.main()
