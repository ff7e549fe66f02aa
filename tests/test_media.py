"""Media files: accepted by content, stored safely, served with ranges to who may see them."""

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from lti_tool.models import (
    Category,
    GlobalRole,
    GroupRole,
    Media,
    MediaStatus,
    RBACGroup,
    RBACMembership,
    Visibility,
)
from lti_tool.services.media import sniff

MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * 4
SAMPLES = {
    "video/mp4": MP4,
    "video/quicktime": b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00" + b"x" * 64,
    "audio/mp4": b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00" + b"x" * 64,
    "video/webm": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm" + b"x" * 64,
    "audio/ogg": b"OggS\x00\x02" + b"\x00" * 22 + b"\x01vorbis" + b"x" * 64,
    "video/ogg": b"OggS\x00\x02" + b"\x00" * 22 + b"\x80theora" + b"x" * 64,
    "audio/mpeg": b"ID3\x04\x00\x00" + b"x" * 64,
    "audio/wav": b"RIFF\x24\x00\x00\x00WAVEfmt " + b"x" * 64,
    "audio/flac": b"fLaC\x00\x00\x00\x22" + b"x" * 64,
    "image/png": b"\x89PNG\r\n\x1a\n" + b"x" * 64,
    "image/jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"x" * 64,
    "image/gif": b"GIF89a" + b"x" * 64,
    "image/webp": b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"x" * 64,
    "application/pdf": b"%PDF-1.7\n" + b"x" * 64,
}
REFUSED = {
    "html": b"<!doctype html><script>alert(1)</script>",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    "script": b"#!/bin/sh\nrm -rf /\n",
    "zip": b"PK\x03\x04" + b"x" * 64,
    "empty": b"",
}


@pytest.mark.parametrize("mime_type, content", SAMPLES.items(), ids=list(SAMPLES))
def test_accepted_types_are_recognised_by_their_content(mime_type, content):
    assert sniff(content[:512]) == mime_type


@pytest.mark.parametrize("content", REFUSED.values(), ids=list(REFUSED))
def test_other_content_is_refused(content):
    assert sniff(content[:512]) is None


def media_files(app) -> list[Path]:
    root = Path(app.config["MEDIA_ROOT"])
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def write(tmp_path, name: str, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


# flask media add


def test_media_add_stores_the_file_and_prints_the_id_last(runner, app, db, tmp_path, make_user):
    make_user("teacher")
    source = write(tmp_path, "lecture 3.MP4", MP4)
    result = runner.invoke(args=[
        "media", "add", source, "--title", "Lecture 3", "--description", "Cells",
        "--owner", "teacher", "--visibility", "public", "--category", "Biology",
    ])
    assert result.exit_code == 0, result.output
    media_id = int(result.stdout.split()[-1])
    item = db.session.get(Media, media_id)
    assert (item.title, item.description, item.mime_type, item.size) == (
        "Lecture 3", "Cells", "video/mp4", len(MP4))
    assert item.owner.username == "teacher" and item.visibility is Visibility.PUBLIC
    assert item.category.title == "Biology" and item.original_filename == "lecture 3.MP4"
    [stored] = media_files(app)
    assert stored.read_bytes() == MP4
    assert "lecture" not in stored.name, "stored under a generated name"
    assert stored.suffix == ".mp4"


def test_media_add_reuses_a_category_with_that_title(runner, db, tmp_path):
    db.session.add(Category(title="Biology"))
    db.session.commit()
    for n in range(2):
        source = write(tmp_path, f"{n}.pdf", SAMPLES["application/pdf"])
        assert runner.invoke(args=["media", "add", source, "--title", f"Doc {n}",
                                   "--category", "Biology"]).exit_code == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Category)) == 1


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("missing-file", "cannot read"),
        ("html", "not accepted"),
        ("svg-named-mp4", "not accepted"),
        ("unknown-owner", "no user named 'nobody'"),
        ("too-large", "larger than the limit"),
        ("empty-title", "title is required"),
    ],
)
def test_media_add_refuses_bad_input_and_leaves_nothing(runner, app, db, tmp_path, case,
                                                        fragment):
    args = ["media", "add", write(tmp_path, "f.mp4", MP4), "--title", "T"]
    if case == "missing-file":
        args[2] = str(tmp_path / "nope.mp4")
    elif case == "html":
        args[2] = write(tmp_path, "page.html", REFUSED["html"])
    elif case == "svg-named-mp4":
        args[2] = write(tmp_path, "video.mp4", REFUSED["svg"])
    elif case == "unknown-owner":
        args += ["--owner", "nobody"]
    elif case == "too-large":
        app.config["MAX_UPLOAD_BYTES"] = 100
    elif case == "empty-title":
        args[4] = "  "
    result = runner.invoke(args=args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and fragment in lines[0]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Media)) == 0
    assert media_files(app) == [], "no file, no half-written file"


# Serving


@pytest.fixture
def stored(runner, app, db, tmp_path, make_user):
    """Builder: a media item added through the CLI; returns it."""

    def make(visibility="members", owner=None, content=MP4, category="Biology") -> Media:
        args = ["media", "add", write(tmp_path, "f.bin", content), "--title", "Item",
                "--visibility", visibility, "--category", category]
        if owner:
            args += ["--owner", owner]
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
        return db.session.get(Media, int(result.stdout.split()[-1]))

    return make


def fetch(client, url: str, method: str = "GET", **kwargs):
    """Request and read the whole response, closing the served file."""
    with client.open(url, method=method, **kwargs) as response:
        response.get_data()
        return response


def sign_in(client, user) -> None:
    with client.session_transaction() as session:
        session["_user_id"] = str(user.id)
        session["_fresh"] = True
        session["_sv"] = user.session_version  # as a sign-in records it (lti_tool/sessions.py)


def member_of(db, user, category: Category, role=GroupRole.MEMBER) -> None:
    group = RBACGroup(name=category.title, categories=[category])
    db.session.add(group)
    db.session.flush()
    db.session.add(RBACMembership(group=group, user=user, role=role))
    db.session.commit()


def test_the_file_is_served_whole_with_its_type(client, stored, make_user):
    item = stored(visibility="public")
    sign_in(client, make_user())
    response = fetch(client, f"/media/{item.id}/file")
    assert response.status_code == 200
    assert response.data == MP4 and response.mimetype == "video/mp4"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert "private" in response.headers["Cache-Control"]
    assert "public" not in response.headers["Cache-Control"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "header, start, end",
    [("bytes=0-9", 0, 9), ("bytes=100-199", 100, 199), ("bytes=-16", len(MP4) - 16, len(MP4) - 1),
     ("bytes=1000-", 1000, len(MP4) - 1), ("bytes=1000-999999", 1000, len(MP4) - 1)],
    ids=["first-bytes", "middle", "suffix", "open-end", "end-beyond-the-file"],
)
def test_range_requests_let_players_seek(client, stored, make_user, header, start, end):
    item = stored(visibility="public")
    sign_in(client, make_user())
    response = fetch(client, f"/media/{item.id}/file", headers={"Range": header})
    assert response.status_code == 206
    assert response.data == MP4[start:end + 1]
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(MP4)}"
    assert int(response.headers["Content-Length"]) == end - start + 1


def test_an_unsatisfiable_range_is_416(client, stored, make_user):
    item = stored(visibility="public")
    sign_in(client, make_user())
    response = fetch(client, f"/media/{item.id}/file",
                     headers={"Range": f"bytes={len(MP4) + 5}-"})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(MP4)}"


def test_head_answers_the_headers_without_a_body(client, stored, make_user):
    item = stored(visibility="public")
    sign_in(client, make_user())
    response = fetch(client, f"/media/{item.id}/file", method="HEAD")
    assert response.status_code == 200 and response.data == b""
    assert int(response.headers["Content-Length"]) == len(MP4)


@pytest.mark.parametrize(
    "visibility, who, status",
    [
        ("public", "stranger", 200),
        ("members", "stranger", 403),
        ("members", "member", 200),
        ("members", "owner", 200),
        ("private", "member", 403),
        ("private", "owner", 200),
        ("private", "editor", 200),
        ("members", "anonymous", 401),
    ],
)
def test_access_is_checked_on_every_request(client, db, stored, make_user, visibility, who,
                                            status):
    owner = make_user("owner")
    item = stored(visibility=visibility, owner="owner")
    people = {
        "stranger": make_user("stranger"),
        "member": make_user("member"),
        "owner": owner,
        "editor": make_user("editor", global_role=GlobalRole.EDITOR),
    }
    member_of(db, people["member"], item.category)
    if who != "anonymous":
        sign_in(client, people[who])
    assert fetch(client, f"/media/{item.id}/file").status_code == status
    assert fetch(client, f"/media/{item.id}").status_code == status


def played_as_uploaded(db, item: Media) -> None:
    """Ready with no processed files, as an item stored before processing existed: these
    samples are a few signature bytes, nothing ffmpeg could convert."""
    item.status = MediaStatus.READY
    db.session.commit()


def test_the_player_page_plays_each_kind(client, db, stored, make_user):
    sign_in(client, make_user())
    expectations = {"video/mp4": b"<video", "audio/mpeg": b"<audio", "image/png": b"<img",
                    "application/pdf": b"<iframe"}
    for mime_type, tag in expectations.items():
        item = stored(visibility="public", content=SAMPLES[mime_type])
        if item.kind in ("video", "audio"):
            waiting = client.get(f"/media/{item.id}")
            assert b"Waiting to be processed" in waiting.data and tag not in waiting.data
            played_as_uploaded(db, item)
        page = client.get(f"/media/{item.id}")
        assert page.status_code == 200 and tag in page.data
        assert f"/media/{item.id}/file".encode() in page.data


def test_a_deep_linked_item_opens_in_its_player(browser, lms, db, stored, make_user):
    item = stored(visibility="public")
    response = lms.launch(browser, custom={"media_id": str(item.id)})
    assert response.headers["Content-Location"].endswith(f"/media/{item.id}")
    assert b"Waiting to be processed" in response.data
    played_as_uploaded(db, item)
    page = browser.get(response.headers["Content-Location"])
    assert b"<video" in page.data
    assert fetch(browser, f"/media/{item.id}/file").data == MP4


def test_a_missing_file_is_a_clear_404(client, app, stored, make_user):
    item = stored(visibility="public")
    os.remove(Path(app.config["MEDIA_ROOT"]) / item.file_path)
    sign_in(client, make_user())
    response = fetch(client, f"/media/{item.id}/file")
    assert response.status_code == 404 and b"missing" in response.data
