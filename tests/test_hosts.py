"""Two app hosts behind nginx (TLS, balancing), sharing one PostgreSQL, one Redis, one media
folder: launches cross hosts, a replay is refused on the other host, concurrent first launches
make one course, an upload on one host plays from the other, and a host going away (unplugged,
shut down, crashed) fails no launch begun after it went: only requests it held may fail.

Runs as root on Linux with Debian's iproute2 and nginx, in the PostgreSQL + Redis pass
(TEST_DATABASE_URL and REDIS_URL set: it makes a database of its own on that server and keys
under a prefix of its own); skipped elsewhere. tests/hosts.py builds the hosts.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import sqlalchemy as sa

from lti_tool.config import database_url
from lti_tool.models import (
    Category,
    LTILaunchLog,
    LTIResourceLink,
    LTIUserMapping,
    Media,
    RBACGroup,
    RBACMembership,
)

from .hosts import Cluster, cluster, missing_requirements
from .lms import INSTRUCTOR
from .test_media import MP4

pytestmark = pytest.mark.hosts

DATABASE_SERVER = os.environ.get("TEST_DATABASE_URL")
REDIS_URL = os.environ.get("REDIS_URL")
TIMEOUT = 30  # seconds, every HTTP request
VIDEO = MP4 * 300  # 380 KB, sent in parts of 100 KB


@pytest.fixture(scope="module")
def hosts() -> Cluster:
    if reason := missing_requirements(DATABASE_SERVER, REDIS_URL):
        pytest.skip(reason)
    with cluster(database_url(DATABASE_SERVER), REDIS_URL) as built:
        yield built


@pytest.fixture(autouse=True)
def logs_on_failure(request):
    """The hosts' and nginx's logs, printed when a test of this module fails."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and "hosts" in request.fixturenames:
        print(request.getfixturevalue("hosts").logs())


@pytest.fixture(scope="module")
def database(hosts):
    engine = sa.create_engine(database_url(hosts.database_url))
    yield engine
    engine.dispose()


def count(engine, query) -> int:
    with engine.connect() as conn:
        return conn.scalar(sa.select(sa.func.count()).select_from(query.subquery()))


# A browser's launch, step by step


@dataclass
class Launch:
    login: object  # the response sending the browser to the platform
    token: str
    state: str
    response: object = None  # the launch POST's answer
    landing: object = None  # its page, reloaded at its address (Content-Location)


def log_in(hosts: Cluster, session, at: str, **claims) -> Launch:
    """The third-party login on `at` (cookie check page, then the redirect to the LMS), and
    the id_token the LMS signs for it."""
    platform = hosts.platform
    params = platform.login_params(login_hint=str(claims.get("sub", "318")),
                                   target_link_uri=f"{hosts.public}/lti/launch")
    first = session.post(f"{at}/lti/login", data=params, allow_redirects=False, timeout=TIMEOUT)
    assert first.status_code == 200, first.text[:300]
    second = session.get(f"{at}/lti/login", params=params | {"lti1p3_new_window": "1"},
                         allow_redirects=False, timeout=TIMEOUT)
    assert second.status_code == 302, second.text[:300]
    query = {k: v[0] for k, v in parse_qs(urlsplit(second.headers["Location"]).query).items()}
    claims.setdefault("target_link_uri", f"{hosts.public}/lti/launch")
    token = platform.sign(platform.claims(nonce=query["nonce"], **claims))
    return Launch(second, token, query["state"])


def post_launch(session, at: str, launch: Launch) -> Launch:
    """POST the id_token to `at` and, if it is accepted (it answers with the student's page),
    reload that page as a browser would: the new session must hold on whichever host."""
    launch.response = session.post(f"{at}/lti/launch",
                                   data={"id_token": launch.token, "state": launch.state},
                                   allow_redirects=False, timeout=TIMEOUT)
    if launch.response.status_code == 200 and "Content-Location" in launch.response.headers:
        launch.landing = session.get(
            urljoin(f"{at}/", launch.response.headers["Content-Location"]),
            allow_redirects=False, timeout=TIMEOUT)
    return launch


def succeeded(launch: Launch) -> bool:
    return (launch.response.status_code == 200 and launch.landing is not None
            and launch.landing.status_code == 200)


def upstreams(response) -> list[str]:
    """The hosts nginx tried for this response, in order."""
    return [a.strip() for a in response.headers.get("X-Upstream", "").split(",") if a.strip()]


# Tests


def test_login_on_one_host_and_launch_on_the_other_and_a_replay_is_refused(hosts, database):
    a, b = hosts.pinned("a"), hosts.pinned("b")
    with hosts.session() as browser:
        launch = post_launch(browser, b, log_in(hosts, browser, a))
        assert succeeded(launch), launch.response.text[:500]
        assert upstreams(launch.login) == [hosts.hosts["a"].address]
        assert upstreams(launch.response) == [hosts.hosts["b"].address]
        assert "Modern History" in launch.landing.text
    # The same id_token and state, posted again (even with the first browser's cookies) to
    # the other host: the nonce and the state were used up in the shared cache.
    with hosts.session() as attacker:
        attacker.cookies.update(browser.cookies)
        replayed = post_launch(attacker, a, Launch(None, launch.token, launch.state))
    assert replayed.response.status_code in (400, 401, 403), replayed.response.status_code
    assert upstreams(replayed.response) == [hosts.hosts["a"].address]
    assert replayed.landing is None
    with database.connect() as conn:
        last = conn.execute(sa.select(LTILaunchLog.success, LTILaunchLog.error_category)
                            .order_by(LTILaunchLog.id.desc()).limit(1)).one()
    assert tuple(last) == (False, "nonce_replay")


def test_concurrent_first_launches_across_both_hosts_make_one_course(hosts, database):
    """50 new students and one student ten times, into a new course, all at once, logging in
    on one host and launching on either: one course, one group, one link, one account each."""
    course, link = f"course-{secrets.token_hex(4)}", f"link-{secrets.token_hex(4)}"
    students = [f"new-{course}-{n}" for n in range(50)] + [f"again-{course}"] * 10
    at = [hosts.pinned("a"), hosts.pinned("b")]
    context = {"id": course, "label": "BIO101", "title": "Cells", "type": ["CourseSection"]}
    barrier = threading.Barrier(len(students), timeout=60)

    def one(n: int) -> Launch:
        with hosts.session() as browser:
            launch = log_in(hosts, browser, at[n % 2], sub=students[n], context=context,
                            resource_link={"id": link, "title": "Lecture 1"},
                            email=f"{students[n]}@example.edu")
            barrier.wait()  # every id_token arrives at once
            return post_launch(browser, at[(n // 2) % 2], launch)

    with ThreadPoolExecutor(max_workers=len(students)) as pool:
        launches = list(pool.map(one, range(len(students))))

    failed = [(one.response.status_code, one.response.text[:200]) for one in launches
              if not succeeded(one)]
    assert not failed, failed
    served_by = {upstreams(one.response)[-1] for one in launches}
    assert served_by == {h.address for h in hosts.hosts.values()}
    assert count(database, sa.select(Category).where(Category.lti_context_id == course)) == 1
    [group_id] = rows(database, sa.select(RBACGroup.id).where(RBACGroup.lti_context_id == course))
    assert count(database, sa.select(LTIResourceLink).where(
        LTIResourceLink.resource_link_id == link)) == 1
    assert count(database, sa.select(LTIUserMapping).where(
        LTIUserMapping.lti_user_id == f"again-{course}")) == 1
    assert count(database, sa.select(LTIUserMapping).where(
        LTIUserMapping.lti_user_id.in_(set(students)))) == 51
    assert count(database, sa.select(RBACMembership).where(
        RBACMembership.rbac_group_id == group_id)) == 51


def rows(engine, query) -> list:
    with engine.connect() as conn:
        return list(conn.scalars(query))


def test_an_upload_on_one_host_plays_from_the_other(hosts, database):
    a, b = hosts.pinned("a"), hosts.pinned("b")
    course = f"course-{secrets.token_hex(4)}"
    with hosts.session() as teacher:
        launch = post_launch(teacher, a, log_in(
            hosts, teacher, a, sub=f"teacher-{course}", roles=[INSTRUCTOR],
            context={"id": course, "label": "PHY", "title": "Waves", "type": ["CourseSection"]}))
        assert succeeded(launch), launch.response.text[:500]
        page = teacher.get(f"{a}/media/upload", timeout=TIMEOUT)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text)[1]
        headers = {"Tus-Resumable": "1.0.0", "X-CSRFToken": token,
                   "Referer": f"{hosts.public}/media/upload"}
        category = launch.response.headers["Content-Location"].rsplit("/", 1)[1]  # course page
        details = {"filename": "waves.mp4", "title": "Waves", "visibility": "members",
                   "category": category}
        created = teacher.post(f"{a}/media/uploads/", timeout=TIMEOUT, headers=headers | {
            "Upload-Length": str(len(VIDEO)), "Upload-Metadata": ",".join(
                f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in details.items()),
        })
        assert created.status_code == 201, created.text
        url = urljoin(f"{a}/", created.headers["Location"])
        for start in range(0, len(VIDEO), 100_000):
            part = teacher.patch(url, data=VIDEO[start:start + 100_000], timeout=TIMEOUT,
                                 headers=headers | {"Upload-Offset": str(start), "Content-Type":
                                                    "application/offset+octet-stream"})
            assert part.status_code == 204, part.text
            assert upstreams(part) == [hosts.hosts["a"].address]
        item = part.headers["Upload-Media-Location"]  # /media/<id>

        detail = teacher.get(f"{b}{item}", timeout=TIMEOUT)
        assert detail.status_code == 200 and "Waves" in detail.text
        assert upstreams(detail) == [hosts.hosts["b"].address]
        # Served by host B, or by nginx on host B's word (X-Accel-Redirect, MEDIA_ACCEL_REDIRECT)
        whole = teacher.get(f"{b}{item}/file", timeout=TIMEOUT)
        assert whole.status_code == 200, whole.text[:300]
        assert whole.content == VIDEO
        assert whole.headers["Content-Type"] == "video/mp4"
        assert whole.headers["Content-Security-Policy"] == "sandbox"  # never run as a page
        ranged = teacher.get(f"{b}{item}/file", headers={"Range": "bytes=1000-1999"},
                             timeout=TIMEOUT)
        assert ranged.status_code == 206
        assert ranged.headers["Content-Range"] == f"bytes 1000-1999/{len(VIDEO)}"
        assert ranged.content == VIDEO[1000:2000]
    # ...and not for a browser signed in to neither host
    with hosts.session() as stranger:
        refused = stranger.get(f"{b}{item}/file", allow_redirects=False, timeout=TIMEOUT)
        assert refused.status_code in (302, 401, 403) and refused.content != VIDEO
        # nginx's own path to the media folder is for the app's answers only
        [stored] = rows(database, sa.select(Media.file_path).where(
            Media.id == int(item.rsplit("/", 1)[1])))
        assert (hosts.media_root / stored).read_bytes() == VIDEO
        direct = stranger.get(f"{b}/internal-media/{stored}", timeout=TIMEOUT)
        assert direct.status_code == 404 and direct.content != VIDEO


# One host goes away


@dataclass
class Outcome:
    started: float
    ended: float
    ok: bool
    detail: str


def launch_stream(hosts: Cluster, stop_host, before: int = 12, after: int = 30,
                  clients: int = 3, limit: float = 90) -> tuple[list[Outcome], float]:
    """Launches through nginx from `clients` browsers; `stop_host()` once `before` have
    succeeded; ends once `after` more have succeeded (or after `limit` seconds)."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    triggered: list[bool] = []
    stopped_at: list[float] = []  # when stop_host() returned
    done = threading.Event()
    deadline = time.monotonic() + limit

    def client(k: int) -> None:
        n = 0
        while not done.is_set() and time.monotonic() < deadline:
            n += 1
            started = time.monotonic()
            try:
                with hosts.session() as browser:
                    launch = post_launch(browser, hosts.public, log_in(
                        hosts, browser, hosts.public, sub=f"stream-{k}-{n}"))
                ok = succeeded(launch)
                detail = f"{launch.response.status_code} {upstreams(launch.response)}"
            except Exception as e:  # a refused step, a reset: a failed launch either way
                ok, detail = False, f"{type(e).__name__}: {str(e)[:200]}"
            with lock:
                outcomes.append(Outcome(started, time.monotonic(), ok, detail))
                stop_now = not triggered and sum(o.ok for o in outcomes) >= before
                triggered.extend([True] * stop_now)
                if stopped_at and sum(o.ok and o.started > stopped_at[0]
                                      for o in outcomes) >= after:
                    done.set()
            if stop_now:
                stop_host()
                stopped_at.append(time.monotonic())

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=limit + 2 * TIMEOUT)
    assert stopped_at, f"the host was never stopped: {outcomes}"
    return outcomes, stopped_at[0]


def check_stream(name: str, outcomes: list[Outcome], stopped: float) -> None:
    """No launch begun after the host was stopped failed, nor any begun after the first failure
    was seen (those in flight on the host as it went may fail); the counts are printed."""
    failures = [o for o in outcomes if not o.ok]
    first_seen = min((o.ended for o in failures), default=float("inf"))
    after_stop = [o for o in outcomes if o.started > stopped]
    print(f"\n{name}: {len(outcomes)} launches, {len(failures)} failed, "
          f"{len(after_stop)} begun after the stop of which {sum(not o.ok for o in after_stop)} "
          f"failed: {[o.detail for o in failures]}")
    assert not [o for o in failures if o.started > first_seen]
    assert not [o for o in after_stop if not o.ok]
    assert len(after_stop) >= 30


@pytest.fixture
def host_b(hosts):
    """Host B, running and plugged in, and back in nginx's rotation (nginx tries a host again
    10 s after its last failure)."""
    b = hosts.hosts["b"]
    b.namespace.plug()
    if not b.running:
        b.start()
    with hosts.session() as browser:
        deadline = time.monotonic() + 40
        seen: set[str] = set()
        while b.address not in seen and time.monotonic() < deadline:
            seen |= set(upstreams(browser.get(f"{hosts.public}/healthz", timeout=TIMEOUT)))
            time.sleep(0.2)
    assert b.address in seen, f"nginx does not send requests to host B: {seen}"
    yield b
    b.namespace.plug()


def test_launches_keep_succeeding_when_a_host_drops_off_the_network(hosts, host_b):
    outcomes, stopped = launch_stream(hosts, host_b.namespace.unplug)
    check_stream("host B unplugged", outcomes, stopped)


def test_launches_keep_succeeding_when_a_host_is_shut_down(hosts, host_b):
    outcomes, stopped = launch_stream(hosts, host_b.shut_down)
    check_stream("host B shut down", outcomes, stopped)


def test_launches_keep_succeeding_when_a_host_crashes(hosts, host_b):
    outcomes, stopped = launch_stream(hosts, host_b.crash)
    check_stream("host B crashed", outcomes, stopped)
