"""cdp: a real headless Chromium (Debian's `chromium`) driven over the DevTools
protocol with python3-websocket, for tests that look at a page as a person would.

  with Browser() as b:          # chromium --headless on a private profile, port 0
      b.navigate(url)
      b.evaluate("document.title")          # a JavaScript expression's value
      b.wait_js("expr", timeout, what)      # until expr is truthy (deadline, names `what`)
      b.screenshot(path)                    # PNG of the whole page

Chromium is started by the test and stopped by its pid (SIGTERM, then SIGKILL).
`available()` says why no browser can run here (None when one can).
"""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import deployutil

try:
    import websocket  # python3-websocket
except ImportError:  # pragma: no cover - reported by available()
    websocket = None

CHROMIUM = os.environ.get("EDS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def available():
    if websocket is None:
        return "python3-websocket is not installed"
    if not os.access(CHROMIUM, os.X_OK):
        return "chromium is not installed (apt-get install chromium)"
    return None


class Browser:
    def __init__(self, width=1280, height=1000, timeout=90):
        # timeout: for the start; Chromium took over 30 s on a loaded two-core machine.
        self.profile = tempfile.mkdtemp(prefix="eds-chromium-")
        argv = [CHROMIUM, "--headless", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions",
                "--user-data-dir=" + self.profile, "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0", "--remote-allow-origins=*",
                "--window-size=%d,%d" % (width, height), "about:blank"]
        if os.geteuid() == 0:
            argv.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root
        self.log = open(os.path.join(self.profile, "chromium.log"), "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self._id = 0
        self.ws = None
        try:
            port = self._wait_port(timeout)
            deadline = time.monotonic() + timeout
            while True:
                with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port,
                                            timeout=5) as r:
                    pages = [t for t in json.load(r) if t.get("type") == "page"]
                if pages or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            if not pages:
                raise AssertionError("chromium opened no page")
            self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"],
                                                  timeout=timeout, suppress_origin=True)
            self.call("Page.enable")
            self.call("Runtime.enable")
        except BaseException:
            self.close()
            raise

    def _wait_port(self, timeout):
        path = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("chromium exited with %s:\n%s" % (
                    self.proc.returncode, self.output()[-2000:]))
            try:
                with open(path) as f:
                    first = f.readline().strip()
                if first:
                    return int(first)
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("chromium did not open its DevTools port within %d s:\n%s" % (
            timeout, self.output()[-2000:]))

    def output(self):
        try:
            with open(os.path.join(self.profile, "chromium.log")) as f:
                return f.read()
        except OSError:
            return ""

    def call(self, method, timeout=30, **params):
        """Sends one DevTools command and returns its result (events are skipped)."""
        self._id += 1
        my_id = self._id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise AssertionError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            if time.monotonic() > deadline:
                raise AssertionError("no reply to %s within %d s" % (method, timeout))

    def navigate(self, url):
        self.call("Page.navigate", url=url)
        self.wait_js("document.readyState === 'complete'", 30, "the page to load")

    def evaluate(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        if "exceptionDetails" in r:
            raise AssertionError("JavaScript error in %r: %s" % (
                expr, r["exceptionDetails"].get("exception", {}).get("description")))
        return r["result"].get("value")

    def wait_js(self, expr, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expr)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("timed out after %d s waiting for %s (%s)" % (
                    timeout, what, expr))
            time.sleep(0.2)

    def screenshot(self, path):
        """PNG of the whole page (the viewport grown to the page's height)."""
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        width = int(self.evaluate("document.documentElement.scrollWidth"))
        r = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                      clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))

    def close(self):
        if self.ws:
            try:
                self.ws.close()
            except Exception:
                pass
            self.ws = None
        deployutil.stop_process(self.proc, 10)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
