"""A player where the browser keeps none of the tool's cookies (Platform Storage): its video, HLS
playlists and segments, poster and captions are fetched with the media pass in their path, for
that item and that user only; the access logs hide it."""

import re
import runpy
from html import unescape
from urllib.parse import urljoin

import pytest

from lti_tool.models import Media, User, Visibility
from lti_tool.services import users

from .server import ROOT
from .test_launch_validation import signed_in_user
from .test_media import fetch
from .test_platform_storage import cookieless_launch, new_browser
from .test_processing import clips, processed  # noqa: F401  (fixture)


@pytest.fixture
def lecture(app, db, clips, make_user):  # noqa: F811
    """A processed video (MP4, HLS, poster) another teacher shares with everyone."""
    item = processed(app, db, clips["video"], "Week 1 lecture", owner=make_user("teacher"),
                     visibility=Visibility.PUBLIC)
    assert item.is_ready and item.hls_path
    return item


def cookieless_player(app, browser, lms, media_id: int):
    """A launch of a link to the item through Platform Storage, in a browser that keeps no
    cookie: a fresh browser and the page."""
    done = cookieless_launch(app, browser, lms, custom={"media_id": str(media_id)})
    return new_browser(app), done.get_data(as_text=True)


def attribute(html: str, name: str) -> str:
    return unescape(re.search(rf'<video[^>]*\s{name}="([^"]+)"', html, re.S)[1])


def test_a_student_without_cookies_plays_the_linked_video(app, browser, lms, db, lecture):
    fresh, html = cookieless_player(app, browser, lms, lecture.id)
    src, hls, poster = (attribute(html, n) for n in ("src", "data-hls", "poster"))
    for url in (src, hls, poster):
        assert re.match(rf"/media/{lecture.id}/pass/[\w.-]+/", url), url
    part = fetch(fresh, src, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.data) == 100
    assert fetch(fresh, poster).headers["Content-Type"] == "image/jpeg"
    # The playlists and a segment, as hls.js resolves their relative addresses.
    master = fetch(fresh, hls)
    assert master.status_code == 200 and master.data.startswith(b"#EXTM3U")
    rung_url = urljoin(hls, next(line for line in master.get_data(as_text=True).splitlines()
                                 if line and not line.startswith("#")))
    rung = fetch(fresh, rung_url)
    assert rung.status_code == 200, rung_url
    lines = [line for line in rung.get_data(as_text=True).splitlines() if line]
    first = re.search(r'#EXT-X-MAP:URI="([^"]+)"', rung.get_data(as_text=True))
    segment = urljoin(rung_url, first[1] if first else next(
        line for line in lines if not line.startswith("#")))
    assert fetch(fresh, segment).status_code == 200, segment
    # Nobody is signed in by it, and no cookie comes back.
    assert not [c for c in part.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert signed_in_user(fresh) is None


def test_with_cookies_the_player_has_no_pass(app, browser, lms, db, lecture):
    page = lms.launch(browser, custom={"media_id": str(lecture.id)})
    assert page.status_code == 200
    assert "/pass/" not in page.get_data(as_text=True)
    assert attribute(page.get_data(as_text=True), "src").startswith(f"/media/{lecture.id}/file")


@pytest.mark.parametrize("change", ["another_item", "tampered", "sessions_ended", "no_session"])
def test_a_media_pass_opens_its_item_for_its_user_only(app, browser, lms, db, lecture,
                                                       make_user, change):
    fresh, html = cookieless_player(app, browser, lms, lecture.id)
    src = attribute(html, "src")
    token = re.search(r"/pass/([^/]+)/", src)[1]
    if change == "another_item":
        other = Media(title="Other", file_path="o.mp4", mime_type="video/mp4", size=1,
                      owner=make_user("someone"), visibility=Visibility.PUBLIC)
        db.session.add(other)
        db.session.commit()
        src = f"/media/{other.id}/pass/{token}/file"
    elif change == "tampered":
        src = src.replace(token, token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    elif change == "sessions_ended":
        student = db.session.scalars(db.select(User).order_by(User.id.desc())).first()
        users.end_sessions(student)
        db.session.commit()
    else:  # the pass is no session: the tool's other pages stay closed
        src = f"/media/{lecture.id}"
    response = fetch(fresh, src, headers={"Range": "bytes=0-99"})
    assert response.status_code == 401, (change, response.status_code)


def test_who_may_see_the_item_is_still_checked(app, browser, lms, db, lecture):
    fresh, html = cookieless_player(app, browser, lms, lecture.id)
    lecture = db.session.get(Media, lecture.id)
    lecture.visibility = Visibility.PRIVATE  # its teacher takes it back
    db.session.commit()
    assert fetch(fresh, attribute(html, "src")).status_code == 403


def test_the_access_log_hides_the_pass():
    logger = runpy.run_path(str(ROOT / "gunicorn.conf.py"))["AccessLogger"]
    line = "GET /media/12/pass/WzEyLDMsMF0.Zx-a_b/hls/720p/seg_001.m4s HTTP/1.1"
    assert logger.SECRETS.sub(logger._hide, line) == (
        "GET /media/12/pass/[hidden]/hls/720p/seg_001.m4s HTTP/1.1")
    registration = "GET /lti/register?openid_configuration=https%3A%2F%2Fx&registration_token=s"
    assert logger.SECRETS.sub(logger._hide, registration) == (
        "GET /lti/register?openid_configuration=[hidden]&registration_token=[hidden]")
