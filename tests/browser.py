"""Headless Debian Chromium through Playwright (no browser downloads: ``/usr/bin/chromium``)."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def chromium_path() -> str | None:
    for p in (os.environ.get("CAPHUMAN_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if p and os.path.exists(p):
            return p
    return None


@contextmanager
def chromium_page(viewport=(1400, 1000)):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            yield page
        finally:
            browser.close()


#: JS: the current src of the live preview image ("" while none).
PREVIEW_SRC = "() => { const i = document.querySelector('#preview img'); return i ? i.src : ''; }"


def wait_preview_change(page, old: str, timeout_ms: float = 15000) -> str:
    """Wait until the preview <img> shows a new, fully loaded picture; returns its src."""
    page.wait_for_function(
        "(old) => { const i = document.querySelector('#preview img');"
        " return i && i.src && i.src !== old && i.complete && i.naturalWidth > 0; }",
        arg=old, timeout=timeout_ms)
    return page.evaluate(PREVIEW_SRC)
