"""The HTML study report checked in a real browser (issue 16): the OS Chromium driven by
Selenium through the matching ``chromium-driver`` (Debian packages; ``.ci/run`` installs
them when missing). Without them the browser tests are skipped with how to install."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

INSTALL = (
    "needs the OS Chromium and its driver: `apt-get install chromium chromium-driver` "
    "(Debian/Ubuntu; .ci/run installs them) and selenium (`pip install -e '.[test]'`)"
)


def chromium_paths() -> tuple[str, str] | None:
    """``(chromium, chromedriver)`` executables, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").is_file() else None
    )
    return (browser, driver) if browser and driver else None


def open_browser(width: int = 1300, height: int = 2400):
    """A headless Chromium session (skips the test when none is installed)."""
    paths = chromium_paths()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip(INSTALL)
    if paths is None:
        pytest.skip(INSTALL)
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(paths[1]))


def best_run_ids(runs) -> set[str]:
    """The runs with the best validation headline (computed here from the ``runs``
    report: the highest accuracy, the lowest MAE; ties all count), baseline included."""
    higher = runs["metric"].dropna().iloc[-1] == "accuracy"
    scored = runs[[math.isfinite(v) for v in runs["val_metric"]]]
    values = scored["val_metric"] * (-1 if higher else 1)
    return set(scored.loc[values == values.min(), "run_id"])


def column_texts(driver, table_id: str, column: str) -> list[str]:
    """The shown texts of one column of a table, top to bottom."""
    from selenium.webdriver.common.by import By

    headers = [h.text for h in driver.find_elements(By.CSS_SELECTOR, f"#{table_id} thead th")]
    index = next(i for i, h in enumerate(headers) if h.rstrip(" ▲▼") == column)
    rows = driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
    return [r.find_elements(By.TAG_NAME, "td")[index].text for r in rows]


def click_header(driver, table_id: str, starts: str) -> str:
    """Click the first header of a table whose text starts with ``starts``; its name."""
    from selenium.webdriver.common.by import By

    for th in driver.find_elements(By.CSS_SELECTOR, f"#{table_id} thead th"):
        if th.text.startswith(starts):
            name = th.text.rstrip(" ▲▼")
            th.click()
            return name
    raise AssertionError(f"no header starting with {starts!r} in #{table_id}")


def check_report(run_dir: Path, runs, screenshot: str = "index.png") -> None:
    """Open ``<run_dir>/reports/index.html`` and assert: no console error, one runs
    table row per run (baseline included), every image loaded, sorting by the
    validation score puts the best run first (after another sort scrambled the
    order). A full-page screenshot is written to ``<run_dir>/reports/<screenshot>``."""
    page = run_dir / "reports" / "index.html"
    assert page.is_file()
    driver = open_browser()
    try:
        driver.get(page.as_uri())
        logs = driver.get_log("browser")
        ids = column_texts(driver, "runs", "run_id")
        assert sorted(ids) == sorted(runs["run_id"])  # one row per run + the baseline
        assert "baseline" in column_texts(driver, "runs", "family")
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth])"
        )
        assert len(images) >= 2 and all(done and width > 0 for done, width in images)
        click_header(driver, "runs", "run_id")
        assert column_texts(driver, "runs", "run_id") == sorted(ids)
        click_header(driver, "runs", "val ")
        assert column_texts(driver, "runs", "run_id")[0] in best_run_ids(runs)
        driver.save_screenshot(str(run_dir / "reports" / screenshot))
        logs += driver.get_log("browser")
        assert [e for e in logs if e["level"] == "SEVERE"] == []  # no console error
    finally:
        driver.quit()
