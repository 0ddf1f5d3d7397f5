"""Headless Chromium for checking interactive pages (the report's browser tests and
``benchmarks/report_scale.py``): the system's ``chromium`` driven by Selenium through ``chromedriver``
(Debian: ``apt-get install chromium chromium-driver``; Selenium is in the ``dev`` extra).

Not part of the plotting API: :func:`missing` says why a browser cannot be had here, :func:`headless`
opens one that records the page's console and network, :func:`load` opens a page and times it to a
drawn Bokeh document.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Optional

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)

# runs before the page's own scripts: records errors, and the time the Bokeh document first stood drawn
# (idle, with every view painted, two animation frames after its document_ready callbacks ran)
_PROBE = r"""
window.__nq = {errors: [], drawn_ms: null};
window.addEventListener("error", (e) => window.__nq.errors.push(String(e.message || e)));
window.addEventListener("unhandledrejection", (e) => window.__nq.errors.push("unhandled rejection: " + String(e.reason)));
window.addEventListener("securitypolicyviolation", (e) => window.__nq.errors.push("CSP blocked " + e.blockedURI));
(function poll() {
  let idle = false;
  try { idle = !!(window.Bokeh && Bokeh.documents.length && Bokeh.documents[0].is_idle); } catch (e) {}
  if (idle) requestAnimationFrame(() => requestAnimationFrame(() => { window.__nq.drawn_ms = performance.now(); }));
  else requestAnimationFrame(poll);
})();
"""


def _which(names) -> Optional[str]:
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


def missing() -> Optional[str]:
    """Why headless Chromium cannot run here (``None`` when it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install 'neuroq[dev]')"
    if _which(BROWSERS) is None:
        return "no Chromium browser on PATH (Debian: apt-get install chromium chromium-driver)"
    if _which(DRIVERS) is None:
        return "no chromedriver on PATH (Debian: apt-get install chromium-driver)"
    return None


def version() -> str:
    """The browser's version string (``Chromium 150.0.7871.100 ...``)."""
    import subprocess

    exe = _which(BROWSERS)
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60).stdout
    return out.strip().splitlines()[-1] if out.strip() else exe


@contextlib.contextmanager
def headless(width: int = 1280, height: int = 1000):
    """A headless Chromium (Selenium ``WebDriver``) that keeps the console log, the network events
    and the page's uncaught errors; it quits when the block ends."""
    reason = missing()
    if reason:
        raise RuntimeError(f"headless Chromium is not available: {reason}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = _which(BROWSERS)
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}",
              "--enable-unsafe-swiftshader", "--hide-scrollbars", "--force-device-scale-factor=1",
              "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(_which(DRIVERS)), options=opts)
    try:
        driver.set_script_timeout(120)
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _PROBE})
        yield driver
    finally:
        driver.quit()


def load(driver, path, timeout: float = 120.0) -> float:
    """Open the HTML file ``path`` and wait until its Bokeh document is drawn; returns the time from
    the start of the navigation to the drawn page, in milliseconds (``performance.now()``)."""
    url = Path(path).resolve().as_uri()
    driver.get(url)
    t0 = time.time()
    while time.time() - t0 < timeout:
        ms = driver.execute_script("return window.__nq && window.__nq.drawn_ms")
        if ms is not None:
            return float(ms)
        time.sleep(0.02)
    raise TimeoutError(f"{path}: the Bokeh document was not drawn within {timeout:.0f} s; "
                       f"page errors: {page_errors(driver)}")


def page_errors(driver) -> list:
    """JavaScript errors of the page: uncaught exceptions, rejected promises, blocked requests, and
    the console's SEVERE entries."""
    errs = list(driver.execute_script("return (window.__nq && window.__nq.errors) || []") or [])
    for e in driver.get_log("browser"):
        if e.get("level") == "SEVERE":
            errs.append(e.get("message", ""))
    return errs


def requests(driver) -> list:
    """URLs of every request the page made since the last call (Chrome DevTools network events)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def screenshot(driver, path) -> Path:
    """Save the whole page (not only the window) as PNG at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    import base64

    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def artifacts_dir() -> Path:
    """Where the browser tests put their screenshots: ``$NEUROQ_TEST_ARTIFACTS`` or ``build/test-artifacts``."""
    return Path(os.environ.get("NEUROQ_TEST_ARTIFACTS") or Path(__file__).resolve().parents[2] / "build" / "test-artifacts")
