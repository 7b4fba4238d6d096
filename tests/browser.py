"""A real headless browser for page tests: Debian's chromium driven over the Chrome DevTools Protocol.

No driver binary and no browser download: chromium is started with ``--remote-debugging-port=0``
and a fresh profile, the port it picked is read from the profile's ``DevToolsActivePort`` file, and
the page is driven with ``Page.navigate`` / ``Runtime.evaluate`` over one websocket
(``websocket-client``). ``.ci/run`` installs chromium with apt-get.

    with HeadlessChromium(tmp_path / "profile") as browser:
        browser.open("http://127.0.0.1:5000/")
        browser.wait_for("document.body.innerText.includes('autofr')")
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--window-size=1600,1000",
)


def find_chromium() -> str | None:
    """The chromium executable: ``$AUTOFR_TEST_CHROMIUM`` or Debian's, or None."""
    for candidate in (os.environ.get("AUTOFR_TEST_CHROMIUM"), *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class BrowserError(AssertionError):
    """A page did not reach the expected state (the message says which, and what the page showed)."""


class HeadlessChromium:
    def __init__(self, profile_dir: Path, executable: str | None = None, start_timeout_s: float = 60.0):
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise FileNotFoundError("no chromium executable (apt-get install chromium)")
        self.profile_dir = Path(profile_dir)
        self.start_timeout_s = start_timeout_s
        self._process = None
        self._socket = None
        self._next_id = 0

    # ------------------------------------------------------------------ life cycle
    def __enter__(self) -> HeadlessChromium:
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.profile_dir.parent / f"{self.profile_dir.name}.log", "wb")
        self._process = subprocess.Popen(
            [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile_dir}", "about:blank"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self._connect()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._socket is not None:
            try:
                self._socket.close()
            except Exception:
                pass
            self._socket = None
        if self._process is not None:
            try:
                os.killpg(self._process.pid, 15)
                self._process.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self._process.pid, 9)
                except ProcessLookupError:
                    pass
                self._process.wait(timeout=10)
            self._process = None
        self._log.close()

    def _connect(self) -> None:
        import websocket

        port_file = self.profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + self.start_timeout_s
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise BrowserError(f"chromium did not start (exit {self._process.poll()}): {self._log_tail()}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
                    pages = [t for t in json.load(answer) if t.get("type") == "page"]
                if pages:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BrowserError(f"chromium on port {port} shows no page: {self._log_tail()}")
            time.sleep(0.2)
        self._socket = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.command("Page.enable")
        self.command("Runtime.enable")

    def _log_tail(self) -> str:
        self._log.flush()
        text = (self.profile_dir.parent / f"{self.profile_dir.name}.log").read_text(errors="replace")
        return " | ".join(text.strip().splitlines()[-5:])

    # ------------------------------------------------------------------ protocol
    def command(self, method: str, **params):
        """Send one DevTools command and return its result (events in between are skipped)."""
        self._next_id += 1
        ident = self._next_id
        self._socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise BrowserError(f"{method} failed: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.command("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} raised in the page: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    # ------------------------------------------------------------------ pages
    def open(self, url: str) -> None:
        self.command("Page.navigate", url=url)

    def url(self) -> str:
        return self.evaluate("location.href")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for(self, expression: str, timeout_s: float = 60.0, what: str | None = None):
        """Poll ``expression`` until it is truthy and return its value; :class:`BrowserError` with the
        page's URL and the start of its text when it is not within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                value = self.evaluate(expression)
            except BrowserError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                shown = " ".join(self.text().split())[:600]
                raise BrowserError(
                    f"the page never showed {what or expression} within {timeout_s:.0f} s; "
                    f"at {self.url()} it shows: {shown!r}"
                )
            time.sleep(0.25)

    def wait_for_text(self, needle: str, timeout_s: float = 60.0) -> None:
        self.wait_for(
            f"document.body && document.body.innerText.includes({json.dumps(needle)})", timeout_s, what=repr(needle)
        )

    def click_text(self, text: str, timeout_s: float = 30.0) -> None:
        """Click the innermost visible element whose text is exactly ``text`` (waits for it)."""
        finder = (
            f"(() => {{ const want = {json.dumps(text)}; const hits = [...document.querySelectorAll('body *')]"
            ".filter(e => e.offsetParent !== null && e.innerText && e.innerText.trim() === want);"
            " const inner = hits.filter(e => !hits.some(o => o !== e && e.contains(o)));"
            " if (!inner.length) return false; inner[0].click(); return true })()"
        )
        self.wait_for(finder, timeout_s, what=f"an element {text!r} to click")

    def screenshot(self, path: Path) -> Path:
        import base64

        Path(path).write_bytes(base64.b64decode(self.command("Page.captureScreenshot", format="png")["data"]))
        return Path(path)
