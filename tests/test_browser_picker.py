"""The deep-linking picker and the upload from it as teachers meet them in the LMS's frame
(Chromium, cross-site iframe of 100% x 700 px and 400 x 700 px): the Add bar always in view, no
horizontal scrolling, a preview in a dialog that keeps the choices, the new upload coming back
chosen and going to the LMS, Cancel from every upload page, the disabled look while uploading."""

import io
import time

import jwt
import pytest
import sqlalchemy as sa
from PIL import Image

from lti_tool.models import Media, Visibility
from lti_tool.services import media as media_service

from .journeys import (
    FRAMES,
    NARROW,
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
from .test_media import MP4

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium not installed")

DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"
LONG_TITLE = "Photosynthesis and the light-dependent reactions in chloroplasts"


def png(width=800, height=600) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (40, 90, 160)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def library(app, db, make_user):
    """Nine items the teacher may link (public, another teacher's), one a real image."""
    other = make_user("other-teacher")
    other.name = "Ada Lovelace"
    db.session.add_all([
        Media(title=f"{LONG_TITLE} {n}" if n % 3 == 0 else f"Lecture {n}",
              description="Week notes", file_path=f"{n}.mp4", mime_type="video/mp4", size=1,
              owner=other, visibility=Visibility.PUBLIC, duration=60 * n + 7)
        for n in range(1, 9)
    ])
    image = media_service.add_media(
        io.BytesIO(png()), root=app.config["MEDIA_ROOT"], max_bytes=10**8, title="Leaf diagram",
        owner=other, visibility=Visibility.PUBLIC)
    db.session.commit()
    return image


def open_picker(driver, site_lms, frame):
    site_lms.browser_roles = [INSTRUCTOR]
    site_lms.browser_message_type = "LtiDeepLinkingRequest"
    open_course(driver, site_lms, frame)
    wait_for_text(driver, "Choose media")


def find(driver, css):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def rect(driver, element) -> dict:
    return driver.execute_script("return arguments[0].getBoundingClientRect().toJSON()", element)


@pytest.mark.parametrize("frame", FRAMES)
def test_the_add_bar_stays_in_view_however_long_the_list(browser_factory, site_lms, library,
                                                          frame):
    driver = browser_factory()
    open_picker(driver, site_lms, FRAMES[frame])
    assert len(driver.find_elements("css selector", "ul.cards > li.card")) == 9
    add = find(driver, "button[value=add]")
    assert fully_visible(driver, add), "the Add bar at the first sight"
    assert driver.execute_script("return document.documentElement.scrollHeight") > 700
    driver.execute_script("window.scrollTo(0, document.body.scrollHeight / 2)")
    assert fully_visible(driver, add), "the Add bar half way down"
    assert fully_visible(driver, find(driver, "button[value=cancel]"))
    assert horizontal_overflow(driver) == 0
    # "Show" sits on its drop-down's line; the search box keeps its label too.
    for control in ("scope", "q"):
        label, field = rect(driver, find(driver, f"label[for={control}]")), rect(
            driver, find(driver, f"#{control}"))
        assert label["top"] < field["bottom"] and field["top"] < label["bottom"], control
        assert label["right"] <= field["left"] + 1, control
    # Titles wrap whole under their thumbnails: each title as wide as its card's text.
    for card in driver.find_elements("css selector", "li.card"):
        title, thumb = card.find_element("css selector", ".card-title"), card.find_element(
            "css selector", ".card-thumb")
        assert rect(driver, title)["width"] >= rect(driver, thumb)["width"] - 30
    # A click on a card chooses it: highlighted, counted.
    card = driver.find_elements("css selector", "li.card")[1]
    card.find_element("css selector", ".card-meta").click()
    assert card.find_element("css selector", "input[name=media_ids]").is_selected()
    assert find(driver, "[data-count]").text == "1 chosen"
    assert driver.execute_script(
        "return getComputedStyle(arguments[0]).boxShadow", card) != "none"
    assert_accessible(driver)
    assert_no_policy_violations(driver)


def test_a_preview_plays_in_a_dialog_and_leaves_the_choices(browser_factory, site_lms, library):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser_factory()
    open_picker(driver, site_lms, NARROW)
    picker = driver.execute_script("return location.href")
    first = find(driver, "li.card input[name=media_ids]")
    driver.execute_script("arguments[0].click()", first)
    card = find(driver, f"li.card[data-media-id='{library.id}']")
    link = card.find_element("css selector", ".card-title a")
    link.click()
    dialog = find(driver, "dialog[data-preview]")
    WebDriverWait(driver, 10).until(lambda d: dialog.get_attribute("open") is not None)
    image = WebDriverWait(driver, 10).until(
        lambda d: d.find_elements("css selector", "dialog[open] [data-preview-player] img"))[0]
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth",
                                   image))
    assert find(driver, "[data-preview-title]").text == "Leaf diagram"
    assert fully_visible(driver, find(driver, "[data-preview-close]"))
    shown = rect(driver, image)
    assert abs(shown["width"] / shown["height"] - 800 / 600) < 0.02, "not distorted"
    assert horizontal_overflow(driver) == 0
    assert_accessible(driver)
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    WebDriverWait(driver, 5).until(lambda d: dialog.get_attribute("open") is None)
    assert driver.execute_script("return location.href") == picker
    assert first.is_selected(), "the choice is kept"
    assert driver.switch_to.active_element == link, "focus back on the title"
    # The Close button closes it too.
    link.click()
    WebDriverWait(driver, 10).until(lambda d: dialog.get_attribute("open") is not None)
    find(driver, "[data-preview-close]").click()
    WebDriverWait(driver, 5).until(lambda d: dialog.get_attribute("open") is None)
    assert_no_policy_violations(driver)


def test_a_video_preview_streams_through_hls_and_stops_when_closed(
    app, db, browser_factory, site_lms, make_user, tmp_path
):
    """A processed video plays in the preview as on its own page: HLS through hls.js; closing
    the dialog stops the stream."""
    from selenium.webdriver.support.ui import WebDriverWait

    from .test_browser_player import hevc_clip, play_muted
    from .test_processing import processed

    clip = tmp_path / "field trip.mov"
    hevc_clip(clip)
    item = processed(app, db, clip, "Field trip", owner=make_user("colleague"),
                     visibility=Visibility.PUBLIC)
    driver = browser_factory()
    open_picker(driver, site_lms, NARROW)
    find(driver, f"li.card[data-media-id='{item.id}'] .card-title a").click()
    video = WebDriverWait(driver, 10).until(
        lambda d: d.find_elements("css selector", "dialog[open] [data-preview-player] video"))[0]
    assert play_muted(driver, "dialog[open] [data-preview-player] video") == "playing"
    WebDriverWait(driver, 15).until(lambda d: d.execute_script(
        "return arguments[0].currentTime > 0.5", video))
    engine, source = driver.execute_script(
        "return [arguments[0].dataset.engine, arguments[0].currentSrc]", video)
    assert engine == "hls.js" and source.startswith("blob:"), (engine, source)
    driver.execute_script("window.previewed = arguments[0]", video)
    find(driver, "[data-preview-close]").click()
    assert driver.execute_script("return window.previewed.paused"), "the preview stopped"
    assert driver.execute_script("return window.previewed.hlsPlayer") is None, "hls.js let go"
    assert driver.find_elements("css selector", "[data-preview-player] video") == []
    assert_no_policy_violations(driver)


def test_an_upload_from_the_picker_comes_back_chosen_and_goes_to_the_course(
    browser_factory, site_lms, library, tmp_path, db
):
    from selenium.webdriver.common.by import By

    video = tmp_path / "week_3-cell_biology.mp4"
    video.write_bytes(MP4 * 2500)  # 2.6 MB
    driver = browser_factory(one_process=True)
    open_picker(driver, site_lms, NARROW)
    picker = driver.execute_script("return location.pathname")
    driver.find_element(By.LINK_TEXT, "Upload a new item").click()
    wait_for_text(driver, "Add media")
    assert "video/mp4" in find(driver, "input[name=file]").get_attribute("accept")
    driver.find_element(By.NAME, "file").send_keys(str(video))
    assert find(driver, "input[name=title]").get_attribute("value") == "week 3 cell biology"
    assert horizontal_overflow(driver) == 0
    assert_accessible(driver)
    driver.set_network_conditions(latency=5, download_throughput=10_000_000,
                                  upload_throughput=800_000)
    button = find(driver, "button[type=submit]")
    accent = driver.execute_script("return getComputedStyle(arguments[0]).backgroundColor",
                                   button)
    button.click()
    looks, statuses = set(), set()
    for _ in range(300):
        state = driver.execute_script(
            "var b = document.querySelector('form[data-upload] button[type=submit]');"
            "var s = document.querySelector('[data-status]');"
            "if (!b) return null;"
            "return [b.disabled, getComputedStyle(b).backgroundColor,"
            " document.querySelector('[data-upload-fields]').disabled,"
            " document.querySelector('input[name=title]').matches(':disabled'), s.textContent];")
        if state is None:
            break
        if state[0]:
            looks.add(tuple(state[1:4]))
        statuses.add(state[4])
        time.sleep(0.03)
    assert looks, "the button was disabled while uploading"
    assert all(bg != accent and fields and title for bg, fields, title in looks), looks
    assert any(s.startswith("Uploaded. It is being processed now — you can already add it")
               for s in statuses), statuses
    wait_for_text(driver, "is chosen below")
    driver.set_network_conditions(latency=0, download_throughput=-1, upload_throughput=-1)
    assert driver.execute_script("return location.pathname") == picker
    fresh = db.session.scalar(sa.select(Media).where(Media.title == "week 3 cell biology"))
    first = find(driver, "li.card")
    assert first.get_attribute("data-media-id") == str(fresh.id), "the new item first"
    assert first.find_element(By.CSS_SELECTOR, "input[name=media_ids]").is_selected()
    assert find(driver, "[data-count]").text == "1 chosen"
    find(driver, "button[value=add]").click()
    wait_for_text(driver, "Back in the course")
    assert len(site_lms.returned) == 1
    claims = jwt.decode(site_lms.returned[0], options={"verify_signature": False})
    assert [(i["title"], i["custom"]["media_id"]) for i in claims[DL + "content_items"]] == [
        ("week 3 cell biology", str(fresh.id))]
    assert_no_policy_violations(driver)


def test_cancel_on_the_upload_pages_goes_back_to_the_picker(browser_factory, site_lms, library,
                                                            tmp_path):
    from selenium.webdriver.common.by import By

    from lti_tool.services.uploads import REFUSED_TYPE

    from .test_media import REFUSED

    page = tmp_path / "lecture.mp4"
    page.write_bytes(REFUSED["html"] * 100)
    driver = browser_factory()
    open_picker(driver, site_lms, NARROW)
    picker = driver.execute_script("return location.pathname")
    driver.find_element(By.LINK_TEXT, "Upload a new item").click()
    wait_for_text(driver, "Add media")
    assert fully_visible(driver, find(driver, "[data-cancel]"))
    driver.find_element(By.LINK_TEXT, "Cancel").click()
    wait_for_text(driver, "Choose media")
    assert driver.execute_script("return location.pathname") == picker
    # After a refused file, Cancel is still there and still goes back.
    driver.find_element(By.LINK_TEXT, "Upload a new item").click()
    wait_for_text(driver, "Add media")
    driver.find_element(By.NAME, "file").send_keys(str(page))
    find(driver, "button[type=submit]").click()
    wait_for_text(driver, REFUSED_TYPE)
    assert find(driver, "button[type=submit]").is_enabled()
    assert find(driver, "input[name=title]").is_enabled()
    driver.find_element(By.LINK_TEXT, "Cancel").click()
    wait_for_text(driver, "Choose media")
    assert driver.execute_script("return location.pathname") == picker
    assert_no_policy_violations(driver)


def test_cancel_on_the_upload_page_goes_back_to_the_course(browser_factory, site_lms):
    from selenium.webdriver.common.by import By

    site_lms.browser_roles = [INSTRUCTOR]
    driver = browser_factory()
    open_course(driver, site_lms)
    wait_for_text(driver, "Add media")
    course = driver.execute_script("return location.pathname")
    driver.find_element(By.LINK_TEXT, "Add media").click()
    wait_for_text(driver, "Visible to")
    driver.find_element(By.LINK_TEXT, "Cancel").click()
    wait_for_text(driver, "Add media")
    assert driver.execute_script("return location.pathname") == course


def test_choices_stay_chosen_across_pages_and_searches(browser_factory, site_lms, library, db,
                                                       make_user):
    """Two pages of media: one item chosen on each, a search between, both reach the LMS."""
    from selenium.webdriver.common.by import By

    owner = make_user("owner")
    db.session.add_all([Media(title=f"Seminar {n:02d}", file_path=f"s{n}.mp4",
                              mime_type="video/mp4", size=1, owner=owner,
                              visibility=Visibility.PUBLIC) for n in range(16)])
    db.session.commit()
    driver = browser_factory()
    open_picker(driver, site_lms, NARROW)

    def choose(card):
        card.find_element(By.CSS_SELECTOR, ".card-meta").click()
        return card.get_attribute("data-media-id")

    first = choose(find(driver, "li.card"))
    assert find(driver, "[data-count]").text == "1 chosen"
    # at the end of the list, as a teacher scrolls to it (the Add bar stays over the list)
    driver.execute_script("window.scrollTo(0, document.documentElement.scrollHeight)")
    driver.find_element(By.CSS_SELECTOR, ".pager a[rel=next]").click()
    wait_for_text(driver, "First page")
    assert find(driver, "[data-count]").text == "1 chosen", "the first page's choice is kept"
    second = choose(find(driver, "li.card"))
    assert find(driver, "[data-count]").text == "2 chosen"
    search = find(driver, "input[name=q]")
    search.send_keys("Lecture")
    find(driver, "form[data-picker-search] button[type=submit]").click()
    wait_for_text(driver, "2 chosen")
    assert horizontal_overflow(driver) == 0
    find(driver, "button[value=add]").click()
    wait_for_text(driver, "Back in the course")
    claims = jwt.decode(site_lms.returned[-1], options={"verify_signature": False})
    assert sorted(i["custom"]["media_id"] for i in claims[DL + "content_items"]) == sorted(
        [first, second])
    assert_no_policy_violations(driver)
