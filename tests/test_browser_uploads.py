"""Chromium uploads a file in parts inside the LMS iframe; a dropped connection costs nothing.

The tool is served over https by gunicorn, framed cross-site by the test LMS (see
test_browser.py). The browser reaches it through a relay with a slow uplink that can cut every
connection, as campus Wi-Fi does: Chromium's own network emulation only slows the progress it
reports, not the bytes it sends.
"""

import hashlib
import json
import re
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from lti_tool.models import Media, Upload

from .lms import INSTRUCTOR
from .test_browser import (
    assert_no_policy_violations,
    browser_factory,  # noqa: F401  (fixture)
    pytestmark,  # noqa: F401  (skip without Chromium)
    site_lms,  # noqa: F401  (fixture)
    tool_url,  # noqa: F401  (fixture)
    wait_for_text,
)
from .test_media import MP4

UPLINK = 400_000  # bytes per second from the browser to the tool
LOST = "Connection lost: the upload resumes when you are back online."
# Every text the status line shows, kept in the tab's session storage across page loads.
RECORD_STATUS = """
sessionStorage.removeItem('seen');
var line = document.querySelector('form[data-upload] [data-status]');
new MutationObserver(function () {
  var seen = JSON.parse(sessionStorage.getItem('seen') || '[]');
  if (seen[seen.length - 1] !== line.textContent) seen.push(line.textContent);
  sessionStorage.setItem('seen', JSON.stringify(seen));
}).observe(line, {childList: true, characterData: true, subtree: true});
"""


class Network:
    """A TCP relay in front of the tool: a slow uplink, and a switch that drops every open
    connection and refuses new ones until it is turned back on."""

    def __init__(self, target: tuple[str, int], uplink: int = UPLINK):
        self.target, self.uplink = target, uplink
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.online = True
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                browser, _ = self.listener.accept()
            except OSError:
                return
            if not self.online:
                browser.close()
                continue
            tool = socket.create_connection(self.target)
            with self.lock:
                self.sockets |= {browser, tool}
            threading.Thread(target=self._pump, args=(browser, tool, self.uplink),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(tool, browser, 0), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, rate: int) -> None:
        try:
            while data := source.recv(16 * 1024):
                sink.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                self._drop(s)

    def _drop(self, s: socket.socket) -> None:
        with self.lock:
            self.sockets.discard(s)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def cut(self) -> None:
        self.online = False
        with self.lock:
            open_sockets = list(self.sockets)
        for s in open_sockets:
            self._drop(s)

    def restore(self) -> None:
        self.online = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.fixture
def network(tool_url, site_lms):  # noqa: F811
    """The tool as the browser reaches it, through the relay."""
    parts = urlsplit(tool_url)
    relay = Network((parts.hostname, parts.port))
    site_lms.tool_url = f"https://127.0.0.1:{relay.port}"
    yield relay
    relay.close()


def open_upload_form(driver, platform):
    from selenium.webdriver.common.by import By

    platform.browser_roles = [INSTRUCTOR]
    driver.get(f"{platform.issuer}/course")
    driver.switch_to.frame(driver.find_element(By.ID, "tool"))
    wait_for_text(driver, "Add media")
    driver.find_element(By.LINK_TEXT, "Add media").click()
    wait_for_text(driver, "Add media")


def choose_and_send(driver, path: Path, title: str) -> None:
    from selenium.webdriver.common.by import By

    driver.execute_script(RECORD_STATUS)
    driver.find_element(By.NAME, "file").send_keys(str(path))
    field = driver.find_element(By.NAME, "title")
    assert field.get_attribute("value"), "filled in from the file name"
    field.clear()  # the teacher types their own
    field.send_keys(title)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def wait_for_bytes_on_the_server(app, at_least: int, seconds: float = 60) -> None:
    """Wait until the tool has written `at_least` bytes of the upload to its part file."""
    parts = Path(app.config["MEDIA_ROOT"], ".uploads")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(p.stat().st_size >= at_least for p in parts.glob("*.part")):
            return
        time.sleep(0.05)
    raise AssertionError(f"the tool never had {at_least} bytes of the upload")


def seen_statuses(driver) -> list[str]:
    return json.loads(driver.execute_script("return sessionStorage.getItem('seen') || '[]'"))


def percents(texts: list[str]) -> list[int]:
    return [int(m.group(1)) for t in texts if (m := re.match(r"(\d+)% uploaded", t))]


def the_item(db, title: str) -> Media:
    db.session.expire_all()
    [item] = db.session.scalars(sa.select(Media).where(Media.title == title))
    return item


def test_an_upload_cut_off_midway_resumes_and_lands_on_the_item(
    browser_factory, site_lms, network, tmp_path, db, app  # noqa: F811
):
    video = tmp_path / "lecture 6.mp4"
    video.write_bytes(MP4 * 4000)  # 4.2 MB: about 10 s over the slow uplink
    driver = browser_factory()
    open_upload_form(driver, site_lms)
    choose_and_send(driver, video, "Lecture 6")
    wait_for_bytes_on_the_server(app, 1024 * 1024)
    network.cut()
    wait_for_text(driver, LOST)
    time.sleep(3)  # offline for a while; the page keeps trying
    network.restore()

    assert "Added “Lecture 6”" in wait_for_text(driver, "Lecture 6", seconds=120)
    item = the_item(db, "Lecture 6")
    assert driver.execute_script("return location.pathname") == f"/media/{item.id}"
    stored = Path(app.config["MEDIA_ROOT"], item.file_path).read_bytes()
    assert hashlib.sha256(stored).digest() == hashlib.sha256(video.read_bytes()).digest()
    assert item.original_filename == "lecture 6.mp4" and item.size == video.stat().st_size
    seen = seen_statuses(driver)
    after = percents(seen[seen.index(LOST):])
    assert after and after[0] >= 25, f"resumed where the tool had got to, not from zero: {seen}"
    assert "100% uploaded (4 MB of 4 MB)" in seen, seen
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Upload)) == 1
    assert_no_policy_violations(driver)


def test_choosing_the_same_file_again_after_the_tab_was_closed_resumes_it(
    browser_factory, site_lms, network, tmp_path, db, app  # noqa: F811
):
    video = tmp_path / "lecture 7.mp4"
    video.write_bytes(MP4 * 3000)  # 3.1 MB
    driver = browser_factory()
    open_upload_form(driver, site_lms)
    choose_and_send(driver, video, "Lecture 7")
    wait_for_bytes_on_the_server(app, 1024 * 1024)
    network.cut()
    driver.get("about:blank")  # the tab is closed: the page and its script are gone
    network.restore()
    open_upload_form(driver, site_lms)
    choose_and_send(driver, video, "Lecture 7")  # the same file, chosen again

    assert "Added “Lecture 7”" in wait_for_text(driver, "Lecture 7", seconds=120)
    item = the_item(db, "Lecture 7")
    assert Path(app.config["MEDIA_ROOT"], item.file_path).read_bytes() == video.read_bytes()
    after_reload = percents(seen_statuses(driver))
    assert after_reload and after_reload[0] >= 25, "carried on from the first attempt"
    assert after_reload[-1] == 100
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Media)) == 1


def test_a_refused_file_is_explained_beside_the_form_and_leaves_nothing(
    browser_factory, site_lms, network, tmp_path, db, app  # noqa: F811
):
    from selenium.webdriver.common.by import By

    from lti_tool.services.uploads import REFUSED_TYPE

    from .test_media import REFUSED

    page = tmp_path / "lecture.mp4"
    page.write_bytes(REFUSED["html"] * 100)
    driver = browser_factory()
    open_upload_form(driver, site_lms)
    choose_and_send(driver, page, "Not a video")
    wait_for_text(driver, REFUSED_TYPE)
    error = driver.find_element(By.CSS_SELECTOR, "[data-error]")
    assert error.text == REFUSED_TYPE and error.get_attribute("role") == "alert"
    assert driver.find_element(By.CSS_SELECTOR, "button[type=submit]").is_enabled()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Upload)) == 0
    assert not [p for p in Path(app.config["MEDIA_ROOT"]).rglob("*") if p.is_file()]
    assert_no_policy_violations(driver)
