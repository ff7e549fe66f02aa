"""`/`: never a dead end. Inside the LMS it leads to the user's place; outside it says what the
tool is, with the admins' way in."""

from .lms import DROP


def test_outside_the_lms_home_says_what_the_tool_is(client):
    page = client.get("/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "open the media activity from your course" in text
    assert 'href="/admin/login"' in text


def test_home_may_be_framed_by_registered_platforms(browser, lms):
    page = browser.get("/")
    assert "frame-ancestors https://lms.example.edu" in page.headers["Content-Security-Policy"]


def test_inside_the_lms_home_goes_to_the_course(browser, lms):
    landing = lms.launch(browser)
    course = landing.headers["Content-Location"]
    assert "/media/category/" in course
    home = browser.get("/")
    assert home.status_code == 303 and home.headers["Location"] == course


def test_without_a_course_home_goes_to_ones_own_media(browser, lms):
    lms.launch(browser, context=DROP)
    home = browser.get("/")
    assert home.status_code == 303 and home.headers["Location"].endswith("/media/")
