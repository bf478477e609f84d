"""A small client of Chromium's remote-debugging protocol (DevTools, over a websocket), enough
to drive a page as a person would: load it, press keys, click what is on screen, read the
DOM, take a screenshot. Headless, offline, as root (the flags of FIELD_NOTES "Rendering
offline"). Used by tests/test_lecture.py and scripts/lecture_screenshots.py.
"""
from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

KEYS = {"ArrowRight": 39, "ArrowLeft": 37, " ": 32, "Escape": 27, "Home": 36, "End": 35, "q": 81, "p": 80}


class Browser:
    """One headless Chromium with one tab; ``with Browser(path) as b: b.open(file)``."""

    def __init__(self, program: str, width: int = 1600, height: int = 900):
        import websocket

        self.profile = tempfile.mkdtemp(prefix="graphnn-chromium-")
        self.proc = subprocess.Popen(
            [program, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--remote-allow-origins=*",
             f"--user-data-dir={self.profile}", "--remote-debugging-port=0", f"--window-size={width},{height}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = None
        deadline = time.time() + 30
        while url is None and time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                break
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            url = m.group(1) if m else None
        if url is None:
            self.close()
            raise RuntimeError("chromium did not start its DevTools endpoint")
        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.ids = itertools.count(1)
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def call(self, method: str, session: bool = False, **params):
        """Send one command; its result (events that arrive meanwhile are dropped)."""
        n = next(self.ids)
        message = {"id": n, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == n:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def open(self, path: Path):
        self.call("Page.navigate", session=True, url=Path(path).resolve().as_uri())
        self.wait("document.readyState === 'complete' && !!window.__lecture")

    def eval(self, expression: str):
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, condition: str, timeout: float = 20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.eval(f"Boolean({condition})"):
                return
            time.sleep(0.05)
        raise TimeoutError(f"the page never satisfied {condition}")

    def key(self, key: str):
        code = KEYS.get(key, ord(key.upper()) if len(key) == 1 else 0)
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", session=True, type=kind, key=key, windowsVirtualKeyCode=code,
                      text=key if kind == "keyDown" and len(key) == 1 else "")

    def click(self, selector: str):
        """Click the centre of the first element ``selector`` finds, as a mouse would."""
        box = self.eval(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
                        "const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        if box is None:
            raise LookupError(f"nothing on the page matches {selector}")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", session=True, type=kind, x=box[0], y=box[1], button="left",
                      clickCount=1)

    def screenshot(self, path: Path):
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self):
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
