"""No page answers 500, whatever a client puts in the URL, the query string or the Host header."""

import re
from urllib.parse import urlencode

import pytest

from lti_tool.extensions import db

HUGE = "9" * 30  # beyond any id the database can hold (2**63 - 1)
# Every name a page reads from its query string.
PARAMS = ("page", "after", "before", "platform", "launch", "q", "user", "course", "text",
          "category", "outcome", "launch_type", "active", "scope", "next", "token")
NUL = "a\x00b"
QUERIES = [
    {},
    dict.fromkeys(PARAMS, HUGE),
    dict.fromkeys(PARAMS, "-" + HUGE),
    dict.fromkeys(PARAMS, "-1"),
    {"endpoint": "x", "_method": "POST", "id": HUGE},
    {"date_from": "0001-01-01", "date_to": "9999-12-31"},
    {"date_from": "9999-12-31", "date_to": "0001-01-01"},
]


def _urls(app) -> list[str]:
    """Every GET route, its ids filled with an existing id and with one too large for any table."""
    urls = set()
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods:
            for id_ in ("1", HUGE):
                urls.add(re.sub(r"<(int:)?[^>]+>", lambda m, v=id_: v if m.group(1) else "x",
                                rule.rule))
    return sorted(urls)


@pytest.mark.parametrize("who", ["anonymous", "admin"])
def test_no_route_answers_500_to_hostile_ids_and_query_strings(request, app, who,
                                                              make_platform):
    make_platform()  # id 1 exists: pages get past their lookup to the query string
    client = request.getfixturevalue("admin") if who == "admin" else app.test_client()
    failures = []
    for url in _urls(app):
        for query in QUERIES:
            target = f"{url}?{urlencode(query)}" if query else url
            response = client.get(target)
            response.get_data()
            response.close()  # a streamed export finishes inside its own request context
            if response.status_code >= 500:
                failures.append(f"{response.status_code} {target}")
            db.session.rollback()
    assert failures == []


@pytest.mark.parametrize("who", ["anonymous", "admin"])
@pytest.mark.parametrize("name", PARAMS + ("date_from",))
def test_control_characters_in_the_query_string_are_refused(request, app, who, name):
    client = request.getfixturevalue("admin") if who == "admin" else app.test_client()
    for url in ("/audit/", "/admin/users/", "/admin/platforms/", "/media/"):
        response = client.get(f"{url}?{urlencode({name: NUL})}")
        assert response.status_code == 400, url
        assert b"control characters" in response.data


@pytest.mark.parametrize("path", ["/media/picker/a%00b", "/static/a%01b.css", "/admin/%7f"])
def test_control_characters_in_the_path_are_refused(admin, path):
    assert admin.get(path).status_code == 400


def test_control_characters_in_a_form_are_refused(client):
    response = client.post("/admin/login", data={"username": "root\x00", "password": "x"})
    assert response.status_code == 400


def test_control_characters_in_an_upload_name_are_refused(client):
    from io import BytesIO

    response = client.post("/media/upload", data={"file": (BytesIO(b"x"), "a\x00.mp4")})
    assert response.status_code == 400


@pytest.mark.parametrize("host", ["a" * 300, "b" * 63 + "." + "c" * 240, "evil.example.com",
                                  "localhost:99999", "tool.example.org@evil"])
def test_a_refused_host_gets_a_400_page(client, host):
    response = client.get("/admin/login", headers={"Host": host})
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert b"Bad Request" in response.data


def test_an_unexpected_error_is_a_readable_500_page(app, client):
    @app.get("/_boom")
    def boom():
        raise RuntimeError("a bug")

    response = client.get("/_boom")
    assert response.status_code == 500
    assert response.mimetype == "text/html"
    assert b"Something went wrong" in response.data
    assert b"a bug" not in response.data and b"Traceback" not in response.data
