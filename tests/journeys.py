"""Helpers of the Chromium journeys inside the LMS's iframe: frame sizes, axe-core scans, layout
checks. The fixtures (tool_url, site_lms, browser_factory) live in test_browser.py."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "test-artifacts"

# The frames teachers and students meet: a Moodle course page (full width, 700 px high) and a
# narrow one (a phone, or Moodle's block column).
WIDE = ("100%", "700")
NARROW = ("400", "700")
FRAMES = {"wide": WIDE, "narrow": NARROW}


def open_course(driver, site_lms, frame=WIDE, window=(1280, 900)):
    """Open the LMS's course page with the tool in an iframe of `frame` size; switch into it."""
    from selenium.webdriver.common.by import By

    site_lms.frame = frame
    driver.set_window_size(*window)
    driver.get(f"{site_lms.issuer}/course")
    driver.switch_to.frame(driver.find_element(By.ID, "tool"))


def axe_violations(driver, impacts=("serious", "critical")) -> list[str]:
    """axe-core's violations of these impacts on the current page (frame), one line each."""
    assert AXE.exists(), "axe-core is missing: run `make test` (npm ci) once"
    driver.execute_script(AXE.read_text())
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => done(JSON.stringify(r.violations)),"
        "      e => done(JSON.stringify({error: String(e)})));"
    )
    found = json.loads(result)
    if isinstance(found, dict):
        raise AssertionError(f"axe-core failed: {found['error']}")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(" ".join(node["target"]) for node in v["nodes"][:3])
        for v in found if v["impact"] in impacts
    ]


def assert_accessible(driver) -> None:
    where = driver.execute_script("return location.pathname")
    assert axe_violations(driver) == [], f"axe-core on {where}"


def horizontal_overflow(driver) -> int:
    """How many CSS pixels the page is wider than its frame (0: no horizontal scrolling)."""
    return driver.execute_script(
        "const e = document.documentElement; return e.scrollWidth - e.clientWidth;")


def fully_visible(driver, element) -> bool:
    """The element lies inside the frame's viewport without scrolling."""
    return driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return r.width > 0 && r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight"
        " && r.right <= innerWidth;", element)


def save_screenshots(drivers, name: str) -> None:
    """Keep what each browser showed when a journey failed (test-artifacts/, not in git)."""
    ARTIFACTS.mkdir(exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:150]
    for n, driver in enumerate(drivers):
        try:
            driver.switch_to.default_content()
            driver.save_screenshot(str(ARTIFACTS / f"{safe}-{n}.png"))
        except Exception:  # a browser that died keeps nothing to show
            pass
