"""Platform Storage in a real Chromium that blocks all of the tool's cookies in the LMS frame:
the LMS (as Canvas, with its `post_message_forwarding` frame, or as Sakai, `_parent`) keeps the
login's state and nonce, and the launch lands on the course's media or the picker, where a
teacher pages, searches, chooses and adds without any cookie (the picker pass)."""

import jwt
import pytest

from lti_tool.models import Media, Visibility

from .journeys import NARROW, assert_accessible, horizontal_overflow
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

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium not installed")

DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"


def open_blocked(browser_factory, site_lms, tool_url):
    from selenium.webdriver.common.by import By

    driver = browser_factory(block_cookies_of=(tool_url, site_lms.issuer))
    driver.get(f"{site_lms.issuer}/course")
    driver.switch_to.frame(driver.find_element(By.ID, "tool"))
    return driver


def storage_seen(driver, site_lms) -> list[str]:
    from selenium.webdriver.common.by import By

    driver.switch_to.default_content()
    if site_lms.storage_target == "post_message_forwarding":
        driver.switch_to.frame(driver.find_element(By.NAME, "post_message_forwarding"))
    seen = driver.execute_script("return window.ltiStorageSeen")
    driver.switch_to.default_content()
    return seen


@pytest.mark.parametrize("target", ["post_message_forwarding", "_parent"])
def test_a_student_lands_on_the_course_media_with_cookies_blocked(
    browser_factory, site_lms, tool_url, target
):
    site_lms.storage_target = target
    driver = open_blocked(browser_factory, site_lms, tool_url)
    text = wait_for_text(driver, "No media in this course yet.")
    assert "Modern History" in text
    assert driver.get_cookies() == [], "the tool kept no cookie at all"
    assert_no_policy_violations(driver)
    seen = storage_seen(driver, site_lms)
    assert [s.split(" ")[0] for s in seen] == ["lti.put_data"] * 2 + ["lti.get_data"] * 2
    assert seen[0].startswith("lti.put_data state_") and seen[1].startswith("lti.put_data nonce_")


def test_a_platform_speaking_the_org_imsglobal_spelling_keeps_the_state(
    browser_factory, site_lms, tool_url
):
    """Brightspace's storage knows only org.imsglobal.lti.put_data / get_data, and answers the
    other spelling with an error: the tool asks in both, and that error does not stop it."""
    site_lms.storage_target = "post_message_forwarding"
    site_lms.storage_prefix = "org.imsglobal."
    driver = open_blocked(browser_factory, site_lms, tool_url)
    wait_for_text(driver, "No media in this course yet.")
    assert driver.get_cookies() == []
    assert_no_policy_violations(driver)
    seen = storage_seen(driver, site_lms)
    assert [s.split(" ")[0] for s in seen] == ["lti.put_data"] * 2 + ["lti.get_data"] * 2


def test_a_student_with_cookies_blocked_plays_the_linked_video(
    app, db, browser_factory, site_lms, tool_url, make_user, tmp_path
):
    """A link to a processed video, launched with every cookie of the tool blocked: its player
    streams through hls.js, each request carrying the media pass."""
    from .test_browser_player import hevc_clip, play_muted, wait_for
    from .test_processing import processed

    clip = tmp_path / "field trip.mov"
    hevc_clip(clip)
    item = processed(app, db, clip, "Field trip", owner=make_user("teacher"),
                     visibility=Visibility.PUBLIC)
    site_lms.storage_target = "post_message_forwarding"
    site_lms.browser_custom = {"media_id": str(item.id)}
    driver = open_blocked(browser_factory, site_lms, tool_url)
    wait_for(driver, "return document.querySelector('.player video')")
    assert play_muted(driver) == "playing"
    wait_for(driver, "return document.querySelector('.player video').currentTime > 1")
    engine = driver.execute_script("return document.querySelector('.player video').dataset.engine")
    assert engine == "hls.js"
    assert driver.get_cookies() == [], "the tool kept no cookie at all"
    assert_no_policy_violations(driver)


def test_pages_after_the_first_show_the_way_to_a_new_window(browser_factory, site_lms, tool_url):
    from selenium.webdriver.common.by import By

    site_lms.storage_target = "post_message_forwarding"
    driver = open_blocked(browser_factory, site_lms, tool_url)
    wait_for_text(driver, "Open the media tool in a new window")
    assert_accessible(driver)  # the landing page with its notice
    course = driver.current_window_handle
    driver.find_element(By.LINK_TEXT, "Open the media tool in a new window").click()
    driver.switch_to.window([h for h in driver.window_handles if h != course][0])
    wait_for_text(driver, "No media in this course yet.")
    driver.get(f"{tool_url}/media/")  # the session works in a window of its own
    wait_for_text(driver, "My media")
    assert_no_policy_violations(driver)
    driver.switch_to.window(course)
    driver.switch_to.frame(driver.find_element(By.ID, "tool"))
    driver.execute_script("location.href = '/media/'")  # a page needing the session
    wait_for_text(driver, "blocks the media tool's cookies inside the LMS page")


def test_a_teacher_with_cookies_blocked_pages_searches_chooses_and_adds(
    browser_factory, site_lms, tool_url, db, make_user
):
    """The picker without any cookie: a choice on the first page, the next page, a search, Add;
    the LMS gets both items. Every step is a POST carrying the picker pass."""
    from selenium.webdriver.common.by import By

    owner = make_user("colleague")
    db.session.add_all([Media(title=f"Seminar {n:02d}", file_path=f"s{n}.mp4",
                              mime_type="video/mp4", size=1, owner=owner,
                              visibility=Visibility.PUBLIC) for n in range(21)])
    db.session.commit()
    site_lms.storage_target = "post_message_forwarding"
    site_lms.browser_roles = [INSTRUCTOR]
    site_lms.browser_message_type = "LtiDeepLinkingRequest"
    site_lms.frame = NARROW  # the LMS's narrow dialog
    driver = open_blocked(browser_factory, site_lms, tool_url)
    wait_for_text(driver, "search, choose and add work here")
    assert_accessible(driver)
    assert horizontal_overflow(driver) == 0
    cards = driver.find_elements(By.CSS_SELECTOR, "li.card")
    assert len(cards) == 20
    thumbnail = driver.find_element(By.CSS_SELECTOR, "li.card img").get_attribute("src")
    answer = driver.execute_async_script(
        "fetch(arguments[0]).then(r => arguments[1](r.status + ' ' +"
        " r.headers.get('content-type')))", thumbnail)
    assert answer.startswith("200 image/"), f"a thumbnail needs no session: {answer}"
    first = cards[0].get_attribute("data-media-id")
    cards[0].find_element(By.CSS_SELECTOR, ".card-meta").click()  # the card chooses
    driver.execute_script("window.scrollTo(0, document.documentElement.scrollHeight)")
    driver.find_element(By.XPATH, "//nav[@class='pager']/button[text()='Next']").click()
    wait_for_text(driver, "First page")
    assert find_count(driver) == "1 chosen", "the first page's choice is kept"
    search = driver.find_element(By.CSS_SELECTOR, "input[name=q]")
    search.send_keys("Seminar 07")
    driver.find_element(By.CSS_SELECTOR,
                        "form[data-picker-search] button[type=submit]").click()
    wait_for_text(driver, "1 chosen")
    found = driver.find_element(By.CSS_SELECTOR, "li.card")
    second = found.get_attribute("data-media-id")
    found.find_element(By.CSS_SELECTOR, "input[name=media_ids]").click()
    assert find_count(driver) == "2 chosen"
    driver.find_element(By.CSS_SELECTOR, "button[value=add]").click()
    wait_for_text(driver, "Back in the course")
    claims = jwt.decode(site_lms.returned[-1], options={"verify_signature": False})
    assert sorted(i["custom"]["media_id"] for i in claims[DL + "content_items"]) == sorted(
        [first, second])
    assert driver.get_cookies() == [], "the tool kept no cookie at all"
    assert_no_policy_violations(driver)


def find_count(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, "[data-count]").text


@pytest.mark.parametrize("answers", [False, "put"], ids=["at-login", "at-launch"])
def test_unanswered_storage_falls_back_to_a_new_window(
    browser_factory, site_lms, tool_url, answers
):
    from selenium.webdriver.common.by import By

    site_lms.storage_target = "post_message_forwarding"
    site_lms.storage_answers = answers
    driver = open_blocked(browser_factory, site_lms, tool_url)
    wait_for_text(driver, "Open the media tool in a new window", seconds=15)
    assert_accessible(driver)
    driver.find_element(By.LINK_TEXT, "Open the media tool in a new window").click()
    new_window = [h for h in driver.window_handles if h != driver.current_window_handle][0]
    driver.switch_to.window(new_window)
    wait_for_text(driver, "Modern History")
    assert_no_policy_violations(driver)


def test_where_cookies_work_the_storage_login_keeps_the_session(
    browser_factory, site_lms, tool_url
):
    """Canvas sends lti_storage_target to every browser: one that keeps the tool's cookies takes
    the cookie path, with its session for the pages after the first."""
    from selenium.webdriver.common.by import By

    site_lms.storage_target = "post_message_forwarding"
    driver = browser_factory()
    driver.get(f"{site_lms.issuer}/course")
    driver.switch_to.frame(driver.find_element(By.ID, "tool"))
    text = wait_for_text(driver, "No media in this course yet.")
    assert "Open the media tool in a new window" not in text
    driver.execute_script("location.href = '/media/'")
    wait_for_text(driver, "My media")
    assert_no_policy_violations(driver)
    assert [s.split(" ")[0] for s in storage_seen(driver, site_lms)] == ["lti.put_data"] * 2
