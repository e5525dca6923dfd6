"""Headless Chromium driven over the DevTools protocol, with nothing but the standard library
(a minimal WebSocket client over a socket), for tests that need a real browser.

    with Chromium(workdir) as browser:
        page = browser.new_page()
        page.navigate("http://127.0.0.1:PORT/")
        page.wait_for("document.body.dataset.updates >= 2", timeout=10)
        page.evaluate("document.title")
        page.screenshot("out.png", width=1280, height=900)

Chromium runs in its own process group with a fresh profile directory and everything that
reaches out to the network on its own disabled; stop() ends that group (by its id) and waits.
"""
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

from harness import file_tail

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"]


class BrowserError(AssertionError):
    pass


def available():
    return os.access(CHROMIUM, os.X_OK)


class WebSocket:
    """A client WebSocket (RFC 6455) good enough for the DevTools protocol: text frames, masked
    as a client must, fragmented and large messages, ping answered."""

    def __init__(self, host, port, path, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise BrowserError(f"WebSocket handshake refused: {head[:200]!r}")

    def _fill(self):
        data = self.sock.recv(1 << 16)
        if not data:
            raise BrowserError("DevTools connection closed")
        self.buf += data

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send_frame(self, opcode, payload):
        head = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send(self, text):
        self._send_frame(0x1, text.encode())

    def recv(self, timeout):
        self.sock.settimeout(timeout)
        message = b""
        while True:
            b0, b1 = self._take(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._take(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._take(8))[0]
            mask = self._take(4) if b1 & 0x80 else None
            payload = self._take(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x9:                      # ping
                self._send_frame(0xA, payload)
                continue
            if opcode == 0x8:
                raise BrowserError("DevTools closed the WebSocket")
            if opcode in (0x0, 0x1, 0x2):
                message += payload
                if b0 & 0x80:
                    return message.decode()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Page:
    """One tab, over its own DevTools WebSocket."""

    def __init__(self, ws_url):
        rest = ws_url.split("://", 1)[1]
        hostport, path = rest.split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.ws = WebSocket(host, int(port), "/" + path)
        self.next_id = 0
        self.events = []          # every event received, as (method, params)

    def call(self, method, timeout=30, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"{method}: no answer within {timeout}s")
            try:
                msg = json.loads(self.ws.recv(left))
            except socket.timeout:
                raise BrowserError(f"{method}: no answer within {timeout}s") from None
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append((msg["method"], msg.get("params", {})))

    def evaluate(self, expression, timeout=30):
        """The value of a JavaScript expression (awaited if it is a promise)."""
        r = self.call("Runtime.evaluate", timeout=timeout, expression=expression,
                      returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise BrowserError(f"JavaScript error: {d.get('exception', {}).get('description') or d}")
        return r["result"].get("value")

    def navigate(self, url, timeout=20):
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", timeout, desc=f"{url} to load")

    def wait_for(self, expression, timeout, desc=None, interval=0.1):
        """Polls a JavaScript expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                last = self.evaluate(expression)
            except BrowserError as e:
                last = str(e)
            else:
                if last:
                    return last
            if time.monotonic() >= deadline:
                raise BrowserError(f"timed out after {timeout}s waiting for {desc or expression} "
                                   f"(last: {last!r})")
            time.sleep(interval)

    def set_viewport(self, width, height, mobile=False, scale=1):
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=scale, mobile=mobile)

    def screenshot(self, path, full_page=True, height=None):
        """A PNG of the page (the whole document when full_page, or its top `height` CSS pixels)
        written to path."""
        params = {"format": "png"}
        if full_page or height:
            metrics = self.call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {"x": 0, "y": 0, "width": size["width"],
                              "height": height or size["height"], "scale": 1}
        data = base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])
        with open(path, "wb") as f:
            f.write(data)
        return data

    def close(self):
        self.ws.close()


class Chromium:
    def __init__(self, workdir):
        self.workdir = workdir
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir)
        self.proc = None
        self.port = None
        self.log_path = os.path.join(workdir, "chromium.log")
        self.pages = []

    def start(self, timeout=30):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}",
                                      "about:blank"], stdout=self._log, stderr=self._log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        # Chromium writes the port it chose (port 0 asked for one) into the profile directory.
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                with open(port_file) as f:
                    lines = f.read().split()
                if lines:
                    self.port = int(lines[0])
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() >= deadline:
                raise BrowserError(f"chromium did not open its DevTools port in {timeout}s:\n"
                                   + self.log_text())
            time.sleep(0.05)
        return self

    def new_page(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("PUT", "/json/new?about:blank")
        r = conn.getresponse()
        body = r.read()
        conn.close()
        if r.status != 200:
            raise BrowserError(f"/json/new: {r.status} {body[:200]!r}")
        page = Page(json.loads(body)["webSocketDebuggerUrl"])
        self.pages.append(page)
        return page

    def log_text(self, tail=40):
        return file_tail(self.log_path, tail)

    def stop(self, timeout=10):
        for page in self.pages:
            page.close()
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)   # the group this object started
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        # Renderer and GPU helpers of the group may outlive the browser process by a moment.
        if self.proc:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    os.killpg(self.proc.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if getattr(self, "_log", None):
            self._log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
