"""Issue 13: the course page and one's own media as grids of cards with search and sort kept
across pages, the player page's way back, and the delete page in people's words."""

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from lti_tool.models import Category, Media, MediaStatus, User, Visibility
from lti_tool.services import access

from .conftest import HttpsClient
from .lms import DROP, INSTRUCTOR, LEARNER
from .test_media_manage import course
from .test_roster_pages import text


def client_of(app) -> HttpsClient:
    return HttpsClient(app, app.response_class, use_cookies=True)


@pytest.fixture
def teacher(app, lms):
    client = client_of(app)
    assert lms.launch(client, roles=[INSTRUCTOR]).status_code == 200
    return client


@pytest.fixture
def student(app, lms, teacher):
    client = client_of(app)
    response = lms.launch(client, roles=[LEARNER], sub="777", name="Sam Student",
                          given_name="Sam", family_name="Student",
                          ext={"user_username": "sstudent"})
    assert response.status_code == 200
    return client


COURSE = object()  # the course of the launches


def add(db, title: str, n: int = 0, category=COURSE, **columns) -> Media:
    """A ready item of the course, made `n` minutes after a fixed start (newest: largest n)."""
    values = {"title": title, "file_path": f"{title}-{n}.mp4", "mime_type": "video/mp4",
              "size": 1, "category": course(db) if category is COURSE else category,
              "visibility": Visibility.MEMBERS, "status": MediaStatus.READY,
              "created_at": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=n)} | columns
    item = Media(**values)
    db.session.add(item)
    db.session.commit()
    return item


def titles(response) -> list[str]:
    return [html.unescape(t) for t in re.findall(
        r'class="card-title"><a [^>]*>([^<]+)</a>', response.get_data(as_text=True))]


def next_link(response) -> str | None:
    page = response.get_data(as_text=True)
    link = re.search(r'<a href="([^"]+)" rel="next"', page)
    return html.unescape(link.group(1)) if link else None


def every_page(client, url: str) -> tuple[list[str], list[str]]:
    """The titles of every page from `url` on, and the URLs of the pages after the first."""
    seen, urls = [], []
    while url:
        response = client.get(url)
        assert response.status_code == 200
        seen += titles(response)
        url = next_link(response)
        if url:
            urls.append(url)
    return seen, urls


@pytest.fixture
def thirty(db, teacher):
    """30 items: "Cells 00".."Cells 14" and "Atoms 15".."Atoms 29", newest last."""
    names = [f"Cells {n:02d}" if n < 15 else f"Atoms {n:02d}" for n in range(30)]
    for n, name in enumerate(names):
        add(db, name, n, description="A lecture")
    return names


def test_newest_first_pages_through_every_item_once(teacher, db, thirty):
    url = f"/media/category/{course(db).id}"
    seen, urls = every_page(teacher, url)
    assert seen == list(reversed(thirty))
    assert len(urls) == 1 and len(titles(teacher.get(url))) == access.PAGE_SIZE


def test_title_order_pages_by_title_and_keeps_the_sort(teacher, db, thirty):
    seen, urls = every_page(teacher, f"/media/category/{course(db).id}?sort=title")
    assert seen == sorted(thirty)
    assert urls and all("sort=title" in u for u in urls)


def test_title_order_is_case_blind_and_ties_keep_their_place(teacher, db):
    for n, name in enumerate(["beta", "Alpha", "alpha", "Gamma"] + ["Zed"] * 25):
        add(db, name, n)
    seen, _ = every_page(teacher, f"/media/category/{course(db).id}?sort=title")
    assert seen[:4] == ["Alpha", "alpha", "beta", "Gamma"] and seen[4:] == ["Zed"] * 25


def test_search_and_sort_survive_paging(teacher, db, thirty):
    for n in range(30, 60):
        add(db, f"Cells extra {n}", n)
    seen, urls = every_page(teacher, f"/media/category/{course(db).id}?q=cells&sort=title")
    assert seen == sorted([t for t in thirty if t.startswith("Cells")]
                          + [f"Cells extra {n}" for n in range(30, 60)])
    assert urls and all("q=cells" in u and "sort=title" in u for u in urls)


def test_a_cursor_that_makes_no_sense_gives_the_first_page(teacher, db, thirty):
    url = f"/media/category/{course(db).id}"
    first = titles(teacher.get(url + "?sort=title"))
    for after in ("x", "12", ":", "99999999999999999999999:a", "-3:Atoms", "%00"):
        response = teacher.get(f"{url}?sort=title&after={after}")
        assert response.status_code in (200, 400), after
        assert response.status_code == 400 or titles(response) == first, after
    assert titles(teacher.get(f"{url}?after=nonsense")) == titles(teacher.get(url))
    assert teacher.get(f"{url}?sort=sideways").status_code == 200


def test_a_search_with_no_match_says_so_and_clears(teacher, db, thirty):
    response = teacher.get(f"/media/category/{course(db).id}?q=quasar&sort=title")
    shown = text(response)
    assert "Nothing matches “quasar”." in shown and "Clear the search" in shown
    clear = re.search(r'href="([^"]+)">Clear the search', response.get_data(as_text=True))
    assert html.unescape(clear.group(1)) == f"/media/category/{course(db).id}?sort=title"


def test_an_empty_course_says_so_and_offers_teachers_to_add(teacher, student, db):
    url = f"/media/category/{course(db).id}"
    assert "No media in this course yet." in text(teacher.get(url))
    assert "Add media" in text(teacher.get(url))
    shown = text(student.get(url))
    assert "No media in this course yet." in shown and "Add media" not in shown


def test_cards_speak_peoples_words_and_only_teachers_get_actions(teacher, student, db):
    add(db, "Field trip", 1, duration=303.0, description="We walk to the river.")
    add(db, "Map", 2, mime_type="image/png", file_path="map.png")
    url = f"/media/category/{course(db).id}"
    shown = text(student.get(url))
    for words in ("Field trip", "5:03", "Video", "Image", "Visible to: course members",
                  "We walk to the river."):
        assert words in shown
    assert not re.search(r"\b(video|image|audio|application)/", shown)
    assert "Your role" not in shown and "member" not in shown.replace("course members", "")
    for word in ("Add media", "Edit", "Delete"):
        assert word not in shown
    shown = text(teacher.get(url))
    assert "Add media" in shown and shown.count("Edit") == 2 and "Delete" in shown


def test_a_student_sees_edit_only_on_their_own_items(teacher, student, db):
    me = db.session.scalar(sa.select(User).where(User.username == "sstudent"))
    add(db, "My poster", 1, owner=me)
    add(db, "Teacher's", 2)
    page = student.get(f"/media/category/{course(db).id}").get_data(as_text=True)
    assert page.count(">Edit<") == 1 and "Edit<span class=\"visually-hidden\"> “My poster”" in page


def test_my_media_is_a_grid_with_search(app, lms, db):
    client = client_of(app)
    lms.launch(client, roles=[INSTRUCTOR], context=DROP)
    me = db.session.scalar(sa.select(User).where(User.username == "ghopper"))
    for n, name in enumerate(["Owls", "Bats", "Owl pellets"]):
        add(db, name, n, owner=me, category=None, visibility=Visibility.PRIVATE)
    assert titles(client.get("/media/")) == ["Owl pellets", "Bats", "Owls"]
    assert titles(client.get("/media/?q=owl&sort=title")) == ["Owl pellets", "Owls"]
    assert "My media" in text(client.get("/media/"))


def test_the_player_leads_back_to_the_course_or_to_my_media(teacher, db):
    item = add(db, "Lecture", 1)
    page = teacher.get(f"/media/{item.id}").get_data(as_text=True)
    assert re.search(rf'class="back-link" href="/media/category/{course(db).id}">Course media<',
                     page)
    loose = add(db, "Loose", 2, category=None, visibility=Visibility.PUBLIC)
    page = teacher.get(f"/media/{loose.id}").get_data(as_text=True)
    assert re.search(r'class="back-link" href="/media/">My media<', page)
    other = Category(title="Elsewhere")
    shared = add(db, "Shared", 3, category=other, visibility=Visibility.PUBLIC)
    page = teacher.get(f"/media/{shared.id}").get_data(as_text=True)
    assert f"/media/category/{other.id}" not in page, "no way back into a course not one's own"


def test_the_player_page_speaks_peoples_words(teacher, db):
    item = add(db, "Lecture", 1, duration=125.0)
    shown = text(teacher.get(f"/media/{item.id}"))
    assert "Video · 2:05" in shown and "Visible to: course members" in shown
    assert "video/mp4" not in shown
    assert all(word in shown for word in ("Edit", "Delete", "Download the original"))


@pytest.mark.parametrize("size, shown", [(96907, "94.6 KB"), (5 * 1024 * 1024, "5 MB")])
def test_the_delete_page_gives_sizes_in_kb_and_mb(teacher, db, size, shown):
    item = add(db, "Lecture", 1, size=size)
    response = teacher.get(f"/media/{item.id}/delete")
    page = text(response)
    assert shown in page and "bytes" not in page and "video/mp4" not in page
    assert "The video (" in page
    assert f'href="/media/{item.id}">Cancel' in response.get_data(as_text=True)


def test_edit_and_roster_pages_have_their_way_back(teacher, db):
    item = add(db, "Lecture", 1)
    page = teacher.get(f"/media/{item.id}/edit").get_data(as_text=True)
    assert f'class="back-link" href="/media/{item.id}"' in page
    history = teacher.get(f"/media/category/{course(db).id}/roster/history")
    assert f'class="back-link" href="/media/category/{course(db).id}">Course media<' in (
        history.get_data(as_text=True))
