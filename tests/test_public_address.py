"""One public address: absolute URLs come from PUBLIC_BASE_URL, never from a request's headers."""

import html
import re
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from lti_tool import create_app
from lti_tool.config import ConfigError, from_env
from lti_tool.extensions import db as _db
from lti_tool.models import Media, Visibility

from .conftest import csrf
from .lms import INSTRUCTOR

PUBLIC = "https://media.example.edu"
# What a client may send through a proxy that passes headers on (TRUSTED_PROXIES=0).
FORGED = {"X-Forwarded-Host": "evil.example.com", "X-Forwarded-Proto": "http"}


@pytest.fixture
def public_app(app):
    """A second app on the same database, with PUBLIC_BASE_URL set and no trusted proxy."""
    public = create_app({"TESTING": True, "PUBLIC_BASE_URL": PUBLIC,
                         "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]})
    yield public
    with public.app_context():
        _db.session.remove()
        _db.engine.dispose()


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:443", "tool.example.org",
                                  "media.example.edu.evil.example.com"])
def test_a_request_for_another_host_is_refused(public_app, host):
    response = public_app.test_client().get("/admin/login", headers={"Host": host})
    assert response.status_code == 400


def test_without_a_setting_only_loopback_names_are_served(instance_path):
    app = create_app({"TESTING": True})
    client = app.test_client()
    for base in ("http://127.0.0.1:5000", "http://localhost:8080", "http://localhost"):
        assert client.get("/healthz", base_url=base).status_code == 200, base
    assert client.get("/healthz", base_url="http://evil.example.com").status_code == 400
    with app.app_context():
        _db.engine.dispose()


@pytest.mark.parametrize("host", ["127.0.0.1:5000", "media.example.edu"])
def test_the_oidc_redirect_uri_is_the_public_address(public_app, lms, host):
    client = public_app.test_client()
    params = lms.login_params()
    first = client.post("/lti/login", data=params, headers=FORGED | {"Host": host})
    assert b"lti1p3_new_window" in first.data
    second = client.get("/lti/login", query_string=params | {"lti1p3_new_window": "1"},
                        headers=FORGED | {"Host": host})
    assert second.status_code == 302
    query = parse_qs(urlsplit(second.headers["Location"]).query)
    assert query["redirect_uri"] == [f"{PUBLIC}/lti/launch"]


def test_deep_linking_items_point_at_the_public_address(public_app, lms, db, make_user):
    item = Media(title="Lecture", file_path="p.mp4", mime_type="video/mp4", size=1,
                 owner=make_user("other"), visibility=Visibility.PUBLIC)
    db.session.add(item)
    db.session.commit()
    client = public_app.test_client()
    base = {"base_url": "https://127.0.0.1:8000", "headers": FORGED}
    login = lms.login_params()
    client.post("/lti/login", data=login, **base)
    redirect = client.get("/lti/login", query_string=login | {"lti1p3_new_window": "1"}, **base)
    query = {k: v[0] for k, v in parse_qs(urlsplit(redirect.headers["Location"]).query).items()}
    token = lms.sign(lms.claims(nonce=query["nonce"], message_type="LtiDeepLinkingRequest",
                                roles=[INSTRUCTOR]))
    launch = client.post("/lti/launch", data={"id_token": token, "state": query["state"]}, **base)
    picker_path, page = launch.headers["Content-Location"], launch
    assert picker_path.startswith("/media/picker/")
    answer = client.post(picker_path, base_url=base["base_url"], headers=FORGED | {
        "Referer": f"{PUBLIC}/media/picker"}, data={
        "csrf_token": csrf(page), "media_ids": [str(item.id)], "action": "add"})
    assert answer.status_code == 200, answer.data[:300]
    token = re.search(rb'name="JWT" value="([^"]+)"', answer.data).group(1).decode()
    [content] = jwt.decode(token, options={"verify_signature": False})[
        "https://purl.imsglobal.org/spec/lti-dl/claim/content_items"]
    assert content["url"] == f"{PUBLIC}/lti/launch"
    assert content["thumbnail"]["url"].startswith(f"{PUBLIC}/media/{item.id}/thumbnail?")
    # the page's form may post to the platform's return URL, and nowhere else
    action = html.unescape(re.search(rb'action="([^"]+)"', answer.data).group(1).decode())
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(action))
    policy = answer.headers["Content-Security-Policy"]
    assert f"form-action 'self' {origin};" in policy


def test_the_setup_page_shows_the_public_address(public_app, make_user):
    make_user("root", password="long-password-1", global_role="admin")
    client = public_app.test_client()
    base = {"base_url": "https://127.0.0.1:8000", "headers": FORGED}
    form = client.get("/admin/login", **base)
    client.post("/admin/login", base_url=base["base_url"], headers=FORGED | {
        "Referer": f"{PUBLIC}/admin/login"}, data={
        "username": "root", "password": "long-password-1", "csrf_token": csrf(form)})
    page = client.get("/admin/setup", **base).get_data(as_text=True)
    assert f'data-copy="{PUBLIC}/lti/launch"' in page
    assert "evil" not in page and "127.0.0.1" not in page


@pytest.mark.parametrize("value", ["media.example.edu", "https://media.example.edu/tool",
                                   "ftp://media.example.edu", "https://media.example.edu/?a=1"])
def test_a_public_base_url_that_is_not_an_origin_is_a_clear_error(instance_path, value):
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        from_env(instance_path, {"PUBLIC_BASE_URL": value})


def test_trusted_hosts_are_read_from_the_environment(instance_path):
    config = from_env(instance_path, {"PUBLIC_BASE_URL": "https://media.example.edu/",
                                      "TRUSTED_HOSTS": "tool.internal, .example.net"})
    assert config["PUBLIC_BASE_URL"] == "https://media.example.edu"
    assert config["TRUSTED_HOSTS"] == ["media.example.edu", "tool.internal", ".example.net"]
