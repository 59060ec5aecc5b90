"""A real Cockpit and a real browser for page tests.

CockpitWs: Debian's cockpit-ws on 127.0.0.1 (no TLS) in a mount namespace
of its own, where /run/dbus/system_bus_socket is the test's private system
bus; logins go through cockpit-session and PAM like on a real host, and
the bridge runs as the logged-in user. TestUser: a local user made for
the test (useradd, a random password) and removed afterwards, with the
package under test in ~/.local/share/cockpit/. Chromium: headless Chromium
from Debian driven over the DevTools protocol (python3-websocket).

Run with /usr/bin/python3, like harness.py.
"""

import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.request

import websocket

import harness

COCKPIT_WS = "/usr/lib/cockpit/cockpit-ws"
CHROMIUM = "/usr/lib/chromium/chromium"


class TestUser:
    """A login user for this test only, with a home in the scratch dir."""

    def __init__(self, scratch):
        self.name = "mdck" + secrets.token_hex(4)
        self.password = secrets.token_urlsafe(16)
        self.home = scratch.join("home-" + self.name)
        harness_run(["useradd", "--no-create-home", "--home-dir", self.home, "--shell", "/bin/sh",
                     "--user-group", self.name])
        try:
            subprocess.run(["chpasswd"], input="%s:%s\n" % (self.name, self.password), text=True,
                           check=True, capture_output=True)
            os.makedirs(self.home, mode=0o700)
            shutil.chown(self.home, self.name, self.name)
        except Exception:
            self.remove()
            raise

    def install_package(self, source, name):
        """Copies a Cockpit package into ~/.local/share/cockpit/@name."""
        target = os.path.join(self.home, ".local", "share", "cockpit", name)
        shutil.copytree(source, target)
        subprocess.run(["chown", "-R", "%s:%s" % (self.name, self.name), os.path.join(self.home, ".local")],
                       check=True)
        return target

    def remove(self):
        # Processes of the user (the bridge) end with cockpit-ws; userdel
        # refuses a user who still runs something, so give them a moment.
        for _ in range(50):
            proc = subprocess.run(["userdel", self.name], capture_output=True, text=True)
            if proc.returncode in (0, 6):  # 6: no such user
                return
            time.sleep(0.1)
        subprocess.run(["userdel", "--force", self.name], capture_output=True)


def harness_run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(argv), proc.returncode, proc.stderr.strip()))
    return proc


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Runs as root inside `unshare --mount`: a private /run whose D-Bus system
# socket is the test's bus, then cockpit-ws with a clean environment and an
# empty configuration directory (so /etc/cockpit is not read).
WS_SCRIPT = """set -e
mount --make-rprivate /
mount -t tmpfs -o mode=0755 md-cockpit-run /run
mkdir -p /run/dbus
ln -s "$MD_BUS_SOCKET" /run/dbus/system_bus_socket
exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 XDG_CONFIG_DIRS="$MD_WS_CONFIG" \\
    "$MD_COCKPIT_WS" --no-tls --address 127.0.0.1 --port "$MD_WS_PORT"
"""


class CockpitWs:
    def __init__(self, scratch, bus_socket):
        self.port = free_port()
        config = scratch.join("cockpit-config")
        os.makedirs(os.path.join(config, "cockpit"), exist_ok=True)
        self.log_path = scratch.join("cockpit-ws.log")
        self.log = open(self.log_path, "w")
        env = dict(os.environ, MD_BUS_SOCKET=bus_socket, MD_WS_CONFIG=config, MD_WS_PORT=str(self.port),
                   MD_COCKPIT_WS=COCKPIT_WS)
        self.proc = subprocess.Popen(["unshare", "--mount", "--fork", "sh", "-c", WS_SCRIPT], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        harness.wait_until(self._answers, timeout=20, what="cockpit-ws on port %d" % self.port)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def _answers(self):
        if self.proc.poll() is not None:
            raise AssertionError("cockpit-ws exited (%s):\n%s" % (self.proc.returncode, self.read_log()))
        try:
            with urllib.request.urlopen(self.url + "/cockpit/static/login.html", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    def read_log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            # The session group: unshare, cockpit-ws, cockpit-session, bridge.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


class Chromium:
    """Headless Chromium and one DevTools protocol connection to its page."""

    def __init__(self, scratch, width=1280, height=1100):
        self.profile = scratch.join("chromium-profile")
        os.makedirs(self.profile, exist_ok=True)
        self.log = open(scratch.join("chromium.log"), "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBUS_")}
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-dev-shm-usage", "--user-data-dir=" + self.profile, "--remote-debugging-port=0",
             "--remote-debugging-address=127.0.0.1", "--window-size=%d,%d" % (width, height), "about:blank"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        harness.wait_until(lambda: os.path.exists(port_file) and open(port_file).read().count("\n") >= 1,
                           timeout=30, what="Chromium's DevTools port")
        port = int(open(port_file).read().split("\n")[0])
        with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=10) as reply:
            targets = json.load(reply)
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], suppress_origin=True,
                                              timeout=30)
        self.next_id = 0
        self.console = []
        self.send("Runtime.enable")
        self.send("Page.enable")

    def send(self, method, **params):
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError("%s: %s" % (method, message["error"]))
                return message.get("result", {})
            self._event(message)

    def _event(self, message):
        method = message.get("method")
        if method == "Runtime.consoleAPICalled":
            args = message["params"].get("args", [])
            self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
        elif method == "Runtime.exceptionThrown":
            details = message["params"]["exceptionDetails"]
            self.console.append("exception: %s" % details.get("exception", {}).get("description", details))

    def eval(self, expression):
        """Evaluates @expression in the page (in the frame of the page, as
        Cockpit pages loaded directly have no shell frame); returns its
        value."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError("%s: %s" % (expression, result["exceptionDetails"]))
        return result["result"].get("value")

    def wait_js(self, expression, timeout=30, what=None):
        """Waits until @expression is truthy in the page; returns it."""
        deadline = time.monotonic() + timeout
        # A DOM node comes back as {} (falsy in Python): make it true.
        wrapped = "(() => { const v = (%s); return v instanceof Node ? true : v; })()" % expression
        while time.monotonic() < deadline:
            try:
                value = self.eval(wrapped)
            except AssertionError:
                value = None  # the page is (re)loading
            if value:
                return value
            time.sleep(0.1)
        try:
            page = self.eval("location.href + '\\n' + (document.body ? document.body.innerText : '')")
        except AssertionError as e:
            page = str(e)
        raise AssertionError("timed out after %ds waiting for %s in the page\npage: %s\nconsole:\n%s"
                             % (timeout, what or expression, page[:2000], "\n".join(self.console[-20:])))

    def navigate(self, url):
        self.send("Page.navigate", url=url)

    def screenshot(self, path):
        data = self.send("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def stop(self):
        try:
            self.ws.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
