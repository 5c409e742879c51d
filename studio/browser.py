"""Headless Chromium for the studio's browser test and benchmark: Debian's chromium and
chromedriver driven by Selenium (nothing is downloaded; Selenium Manager is never asked)."""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from typing import Iterator

from montage.errors import MontageError

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--mute-audio")


def find_chromium() -> tuple[str, str]:
    """Paths of chromium and chromedriver, or a one-line error saying how to install them."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not exe or not driver:
        raise MontageError("headless Chromium needs Debian's chromium and chromium-driver "
                           "(apt-get install chromium chromium-driver; make setup does it)")
    return exe, driver


@contextmanager
def chromium(width: int = 1400, height: int = 900) -> Iterator[object]:
    """A Selenium Chrome driver on a fresh, empty profile, removed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    exe, driver_path = find_chromium()
    profile = tempfile.mkdtemp(prefix="studio-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = exe
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# Edit the script the way typing does (value + an input event) and resolve with the ms until
# the storyboard shows `marker`, measured inside the page (includes the page's typing pause).
EDIT_AND_TIME_JS = """
const [text, marker, done] = arguments;
const box = document.getElementById('storyboard');
const ta = document.getElementById('script');
const t0 = performance.now();
const seen = () => box.textContent.includes(marker);
const obs = new MutationObserver(() => {
  if (seen()) { obs.disconnect(); requestAnimationFrame(() => done(performance.now() - t0)); }
});
obs.observe(box, {childList: true, subtree: true, characterData: true});
ta.value = text;
ta.dispatchEvent(new Event('input'));
"""
