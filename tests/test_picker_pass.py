"""The deep-linking picker where the browser keeps none of the tool's cookies (Platform Storage):
its forms carry a picker pass, which answers the platform, searches and pages, for that launch's
picker only, and signs nobody in."""

import re
from html import unescape

import pytest
from itsdangerous import TimestampSigner

from lti_tool.models import Media, User, Visibility
from lti_tool.services import users

from .lms import INSTRUCTOR
from .test_deep_linking import answer, verify_as_the_platform
from .test_launch_validation import signed_in_user
from .test_platform_storage import cookieless_launch, new_browser

DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"


@pytest.fixture
def shelf(db, make_user):
    """Twenty-one public items of another teacher: a page of the picker and one more."""
    owner = make_user("colleague")
    items = [Media(title=f"Lecture {n:02d}", file_path=f"l{n}.mp4", mime_type="video/mp4",
                   size=1, owner=owner, visibility=Visibility.PUBLIC) for n in range(21)]
    db.session.add_all(items)
    db.session.commit()
    return items


def cookieless_picker(app, browser, lms):
    """A deep-linking launch through Platform Storage in a browser that keeps no cookie: the
    browser, the picker's address, its pass and the page."""
    done = cookieless_launch(app, browser, lms, message_type="LtiDeepLinkingRequest",
                             roles=[INSTRUCTOR])
    html = done.get_data(as_text=True)
    action = unescape(re.search(r'<form method="post" action="([^"]+)" class="picker-form"',
                                html)[1])
    # What the LMS frame keeps of the tool's cookies: nothing.
    return new_browser(app), action, pass_of(done), done


def pass_of(page) -> str:
    found = re.findall(r'name="picker_pass" value="([^"]+)"', page.get_data(as_text=True))
    assert found and len(set(found)) == 1, "every form of the page carries the same pass"
    return unescape(found[0])


def card_ids(page) -> list[str]:
    return re.findall(r'data-media-id="(\d+)"', page.get_data(as_text=True))


def test_a_teacher_without_cookies_adds_media(app, browser, lms, db, shelf):
    elsewhere, action, picker_pass, page = cookieless_picker(app, browser, lms)
    assert action.startswith("/media/picker/")
    html = page.get_data(as_text=True)
    assert "csrf_token" not in html, "the pass is the form's token"
    assert "Upload a new item" not in html and "data-preview-url" not in html
    assert re.search(r"To preview or upload,\s*<a href=\"[^\"]*lti1p3_new_window=1", html)
    # Thumbnails that need no session; no link to a page that would.
    assert re.search(r'<img src="/media/\d+/thumbnail\?token=', html)
    assert 'href="/media/' not in html.split('class="cards"')[1].split("</ul>")[0]
    chosen = card_ids(page)[0]
    response = elsewhere.post(action, data={"media_ids": [chosen], "action": "add",
                                            "picker_pass": picker_pass})
    assert response.status_code == 200, response.data[:500]
    return_url, token = answer(response)
    claims = verify_as_the_platform(elsewhere, lms, token)
    assert [item["custom"]["media_id"] for item in claims[DL + "content_items"]] == [chosen]
    assert return_url == lms.claims(message_type="LtiDeepLinkingRequest")[
        DL + "deep_linking_settings"]["deep_link_return_url"]
    # Nothing to keep: no session cookie, nobody signed in.
    assert not [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert signed_in_user(elsewhere) is None


def test_without_cookies_search_and_pages_post_the_pass(app, browser, lms, db, shelf):
    elsewhere, action, picker_pass, page = cookieless_picker(app, browser, lms)
    first = card_ids(page)
    assert len(first) == 20
    html = page.get_data(as_text=True)
    assert re.search(r'<form method="post" action="[^"]+" class="filters picker-filters"', html)
    assert "?after=" not in html, "no page address to carry the pass"
    # Next page: the picker's own form, with what is chosen on this page.
    nxt = re.search(r'<button type="submit" name="after" value="(\d+)" class="link">Next', html)
    second = elsewhere.post(action, data={"picker_pass": picker_pass, "after": nxt[1],
                                          "media_ids": [first[0]], "q": "", "scope": "all"})
    assert second.status_code == 200 and b'name="JWT"' not in second.data
    assert card_ids(second) == [str(shelf[0].id)]
    assert f'name="kept_ids" value="{first[0]}"' in second.get_data(as_text=True)
    assert b"1 chosen" in second.data
    assert "lti1p3_new_window=1" in second.get_data(as_text=True), "the way to a new window"
    # A search keeps the choice too, then both are added.
    found = elsewhere.post(action, data={"picker_pass": picker_pass, "q": "Lecture 03",
                                         "keep": [first[0]]})
    assert card_ids(found) == [str(shelf[3].id)]
    done = elsewhere.post(action, data={"picker_pass": pass_of(found), "action": "add",
                                        "media_ids": [str(shelf[3].id)],
                                        "kept_ids": [first[0]]})
    _, token = answer(done)
    items = verify_as_the_platform(elsewhere, lms, token)[DL + "content_items"]
    assert sorted(i["custom"]["media_id"] for i in items) == sorted([first[0], str(shelf[3].id)])


@pytest.mark.parametrize("change", ["tampered", "another_launch", "in_the_address", "none",
                                    "sessions_ended", "deactivated"])
def test_a_pass_is_for_its_launch_its_user_and_a_form_only(app, browser, lms, db, shelf, change):
    elsewhere, action, picker_pass, page = cookieless_picker(app, browser, lms)
    data = {"media_ids": [card_ids(page)[0]], "action": "add", "picker_pass": picker_pass}
    url = action
    if change == "tampered":
        data["picker_pass"] = picker_pass[:-2] + ("AA" if not picker_pass.endswith("AA") else "BB")
    elif change == "another_launch":
        url = "/media/picker/lti1p3-launch-of-someone-else"
    elif change == "in_the_address":
        del data["picker_pass"]
        url = f"{action}?picker_pass={picker_pass}"
    elif change == "none":
        del data["picker_pass"]
    else:
        teacher = db.session.scalars(
            db.select(User).order_by(User.id.desc())).first()  # the launch's new account
        if change == "sessions_ended":
            users.end_sessions(teacher)
        else:
            teacher.active = False
        db.session.commit()
    response = elsewhere.post(url, data=data)
    assert response.status_code == 401, response.data[:300]
    assert b'name="JWT"' not in response.data
    assert signed_in_user(elsewhere) is None


def test_a_pass_beside_a_session_of_another_user_counts_for_nothing(app, browser, lms, db,
                                                                    shelf):
    """A browser signed in (cookie path) posting someone's pass: the session's CSRF rule holds."""
    _, action, picker_pass, page = cookieless_picker(app, browser, lms)
    lms.launch(browser, sub="another-teacher", roles=[INSTRUCTOR])
    response = browser.post(action, data={"media_ids": [card_ids(page)[0]], "action": "add",
                                          "picker_pass": picker_pass})
    assert response.status_code == 400 and b'name="JWT"' not in response.data


def test_a_pass_lives_two_hours(app, browser, lms, db, shelf, monkeypatch):
    elsewhere, action, picker_pass, page = cookieless_picker(app, browser, lms)
    now = TimestampSigner.get_timestamp
    monkeypatch.setattr(TimestampSigner, "get_timestamp",
                        lambda self: now(self) + 2 * 3600 + 5)
    response = elsewhere.post(action, data={"media_ids": [card_ids(page)[0]], "action": "add",
                                            "picker_pass": picker_pass})
    assert response.status_code == 401
