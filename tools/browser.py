"""The browser the console's browser tests drive: Playwright (from PyPI) with a Chromium from the system.

``python -m tools.browser`` (``make browser``) installs what is missing and prints
what it found; ``tests/e2e/test_console_browser.py`` calls :func:`ensure_browser`
once per session and skips, saying why, when no browser can be had.

Where the Chromium comes from, in order: ``CHROMIUM`` (a path); a ``chromium``
already on the machine (Debian's ``/usr/bin/chromium``); Debian's ``chromium``
package installed now with ``apt-get`` (as root, where apt works); last, a
browser Playwright downloaded itself (``playwright install chromium``), which
needs its CDN and fails on a machine that reaches only the package registries.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
"""Headless Chromium's flags here: as root it needs --no-sandbox; the networking flags keep it from calling home."""


@dataclass(frozen=True)
class Browser:
    """What was found: the Chromium to launch (None: Playwright's own), or why there is none."""

    executable: str | None
    ready: bool
    why: str


def _run(cmd: list[str], timeout: float) -> bool:
    try:
        return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout,
                              check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _playwright() -> bool:
    """Playwright's Python package, installed with pip into this interpreter when missing."""
    if importlib.util.find_spec("playwright") is None:
        _run([sys.executable, "-m", "pip", "install", "--quiet", "playwright>=1.50"], timeout=600)
        importlib.invalidate_caches()
    return importlib.util.find_spec("playwright") is not None


def _system_chromium() -> str | None:
    given = os.environ.get("CHROMIUM")
    if given and Path(given).exists():
        return given
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def _apt_chromium() -> str | None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
    try:
        ok = subprocess.run(install, env=env, capture_output=True, timeout=900, check=False).returncode == 0
        if not ok:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=300, check=False)
            subprocess.run(install, env=env, capture_output=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return _system_chromium()


def _cjk_font() -> None:
    """Best effort: a CJK font (Debian's fonts-noto-cjk), without which screenshots show Chinese as empty boxes."""
    try:
        found = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        found = ""
    if not found and os.geteuid() == 0 and shutil.which("apt-get"):
        _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "fonts-noto-cjk"], timeout=900)


def ensure_browser() -> Browser:
    """Playwright and a Chromium to launch with it, installed when missing; ``ready`` False says why not."""
    if not _playwright():
        return Browser(None, False, "the playwright package could not be installed from PyPI")
    executable = _system_chromium() or _apt_chromium()
    if executable:
        _cjk_font()
        return Browser(executable, True, f"Playwright with {executable}")
    if _run([sys.executable, "-m", "playwright", "install", "chromium"], timeout=600):
        return Browser(None, True, "Playwright with the Chromium it downloaded")
    return Browser(None, False, "no Chromium: none on the machine, Debian's chromium package could not be installed "
                                "(not root, no apt, or no network to Debian), and 'playwright install chromium' "
                                "failed (its CDN is not reachable)")


def main() -> int:
    browser = ensure_browser()
    print(("ready: " if browser.ready else "no browser: ") + browser.why)
    return 0 if browser.ready else 1


if __name__ == "__main__":
    raise SystemExit(main())
