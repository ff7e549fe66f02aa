"""MEDIA_ACCEL_REDIRECT: the tool checks access and nginx sends the media files' bytes."""

import http.client
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

import pytest

from lti_tool.config import ConfigError, from_env
from lti_tool.models import Category, Media, MediaStatus, Visibility

from .server import free_port, serve
from .test_media import fetch, member_of, sign_in

PREFIX = "/internal-media/"
NGINX = "/usr/sbin/nginx"
VIDEO = bytes(range(256)) * 800  # 200 KB: more than one buffer of nginx's or gunicorn's
FILES = {  # an item's files as processing stores them, and their contents
    "original.mov": b"original " * 1000,
    "r1/video.mp4": VIDEO,
    "r1/hls/master.m3u8": b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n360p/index.m3u8\n",
    "r1/hls/360p/seg_000.m4s": bytes(reversed(VIDEO)),
    "r1/poster.jpg": b"\xff\xd8\xff poster",
    "r1/captions.vtt": b"WEBVTT\n\n00:00.000 --> 00:01.000\nHello\n",
}
# url: (the file it serves, its type, who may fetch it)
SERVED = {
    "file": ("r1/video.mp4", "video/mp4", "student"),
    "original": ("original.mov", "video/quicktime", "teacher"),
    "hls/master.m3u8": ("r1/hls/master.m3u8", "application/vnd.apple.mpegurl", "student"),
    "hls/360p/seg_000.m4s": ("r1/hls/360p/seg_000.m4s", "video/iso.segment", "student"),
    "poster": ("r1/poster.jpg", "image/jpeg", "student"),
    "captions.vtt": ("r1/captions.vtt", "text/vtt", "student"),
}


@pytest.fixture
def people(db, make_user):
    """A course with its teacher and student, and a student of another course."""
    course, other_course = Category(title="Biology"), Category(title="Chemistry")
    db.session.add_all([course, other_course])
    db.session.commit()
    people = {"teacher": make_user("teacher"), "student": make_user("student"),
              "other": make_user("other"), "course": course}
    member_of(db, people["student"], course)
    member_of(db, people["other"], other_course)
    return people


@pytest.fixture
def item(app, db, people):
    """Builder: a ready video of the teacher's in the course, its files stored in `folder`."""

    def make(folder: str = "ab/lecture", **columns) -> Media:
        root = Path(app.config["MEDIA_ROOT"])
        for name, data in FILES.items():
            (root / folder / name).parent.mkdir(parents=True, exist_ok=True)
            (root / folder / name).write_bytes(data)
        media = Media(
            title="Lecture", file_path=f"{folder}/original.mov", original_filename="lecture 1.mov",
            mime_type="video/quicktime", size=len(FILES["original.mov"]), owner=people["teacher"],
            category=people["course"], visibility=Visibility.MEMBERS, status=MediaStatus.READY,
            renditions_path=f"{folder}/r1", playback_path=f"{folder}/r1/video.mp4",
            hls_path=f"{folder}/r1/hls/master.m3u8", poster_path=f"{folder}/r1/poster.jpg",
            captions_path=f"{folder}/r1/captions.vtt", duration=2.0, width=160, height=120,
            progress=100,
        )
        for key, value in columns.items():
            setattr(media, key, value)
        db.session.add(media)
        db.session.commit()
        return media

    return make


@pytest.fixture
def accel(app):
    app.config["MEDIA_ACCEL_REDIRECT"] = PREFIX


# The tool's side


@pytest.mark.parametrize("url", SERVED)
def test_each_file_is_named_for_nginx_after_the_access_check(client, people, item, accel, url):
    media = item()
    name, mimetype, who = SERVED[url]
    sign_in(client, people[who])
    response = fetch(client, f"/media/{media.id}/{url}")
    assert response.status_code == 200
    assert response.data == b""  # nginx sends the bytes
    assert response.headers["X-Accel-Redirect"] == f"{PREFIX}ab/lecture/{name}"
    assert response.mimetype == mimetype
    assert response.headers["Content-Security-Policy"] == "sandbox"
    assert "private" in response.headers["Cache-Control"]
    assert "public" not in response.headers["Cache-Control"]
    disposition = response.headers["Content-Disposition"]
    if url == "original":
        assert disposition == 'attachment; filename="lecture 1.mov"'
    else:
        assert disposition == "inline"


@pytest.mark.parametrize("who, url, status", [
    (None, "file", 401), ("other", "file", 403), ("other", "hls/360p/seg_000.m4s", 403),
    ("other", "poster", 403), ("student", "original", 403),
    ("student", "hls/../video.mp4", 404), ("student", "hls/360p/missing.m4s", 404),
])
def test_a_refusal_names_no_file(client, people, item, accel, who, url, status):
    media = item()
    if who:
        sign_in(client, people[who])
    response = fetch(client, f"/media/{media.id}/{url}")
    assert response.status_code == status
    assert "X-Accel-Redirect" not in response.headers


def test_a_missing_file_is_404_not_a_redirect(app, client, people, item, accel):
    media = item()
    (Path(app.config["MEDIA_ROOT"]) / media.playback_path).unlink()
    sign_in(client, people["student"])
    response = fetch(client, f"/media/{media.id}/file")
    assert response.status_code == 404 and "X-Accel-Redirect" not in response.headers


def test_odd_file_and_download_names_are_quoted(client, people, item, accel):
    folder = "é x/a?b#c%d;e"
    media = item(folder, original_filename="Vorlesung über Zellen.mov")
    sign_in(client, people["teacher"])
    response = fetch(client, f"/media/{media.id}/original")
    uri = response.headers["X-Accel-Redirect"]
    assert uri == PREFIX + "%C3%A9%20x/a%3Fb%23c%25d%3Be/original.mov"
    assert unquote(uri.removeprefix(PREFIX)) == f"{folder}/original.mov"
    assert response.headers["Content-Disposition"] == (
        "attachment; filename=\"Vorlesung uber Zellen.mov\"; "
        "filename*=UTF-8''Vorlesung%20%C3%BCber%20Zellen.mov"
    )


def test_a_file_outside_media_root_is_streamed_never_redirected(app, db, client, people, item,
                                                                 accel, tmp_path):
    media = item()
    (tmp_path / "outside.mov").write_bytes(b"outside")
    assert Path(app.config["MEDIA_ROOT"]) == tmp_path / "instance" / "media"
    media.status, media.file_path = MediaStatus.PROCESSING, "../../outside.mov"
    db.session.commit()
    sign_in(client, people["teacher"])
    response = fetch(client, f"/media/{media.id}/file")
    assert "X-Accel-Redirect" not in response.headers
    assert response.data == b"outside"


def test_without_the_setting_the_worker_streams_the_file(client, people, item):
    media = item()
    sign_in(client, people["student"])
    response = fetch(client, f"/media/{media.id}/file")
    assert "X-Accel-Redirect" not in response.headers
    assert response.data == VIDEO


@pytest.mark.parametrize("value", ["internal-media/", "/internal-media", "/", "/../", "/a b/",
                                   "/media?x/", "http://nginx/internal/"])
def test_a_location_that_is_not_a_path_prefix_stops_the_start(tmp_path, value):
    with pytest.raises(ConfigError, match="MEDIA_ACCEL_REDIRECT must be a URL path"):
        from_env(str(tmp_path), {"SECRET_KEY": "k", "MEDIA_ACCEL_REDIRECT": value})


def test_the_location_is_read_from_the_environment(tmp_path):
    assert from_env(str(tmp_path), {"SECRET_KEY": "k"})["MEDIA_ACCEL_REDIRECT"] is None
    config = from_env(str(tmp_path), {"SECRET_KEY": "k", "MEDIA_ACCEL_REDIRECT": PREFIX})
    assert config["MEDIA_ACCEL_REDIRECT"] == PREFIX


# Through a real nginx


def nginx_conf(folder: Path, port: int, upstream: str, media_root: str) -> str:
    """The README's nginx setup, with its own pid, logs and temporary files in `folder`."""
    temp = "\n".join(f"  {kind}_temp_path {folder / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""
daemon off;
master_process off;  # one process, as the user running the tests: it reads their tmp files
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} info;
events {{ worker_connections 64; }}
http {{
  # What the client got, and what the tool itself sent (its answer's body) for it.
  log_format bytes '"$request" $status $body_bytes_sent $upstream_response_length';
  access_log {folder / "access.log"} bytes;
{temp}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass {upstream};
      proxy_set_header Host $http_host;
    }}
    location {PREFIX} {{
      internal;
      alias {media_root}/;
      # nginx keeps only some of the tool's headers on X-Accel-Redirect: these it drops.
      add_header Content-Security-Policy "sandbox" always;
      add_header X-Content-Type-Options "nosniff" always;
    }}
  }}
}}
"""


@contextmanager
def nginx(folder: Path, upstream: str, media_root: str) -> Iterator[int]:
    """nginx in front of `upstream` on a free loopback port, stopped afterwards."""
    folder.mkdir()
    port = free_port()
    (folder / "nginx.conf").write_text(nginx_conf(folder, port, upstream, media_root))
    output = open(folder / "output.log", "w+")
    process = subprocess.Popen(
        [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf"),
         "-e", str(folder / "error.log")],
        stdout=output, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                output.seek(0)
                raise RuntimeError(f"nginx exited: {output.read()}"
                                   f"{(folder / 'error.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not listen within 15 s") from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        output.close()


def get(port: int, path: str, cookie: str | None = None, **headers: str):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers=headers | ({"Cookie": cookie} if cookie else {}))
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


@pytest.fixture
def behind_nginx(app, migrated, tmp_path):
    """The tool (gunicorn) with MEDIA_ACCEL_REDIRECT behind nginx; yields nginx's port and
    its access log."""
    if not Path(NGINX).is_file():
        pytest.skip(f"{NGINX} is not installed (apt-get install nginx-light)")
    with serve(migrated, tmp_path / "instance", workers=1, MEDIA_ACCEL_REDIRECT=PREFIX) as base:
        with nginx(tmp_path / "nginx", base, app.config["MEDIA_ROOT"]) as port:
            yield port, tmp_path / "nginx" / "access.log"


def session_cookie(app, user) -> str:
    """The session cookie a sign-in gives `user` (the served tool shares the test's key)."""
    value = app.session_interface.get_signing_serializer(app).dumps(
        {"_user_id": str(user.id), "_fresh": True, "_sv": user.session_version})
    return f"{app.config['SESSION_COOKIE_NAME']}={value}"


def sent_by_the_tool(access_log: Path, path: str, requests: int) -> list[int]:
    """For each of the `requests` GETs of `path`, the body bytes nginx got from the tool
    ($upstream_response_length in its access log, written as each request ends)."""
    pattern = rf'^"GET {re.escape(path)} HTTP/1\.1" \d+ \d+ (\d+)$'
    deadline = time.monotonic() + 10
    while True:
        sizes = [int(n) for n in re.findall(pattern, access_log.read_text(), re.MULTILINE)]
        if len(sizes) >= requests or time.monotonic() > deadline:
            return sizes
        time.sleep(0.05)


def test_nginx_sends_the_file_the_tool_allowed(app, people, item, behind_nginx):
    port, access_log = behind_nginx
    media = item()
    student = session_cookie(app, people["student"])

    status, headers, body = get(port, f"/media/{media.id}/file", student)
    assert status == 200 and body == VIDEO
    assert headers["Content-Type"] == "video/mp4"
    assert headers["Content-Disposition"] == "inline"
    assert headers["Content-Security-Policy"] == "sandbox"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "private" in headers["Cache-Control"] and "public" not in headers["Cache-Control"]
    assert "X-Accel-Redirect" not in headers

    status, headers, body = get(port, f"/media/{media.id}/file", student, Range="bytes=1000-1999")
    assert status == 206 and body == VIDEO[1000:2000]
    assert headers["Content-Range"] == f"bytes 1000-1999/{len(VIDEO)}"

    segment = FILES["r1/hls/360p/seg_000.m4s"]
    status, headers, body = get(port, f"/media/{media.id}/hls/360p/seg_000.m4s", student,
                                Range="bytes=-100")
    assert status == 206 and body == segment[-100:]
    assert headers["Content-Type"] == "video/iso.segment"

    teacher = session_cookie(app, people["teacher"])
    status, headers, body = get(port, f"/media/{media.id}/original", teacher)
    assert status == 200 and body == FILES["original.mov"]
    assert headers["Content-Disposition"] == 'attachment; filename="lecture 1.mov"'

    # nginx read the bytes from MEDIA_ROOT: the tool's answers had no body (streamed by the
    # worker, nginx would have got the bytes it sent: 204800, 1000 and 9000).
    assert sent_by_the_tool(access_log, f"/media/{media.id}/file", 2) == [0, 0]
    assert sent_by_the_tool(access_log, f"/media/{media.id}/original", 1) == [0]


def test_nginx_serves_odd_names(app, people, item, behind_nginx):
    port, _ = behind_nginx
    media = item("é x/a?b#c%d;e")
    status, _, body = get(port, f"/media/{media.id}/poster", session_cookie(app, people["student"]))
    assert status == 200 and body == FILES["r1/poster.jpg"]


def test_through_nginx_no_access_no_bytes(app, people, item, behind_nginx):
    port, _ = behind_nginx
    media = item()
    status, headers, body = get(port, f"/media/{media.id}/file",
                                session_cookie(app, people["other"]))
    assert status == 403 and VIDEO[:1000] not in body
    status, _, body = get(port, f"/media/{media.id}/file")
    assert status == 401 and VIDEO[:1000] not in body
    # The internal location is for the tool's answers only.
    status, _, body = get(port, f"{PREFIX}ab/lecture/r1/video.mp4")
    assert status == 404 and VIDEO[:1000] not in body
