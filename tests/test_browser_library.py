"""Issue 13 in Chromium, inside the LMS's 700 px and 400 px frames: the player page (the video
and the teacher's actions in view, images never distorted nor enlarged, the way back) and the
course page's grid of cards (people's words, search, sort, who sees which actions).

Ready media is made here, in the served tool's database and media root, as processing leaves
it: the journeys need no worker."""

import io
import shutil
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image

from lti_tool.models import Category, Media, MediaStatus, Visibility

from .journeys import (
    FRAMES,
    NARROW,
    WIDE,
    assert_accessible,
    fully_visible,
    horizontal_overflow,
    open_course,
)
from .lms import INSTRUCTOR
from .test_browser import (  # noqa: F401  (fixtures)
    CHROMEDRIVER,
    CHROMIUM,
    assert_no_policy_violations,
    browser_factory,
    site_lms,
    tool_url,
    wait_for_text,
)
from .test_player import renditions  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium not installed"),
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
]


def the_course(db) -> Category:
    db.session.remove()  # see what the served tool committed
    return db.session.scalar(sa.select(Category).where(Category.title == "Modern History"))


def store(app, content: bytes, suffix: str) -> str:
    name = uuid.uuid4().hex
    relative = f"{name[:2]}/{name}{suffix}"
    path = Path(app.config["MEDIA_ROOT"], relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return relative


def add_video(app, db, renditions, title="Field trip", **columns) -> Media:  # noqa: F811
    """A ready video of the course, its renditions stored as processing stores them."""
    original = store(app, (renditions / "original").read_bytes(), ".mov")
    folder = original.removesuffix(".mov") + ".r1"
    shutil.copytree(renditions, Path(app.config["MEDIA_ROOT"], folder),
                    ignore=shutil.ignore_patterns("original"))
    item = Media(title=title, file_path=original, original_filename="trip.mov",
                 mime_type="video/quicktime", size=5000, category=the_course(db),
                 visibility=Visibility.MEMBERS, status=MediaStatus.READY, progress=100,
                 renditions_path=folder, playback_path=f"{folder}/video.mp4",
                 hls_path=f"{folder}/hls/master.m3u8", poster_path=f"{folder}/poster.jpg",
                 duration=2.0, width=160, height=120, **columns)
    db.session.add(item)
    db.session.commit()
    return item


def add_image(app, db, width: int, height: int, title: str) -> Media:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(out, "PNG")
    item = Media(title=title, file_path=store(app, out.getvalue(), ".png"), mime_type="image/png",
                 size=len(out.getvalue()), category=the_course(db),
                 visibility=Visibility.MEMBERS, status=MediaStatus.READY, width=width,
                 height=height)
    db.session.add(item)
    db.session.commit()
    return item


def go(driver, path: str, text: str) -> str:
    """Navigate the tool's frame (the launch's session) to `path`, wait for `text`."""
    driver.execute_script("location.href = arguments[0]", path)
    return wait_for_text(driver, text)


def wait_for(driver, script: str, seconds: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds).until(lambda d: d.execute_script(script))


@pytest.mark.parametrize("frame", FRAMES)
def test_the_player_shows_the_video_and_the_teachers_actions_without_scrolling(
    app, db, browser_factory, site_lms, renditions, frame  # noqa: F811
):
    from selenium.webdriver.common.by import By

    site_lms.browser_roles = [INSTRUCTOR]
    driver = browser_factory()
    open_course(driver, site_lms, FRAMES[frame])
    wait_for_text(driver, "Add media")
    course = the_course(db)
    add_video(app, db, renditions, description="We walk to the river and back. " * 8)
    driver.execute_script("location.reload()")
    wait_for_text(driver, "Field trip")
    driver.find_element(By.CSS_SELECTOR, ".card-thumb").click()  # the thumbnail opens it
    wait_for(driver, "var v = document.querySelector('.player video');"
                     " return v && v.readyState >= 1")
    video = driver.find_element(By.CSS_SELECTOR, ".player video")
    assert fully_visible(driver, video)
    for action in ("Edit", "Delete"):
        assert fully_visible(driver, driver.find_element(By.LINK_TEXT, action)), action
    assert fully_visible(driver, driver.find_element(By.TAG_NAME, "h1"))
    assert horizontal_overflow(driver) == 0
    assert_accessible(driver)
    assert_no_policy_violations(driver)
    driver.find_element(By.LINK_TEXT, "Course media").click()
    wait_for_text(driver, "Field trip")
    assert driver.execute_script("return location.pathname") == f"/media/category/{course.id}"


@pytest.mark.parametrize("frame", [WIDE, NARROW], ids=["wide", "narrow"])
def test_images_keep_their_shape_and_are_never_enlarged(app, db, browser_factory, site_lms,
                                                        frame):
    driver = browser_factory()
    open_course(driver, site_lms, frame)
    wait_for_text(driver, "Modern History")
    big, small = add_image(app, db, 800, 600, "Big map"), add_image(app, db, 100, 80, "Stamp")
    for item in (big, small):
        go(driver, f"/media/{item.id}", item.title)
        wait_for(driver, "var i = document.querySelector('.player img');"
                         " return i && i.complete && i.naturalWidth > 0")
        width, height, natural_width, natural_height = driver.execute_script(
            "var i = document.querySelector('.player img'), r = i.getBoundingClientRect();"
            "return [r.width, r.height, i.naturalWidth, i.naturalHeight]")
        assert (natural_width, natural_height) == (item.width, item.height)
        ratio, natural = width / height, natural_width / natural_height
        assert abs(ratio - natural) / natural < 0.01, (item.title, width, height)
        assert width <= natural_width, "never enlarged past its own size"
        assert horizontal_overflow(driver) == 0
    assert_accessible(driver)


def test_a_student_sees_the_course_grid_in_peoples_words_and_no_actions(
    app, db, browser_factory, site_lms, renditions  # noqa: F811
):
    from selenium.webdriver.common.by import By

    driver = browser_factory()
    open_course(driver, site_lms, NARROW)
    wait_for_text(driver, "No media in this course yet.")
    add_video(app, db, renditions, description="We walk to the river.")
    add_image(app, db, 800, 600, "Map of the river")
    driver.execute_script("location.reload()")
    text = wait_for_text(driver, "Field trip")
    for words in ("Map of the river", "0:02", "Video", "Image", "Visible to: course members",
                  "We walk to the river."):
        assert words in text, words
    assert "video/" not in text and "image/" not in text
    for action in ("Add media", "Edit", "Delete"):
        assert driver.find_elements(By.PARTIAL_LINK_TEXT, action) == [], action
    assert horizontal_overflow(driver) == 0
    assert_accessible(driver)


@pytest.mark.parametrize("frame", FRAMES)
def test_a_teacher_searches_and_sorts_the_course_grid(app, db, browser_factory, site_lms,
                                                     frame):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    site_lms.browser_roles = [INSTRUCTOR]
    driver = browser_factory()
    open_course(driver, site_lms, FRAMES[frame])
    wait_for_text(driver, "Add media")
    for title in ("Bridges", "Aqueducts", "Roads of Rome"):
        add_image(app, db, 320, 180, title)
    driver.execute_script("location.reload()")
    wait_for_text(driver, "Roads of Rome")

    def shown() -> list[str]:
        return [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".card-title")]

    assert shown() == ["Roads of Rome", "Aqueducts", "Bridges"]  # newest first
    assert len(driver.find_elements(By.PARTIAL_LINK_TEXT, "Edit")) == 3
    assert len(driver.find_elements(By.PARTIAL_LINK_TEXT, "Delete")) == 3
    assert driver.find_elements(By.LINK_TEXT, "Add media")
    assert horizontal_overflow(driver) == 0
    assert_accessible(driver)
    Select(driver.find_element(By.NAME, "sort")).select_by_visible_text("Title A–Z")
    wait_for(driver, "return location.search.indexOf('sort=title') >= 0")
    wait_for_text(driver, "Bridges")
    assert shown() == ["Aqueducts", "Bridges", "Roads of Rome"]
    search = driver.find_element(By.NAME, "q")
    search.send_keys("ro")
    search.submit()
    wait_for(driver, "return location.search.indexOf('q=ro') >= 0")
    assert shown() == ["Roads of Rome"]
    assert Select(driver.find_element(By.NAME, "sort")).first_selected_option.text == "Title A–Z"
    search = driver.find_element(By.NAME, "q")
    search.clear()
    search.send_keys("zebra")
    search.submit()
    wait_for_text(driver, "Nothing matches “zebra”.")
    driver.find_element(By.LINK_TEXT, "Clear the search").click()
    wait_for_text(driver, "Roads of Rome")
    assert shown() == ["Aqueducts", "Bridges", "Roads of Rome"]
    assert_no_policy_violations(driver)


def test_a_pdf_shows_in_the_player_with_its_link_and_the_teachers_actions_in_view(
    app, db, browser_factory, site_lms
):
    """The file is served with `Content-Security-Policy: sandbox`; Chromium's PDF viewer still
    draws it in the frame (checked by eye on a screenshot, headless Chromium 156; a test cannot
    read the viewer's pixels), and the link opens it whole."""
    from selenium.webdriver.common.by import By

    site_lms.browser_roles = [INSTRUCTOR]
    driver = browser_factory()
    open_course(driver, site_lms, WIDE)
    wait_for_text(driver, "Add media")
    out = io.BytesIO()
    Image.new("RGB", (600, 800), (200, 50, 50)).save(out, "PDF")
    item = Media(title="Handout", file_path=store(app, out.getvalue(), ".pdf"),
                 mime_type="application/pdf", size=len(out.getvalue()),
                 category=the_course(db), visibility=Visibility.MEMBERS,
                 status=MediaStatus.READY)
    db.session.add(item)
    db.session.commit()
    go(driver, f"/media/{item.id}", "Open the PDF in a new tab")
    frame = driver.find_element(By.CSS_SELECTOR, ".player iframe.pdf")
    assert frame.size["height"] > 300
    for link in ("Open the PDF in a new tab", "Edit", "Delete"):
        assert fully_visible(driver, driver.find_element(By.LINK_TEXT, link)), link
    assert horizontal_overflow(driver) == 0
    assert_accessible(driver)
