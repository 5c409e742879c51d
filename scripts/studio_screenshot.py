"""Screenshot of a real studio session for the README (docs/studio.png).

    .venv/bin/python scripts/studio_screenshot.py --library demo_out/library --out docs/studio.png

Starts `jvideo studio` as a user would, types examples/demo_montage.md into the page in
headless Chromium, pins a candidate of the second sentence, waits for the background render,
exports, and saves the window.
"""
from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from studio.browser import EDIT_AND_TIME_JS, chromium

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--library", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "studio.png")
    ap.add_argument("--script", type=Path, default=ROOT / "examples" / "demo_montage.md")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="studio-shot-"))
    proc = subprocess.Popen([sys.executable, "-m", "cli", "studio", "--library", str(args.library),
                             "--project", str(work / "demo.json"), "--port", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().split()[1]
        print(f"studio at {url}", flush=True)
        with chromium(1700, 1000) as b:
            wait = WebDriverWait(b, 300, poll_frequency=0.2)
            b.get(url)
            wait.until(lambda d: d.find_element(By.ID, "script"))
            text = args.script.read_text(encoding="utf-8")
            ms = b.execute_async_script(EDIT_AND_TIME_JS, text, "everything is still")
            print(f"storyboard drawn {ms:.0f} ms after the script was pasted", flush=True)
            units = b.find_elements(By.CSS_SELECTOR, "#storyboard .unit")
            second = next(u for u in units if "blue circle" in u.text)
            cand = next(c for c in second.find_elements(By.CSS_SELECTOR, ".candidate")
                        if "current" not in c.get_attribute("class"))
            cand.find_element(By.CSS_SELECTOR, "button.pin").click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".unit.pinned"))
            b.find_element(By.ID, "export").click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#exports a[data-format=mp4]"))
            b.execute_script("const p = document.getElementById('player'); p.currentTime = 6;")
            wait.until(lambda d: d.execute_script("return document.getElementById('player').readyState") >= 2)
            b.find_element(By.ID, "library-toggle").click()
            b.find_element(By.ID, "search").send_keys("a star spinning at night")
            b.find_element(By.CSS_SELECTOR, "#search-form button").click()
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .result img")) >= 6)
            b.execute_script("document.getElementById('right').scrollTop = 0;")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            b.save_screenshot(str(args.out))
            print(f"wrote {args.out}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
