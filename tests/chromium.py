"""Headless Chromium for the browser tests: a driver that records console and network, and checks.

Debian's `chromium` and `chromium-driver` (`make browser` installs them). The driver logs the
browser console and the DevTools network events, so a test can prove a page loaded without
errors and without fetching anything from outside the machine.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMEDRIVER = Path("/usr/bin/chromedriver")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
# Schemes that never leave the machine: the page itself, inline data, and Chromium's own pages
# (its start page loads chrome:// resources before the test navigates anywhere).
LOCAL_SCHEMES = {"file", "data", "blob", "about", "chrome", "chrome-untrusted", "chrome-extension", "devtools"}


def available() -> bool:
    return CHROMEDRIVER.exists() and bool(shutil.which("chromium") or shutil.which("chromium-browser"))


needs_chromium = pytest.mark.skipif(not available(), reason="needs chromium and chromedriver (`make browser`)")


@contextmanager
def chrome(width: int = 1400, height: int = 1000) -> Iterator:
    """A headless Chromium with browser and performance (network) logging; quits on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--no-first-run", "--disable-sync",
                     "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
                     f"--window-size={width},{height}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def requested_urls(driver) -> list[str]:
    """Every URL the browser asked for since the last call (DevTools Network.requestWillBeSent)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    return parts.scheme in {"http", "https", "ws", "wss"} and (parts.hostname or "") in LOCAL_HOSTS


def outside_requests(driver) -> list[str]:
    return [url for url in requested_urls(driver) if not is_local(url)]


def severe_console_errors(driver, known: Iterable[str] = ()) -> list[str]:
    """SEVERE console entries, except those containing one of `known` (documented defects)."""
    known = tuple(known)
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and not any(k in entry["message"] for k in known)]


def full_page_screenshot(driver, path: Path, width: int) -> Path:
    """Resize the window to the page height and save a PNG of the whole page."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, height)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path
