"""The README's screenshots of the cohort explorer (``docs/explorer/``), taken in headless Chromium.

Usage::

    python bench/explorer_screenshots.py [--store bench/out/serve/store] [--checkpoint CKPT]
        [--probes bench/out/serve/results] [--reports REPORTS] [--session P000001-S01]
        [--views cohort,session] [--out docs/explorer]

Serves ``--store`` with ``clef serve`` (as ``bench/serve.py`` does; its default store is the
one ``python bench/serve.py --explorer`` builds, the checkpoint the store's model names) and
drives the page as a user does: the key, the cohort filtered (site S01, setting emu, age
40–70) and sorted by age (``cohort.png``); the session ``--session`` with its spectrogram,
EEG page, the explanation of its first probe score and its nearest sessions with their
report findings (``session.png``; ``--reports``: the hospital's reports folder, e.g.
``bench/out/embed_archive/hospital_20min_p6_s0/reports``). ``key.png`` and
``text_search.png`` (``--views key,text``) need an aligned checkpoint for the latter.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import time
from pathlib import Path

from serve import OUT, ROOT, start_server

from common import stop


def _driver(width: int, height: int):  # noqa: ANN202 - selenium's type
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=opts)


def _wait(d, cond, timeout: float = 180.0):  # noqa: ANN001,ANN202
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(d, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]).until(cond)


def _full_page(d, path: Path, width: int) -> None:  # noqa: ANN001
    """The whole page (the window grown to its height), as a PNG."""
    h = int(d.execute_script("return document.documentElement.scrollHeight"))
    d.set_window_size(width, h + 160)  # the window's frame takes some of its height, headless too
    d.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)  # the EEG canvas redraws on resize
    d.save_screenshot(str(path))
    _small(path)


def _small(path: Path) -> None:
    """The PNG in 256 colours (a third of the bytes; the page has few colours but the spectrogram)."""
    from PIL import Image

    with Image.open(path) as im:
        q = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    q.save(path, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, default=OUT / "store")
    ap.add_argument("--checkpoint", type=Path, default=None, help="Default: the checkpoint the store's model names.")
    ap.add_argument("--probes", type=Path, default=OUT / "results")
    ap.add_argument("--reports", type=Path, default=None)
    ap.add_argument("--session", default="P000001-S01")
    ap.add_argument("--views", default="cohort,session")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "explorer")
    ap.add_argument("--width", type=int, default=990)
    args = ap.parse_args()
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    checkpoint = args.checkpoint
    if checkpoint is None:
        models = json.loads((args.store / "store.json").read_text())["models"]
        checkpoint = Path(next(iter(models.values()))["checkpoint"])
    key = secrets.token_hex(16)
    extra = ("--reports", str(args.reports.resolve())) if args.reports else ()  # the server runs in the root
    OUT.mkdir(parents=True, exist_ok=True)
    proc, url, ready = start_server(args.store, checkpoint, args.probes, key, OUT / "screenshots_server.log", extra)
    views = set(args.views.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    d = _driver(args.width, 600)
    try:
        d.get(url + "/")
        _wait(d, lambda d: d.find_element("id", "key-input").is_displayed())
        if "key" in views:
            d.set_window_size(args.width, 230)
            d.save_screenshot(str(args.out / "key.png"))
        d.find_element("id", "key-input").send_keys(key, Keys.ENTER)
        _wait(d, lambda d: len(d.find_elements("css selector", "#cohort-body tr")) > 0)
        if "cohort" in views:
            for name, value in (("f-site", "S01"), ("f-setting", "emu"), ("f-age-lo", "40"), ("f-age-hi", "70")):
                d.find_element("id", name).send_keys(value)
            d.find_element("id", "f-apply").click()
            _wait(d, lambda d: "site=" in d.find_element("id", "cohort-summary").text)
            d.find_element("css selector", "button[data-sort='age_years']").click()
            _wait(d, lambda d: "▲" in d.find_element("id", "cohort-head").text)
            d.set_window_size(args.width, 600)
            time.sleep(0.3)
            d.save_screenshot(str(args.out / "cohort.png"))
            d.find_element("id", "f-clear").click()
            _wait(d, lambda d: "site=" not in d.find_element("id", "cohort-summary").text)
            d.find_element("css selector", "button[data-sort='session_id']").click()  # the real sessions first
        if "session" in views:
            d.set_window_size(args.width, 1000)
            _wait(d, lambda d: d.find_elements("css selector", f"#cohort-body tr[data-session='{args.session}']"))
            d.find_element("css selector", f"#cohort-body tr[data-session='{args.session}']").click()
            _wait(d, lambda d: d.execute_script("const i = document.getElementById('spectrogram');"
                                                "return !i.hidden && i.complete && i.naturalWidth > 0"))
            _wait(d, lambda d: d.find_element("id", "neighbours-body").get_attribute("data-findings") == "loaded")
            Select(d.find_element("id", "eeg-notch")).select_by_value("60")
            _wait(d, lambda d: "notch 60 Hz" in d.find_element("id", "eeg-info").text)
            d.execute_script("document.querySelector('#probes-body button').click()")
            _wait(d, lambda d: "top band" in d.find_element("id", "explain-summary").text
                  or "No explanation" in d.find_element("id", "explain-summary").text, 600)
            print("explanation:", d.find_element("id", "explain-summary").text)
            _full_page(d, args.out / "session.png", args.width)
        if "text" in views:
            d.find_element("id", "nav-text").click()
            d.find_element("id", "text-input").send_keys("left temporal slowing", Keys.ENTER)
            _wait(d, lambda d: d.find_element("id", "text-summary").text or d.find_element("id", "text-error").text)
            d.set_window_size(args.width, 420)
            d.save_screenshot(str(args.out / "text_search.png"))
    finally:
        d.quit()
        stop(proc, 30)
    print(f"server ready in {ready:.1f} s; screenshots of {', '.join(sorted(views))} in {args.out}")


if __name__ == "__main__":
    main()
