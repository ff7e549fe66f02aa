"""Launch benchmark: complete LTI 1.3 launches through the tool and through a minimal PyLTI1p3
tool, both served as in production, in the same run, by a load client lean enough that the
ratio measures the servers.

    .venv/bin/python bench/launch_bench.py [--launches N] [--concurrency C] [--rounds R]
        [--database-url URL] [--redis-url URL] [--lecture-hall]

Defaults: 1,500 measured launches per server, 8 concurrent clients, 6 rounds per server, SQLite
in a temporary instance folder and the file cache. With --database-url postgresql://… a fresh
database is created on that server and dropped at the end; with --redis-url the shared cache of
both servers is Redis (keys under a prefix of this run, deleted at the end).

The run:
1. migrates a temporary instance (`flask --app wsgi db upgrade`) and registers the test
   platform (`flask --app wsgi platform add`);
2. starts the test platform (BenchPlatform) in a process of its own on 127.0.0.1: its JWKS at
   /jwks and an OIDC auth endpoint at /auth that answers, like Moodle, with a self-submitting
   form carrying a signed (RS256), Moodle-shaped id_token whose sub is the login_hint. Its RSA
   signing is thus not counted as the client's CPU; its CPU per round trip is printed apart;
3. serves, at the same time, the tool (`gunicorn -c gunicorn.conf.py -w 2 wsgi:app`) and the
   baseline (bench/baseline_tool.py under the same gunicorn settings);
4. warms each up with 100 distinct students launching once, so that every measured launch is a
   returning student's;
5. measures in alternating rounds (tool, baseline, tool, …; each round 1/R of a server's
   launches) so that the load of a shared machine falls on both alike; figures are summed per
   server. One round trip is what a browser does: POST /lti/login (200, the cookie check page),
   GET it again with lti1p3_new_window=1 (302 to the platform), GET the platform's auth page
   (200), POST its form to /lti/launch (303; or 200 when the launch answers with the page
   itself, then there is no last step), GET the page the student sees (200). Any other status
   is an error. Each round trip starts with an empty cookie jar: a browser of its own;
6. with --lecture-hall, then drives 32 clients through 800 launches per server, again in
   alternating rounds: 400 students launch twice each, 300 of whom are new on their first
   launch (the other 100 launched in the warm-up);
7. counts, in-process, the SQL statements of the tool's login, launch POST and landing page for
   a new and for a returning student;
8. prints per server and phase: launches/s, latency percentiles, errors, mean time of each
   step, CPU ms per round trip of the server (gunicorn master + workers, from /proc), of the
   PostgreSQL backends of the bench database (with --database-url; the baseline uses none;
   Redis, a server shared with others, is not counted), of the platform and of the client,
   and the client's CPU share (cores = its CPU seconds / wall seconds); then the
   tool/baseline ratios of launches/s and of server CPU per round trip, a GOALS block (PASS
   or FAIL for each goal of the launch path, with the measured value), the SQL counts and a
   summary of the gunicorn logs.
   Every process, temporary file, database and Redis key it made is then removed.

The client is lean on purpose: one raw http.client connection per client thread and server,
kept alive between round trips (reopened when the server closed it), response headers read
without the email parser, a dict for a cookie jar, and two regular expressions for the
platform's form; nothing else is parsed. About 2 ms of CPU per round trip (5 requests), 0.1 to
0.2 of a core at 8 clients. On a 2-core machine the former client (requests + an HTML parser,
the platform in the same process) took about as much CPU per round trip (13-15 ms) as the
baseline server (16 ms) and flattened the ratio. The client's CPU share is printed, and
checked against half a core, so that a run where the client competes with the servers can be
told apart.

All traffic stays on 127.0.0.1. Rounds are bounded in count and in time: a round starts no
round trip after 300 s, and no round starts after 1,800 s of measuring.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import http.client
import json
import os
import platform as host_platform
import re
import secrets
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
GUNICORN_CONF = ROOT / "gunicorn.conf.py"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    PostgresCpu,
    delete_redis_keys,
    fresh_database,
    git_revision,
    gunicorn,
    process_cpu_seconds,
    summarize_log,
    tree_cpu_seconds,
)

CLIENT_ID = "bench-client"
DEPLOYMENT_ID = "1"
STUDENTS = 100  # distinct login_hints; each launches once in the warm-up, then returns
FIRST_USER = 1001
WORKERS = 2  # gunicorn workers per server (--workers); threads: gunicorn.conf.py's (--threads)
LECTURE_CLIENTS = 32
LECTURE_STUDENTS = 400  # the 100 warm students and 300 new ones
LECTURE_LAUNCHES = 800  # per server: each lecture-hall student launches twice
LECTURE_ROUNDS = 2
REQUEST_TIMEOUT = 30  # seconds, every HTTP request
ROUND_TIME_LIMIT = 300  # seconds; a round stops starting round trips after this
RUN_TIME_LIMIT = 1800  # seconds; no round starts after this much measuring

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
# Settings of the tool a developer's shell may hold that must not leak into the run.
TOOL_ENV = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "INSTANCE_PATH", "MEDIA_ROOT",
            "TRUSTED_PROXIES", "CACHE_KEY_PREFIX", "BIND", "WEB_CONCURRENCY", "LOG_LEVEL")

# The goals of the launch path (issue 15), checked at the end of a run.
GOAL_RATIO = 0.7  # tool launches/s over the baseline's, at least
GOAL_P99_MS = 250  # at 8 clients
GOAL_CPU_RATIO = 1.4  # tool server CPU per round trip over the baseline's, at most
GOAL_LECTURE_P99_MS = 1000  # at 32 clients
CLIENT_CORES_LIMIT = 0.5  # above this the client competes with the servers: ratio unreliable


# The test platform


class BenchPlatform:
    """A Moodle-like platform on a loopback port: its JWKS and its OIDC auth endpoint.

    Runs in the process that makes it (a thread serves it); PlatformProcess runs one in a child
    process. Only launch URLs in `redirect_uris` are accepted as redirect_uri.
    """

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "bench-platform-key-1"
        self.redirect_uris: set[str] = set()  # the registered tools' launch URLs
        self.httpd = _Server(("127.0.0.1", 0), self._handler())
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self.thread.start()

    @property
    def issuer(self) -> str:
        return self.base

    def add_redirect_uri(self, uri: str) -> None:
        self.redirect_uris.add(uri)

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [jwk | {"kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def claims(self, user: str, nonce: str, target: str) -> dict[str, Any]:
        """A Moodle-shaped resource link launch of one student of the bench course."""
        now = int(time.time())
        return {
            "nonce": nonce,
            "iat": now,
            "exp": now + 60,
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "sub": user,
            "given_name": "Student",
            "family_name": user,
            "name": f"Student {user}",
            "email": f"student{user}@bench.example.edu",
            LTI + "deployment_id": DEPLOYMENT_ID,
            LTI + "target_link_uri": target,
            LTI + "message_type": "LtiResourceLinkRequest",
            LTI + "version": "1.3.0",
            LTI + "roles": [LEARNER],
            LTI + "context": {"id": "c1", "label": "BENCH", "title": "Bench course",
                              "type": ["CourseSection"]},
            LTI + "resource_link": {"id": "r1", "title": "Bench video", "description": ""},
            LTI + "ext": {"lms": "moodle-2", "user_username": f"student{user}"},
            LTI + "launch_presentation": {"locale": "en", "document_target": "iframe",
                                          "return_url": f"{self.base}/return?course=1"},
            LTI + "tool_platform": {"product_family_code": "moodle", "version": "2024100700",
                                    "guid": "127.0.0.1", "name": "Bench LMS"},
            LTI + "custom": {},
        }

    def auth_page(self, query: dict[str, str]) -> tuple[int, str]:
        """Moodle's answer to the tool's OIDC redirect: a form that POSTs id_token and state."""
        expected = {"scope": "openid", "response_type": "id_token",
                    "response_mode": "form_post", "prompt": "none", "client_id": CLIENT_ID}
        wrong = [k for k, v in expected.items() if query.get(k) != v]
        redirect_uri = query.get("redirect_uri", "")
        if redirect_uri not in self.redirect_uris:
            wrong.append("redirect_uri")
        if not query.get("login_hint") or not query.get("nonce") or not query.get("state"):
            wrong.append("login_hint/nonce/state")
        if wrong:
            return 400, f"Invalid authentication request: {', '.join(wrong)}"
        claims = self.claims(query["login_hint"], query["nonce"], redirect_uri)
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})
        return 200, (
            "<!doctype html><html><body>"
            f'<form action="{_attr(redirect_uri)}" name="ltiAuthForm" id="ltiAuthForm" '
            'method="post" enctype="application/x-www-form-urlencoded">'
            f'<input type="hidden" name="state" value="{_attr(query["state"])}"/>'
            f'<input type="hidden" name="id_token" value="{_attr(token)}"/>'
            "</form><script>document.ltiAuthForm.submit();</script></body></html>"
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        platform = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: every answer has a Content-Length
            # Headers and body are two writes: without TCP_NODELAY the body waits for the
            # client's delayed ACK (40 ms) on a kept-alive connection.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/jwks":
                    status, body, kind = 200, json.dumps(platform.jwks()), "application/json"
                elif parts.path == "/auth":
                    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                    status, body = platform.auth_page(query)
                    kind = "text/html; charset=utf-8"
                else:
                    status, body, kind = 404, "not found", "text/plain"
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops connections under load


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


class PlatformProcess:
    """A BenchPlatform served by a child process, so that its CPU (RSA signing of every
    id_token, its HTTP server) is neither the client's nor the servers'. Same `base`, `issuer`
    and `add_redirect_uri` as BenchPlatform; `cpu_seconds()` is the child's CPU so far.

    The child is `python -c` on serve_platform(): it prints its base URL, then reads commands
    from its stdin (one per line: `add <uri>`, answered `ok`) and stops at end of input, so it
    also stops when this process dies.
    """

    def __init__(self, start_timeout: float = 30) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from bench.launch_bench import serve_platform; "
                                   "serve_platform()"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        try:
            self.base = self._answer(start_timeout)
        except BaseException:
            self.close()
            raise

    @property
    def issuer(self) -> str:
        return self.base

    @property
    def pid(self) -> int:
        return self.process.pid

    def add_redirect_uri(self, uri: str) -> None:
        self.process.stdin.write(f"add {uri}\n")
        if self._answer(10) != "ok":
            raise RuntimeError("the test platform did not take the redirect URI")

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def _answer(self, timeout: float) -> str:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"the test platform did not answer within {timeout} s")
        return line.strip()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.stdin.close()  # end of input: the child stops
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process.stdout.close()


def serve_platform() -> None:
    """The child process of PlatformProcess."""
    platform = BenchPlatform()
    print(platform.base, flush=True)
    try:
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "add":
                platform.add_redirect_uri(argument)
                print("ok", flush=True)
    finally:
        platform.close()


# The platform's auto-submit page: only its form action and two hidden inputs are read.

FORM_ACTION = re.compile(r'<form[^>]*\saction="([^"]*)"')
HIDDEN_INPUT = re.compile(r'<input type="hidden" name="(state|id_token)" value="([^"]*)"')


@dataclass
class Form:
    action: str | None
    fields: dict[str, str]


def parse_form(page: str) -> Form:
    """The action of the platform's auto-submit form and its state and id_token inputs."""
    action = FORM_ACTION.search(page)
    return Form(html.unescape(action[1]) if action else None,
                {name: html.unescape(value) for name, value in HIDDEN_INPUT.findall(page)})


# One round trip, as a browser makes it


STEPS = ("a1 login", "a2 login (new window)", "b platform auth", "c launch", "d landing")


class StepError(Exception):
    pass


def login_params(tool: str, platform: BenchPlatform, user: str) -> dict[str, str]:
    return {
        "iss": platform.issuer,
        "login_hint": user,
        "target_link_uri": f"{tool}/lti/launch",
        "lti_message_hint": json.dumps({"cmid": 1, "launchid": uuid.uuid4().hex}),
        "client_id": CLIENT_ID,
        "lti_deployment_id": DEPLOYMENT_ID,
    }


@dataclass(frozen=True)
class Origin:
    """Where a server listens: its base URL, host and port."""

    base: str

    @property
    def host(self) -> str:
        return urlsplit(self.base).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.base).port or 80

    @property
    def issuer(self) -> str:
        return self.base  # the test platform's issuer is its base URL


class LeanResponse(http.client.HTTPResponse):
    """An HTTPResponse whose headers are read without the email parser, which took a third of
    the client's CPU. The rest is http.client's own `begin()`: status line, body length,
    keep-alive or close."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        version, status, reason = self._read_status()
        while status == http.client.CONTINUE:
            http.client._read_headers(self.fp)
            version, status, reason = self._read_status()
        self.code = self.status = status
        self.reason = reason.strip()
        self.version = 10 if version in ("HTTP/1.0", "HTTP/0.9") else 11
        self.headers = self.msg = http.client.HTTPMessage()
        for line in http.client._read_headers(self.fp):
            name, _, value = line.decode("iso-8859-1").partition(":")
            self.msg.set_raw(name, value.strip())
        self.chunked = (self.msg.get("transfer-encoding") or "").lower() == "chunked"
        self.chunk_left = None
        self.will_close = self._check_close()
        length = self.msg.get("content-length")
        self.length = int(length) if length and not self.chunked else None
        if status in (204, 304) or status < 200 or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


class LeanConnection(http.client.HTTPConnection):
    response_class = LeanResponse


FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}
STALE = (ConnectionError, http.client.BadStatusLine)  # RemoteDisconnected is both


class Browser:
    """What one client thread holds: a kept-alive connection per server and a cookie jar.

    The jar is a dict of name -> value from Set-Cookie, sent to every request of the round trip
    but the platform's (which sets none); `clear()` starts a fresh browser.
    """

    def __init__(self) -> None:
        self.connections: dict[str, http.client.HTTPConnection] = {}
        self.cookies: dict[str, str] = {}
        self.reconnects = 0  # requests sent again on a new connection: the server closed it
        self.connects = 0  # connections opened (kept alive, a browser opens few)
        self.requests = 0

    def clear(self) -> None:
        self.cookies.clear()

    def close(self) -> None:
        for connection in self.connections.values():
            connection.close()
        self.connections.clear()

    def request(self, origin: Origin, method: str, target: str, body: bytes | None = None,
                cookies: bool = True) -> tuple[int, str, bytes]:
        """Send one request; return its status, its Location header ('' if none) and body."""
        headers = FORM_HEADERS.copy() if body is not None else {}
        if cookies and self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        connection = self.connections.get(origin.base)
        if connection is None:
            connection = self.connections[origin.base] = LeanConnection(
                origin.host, origin.port, timeout=REQUEST_TIMEOUT)
        reused = connection.sock is not None
        self.connects += not reused
        self.requests += 1
        try:
            connection.request(method, target, body, headers)
            response = connection.getresponse()
        except STALE:
            connection.close()
            if not reused:
                raise
            self.reconnects += 1
            self.connects += 1
            connection.request(method, target, body, headers)
            response = connection.getresponse()
        data = response.read()
        for cookie in response.msg.get_all("Set-Cookie") or ():
            self._take(cookie)
        return response.status, response.getheader("Location") or "", data

    def _take(self, header: str) -> None:
        pair, _, attributes = header.partition(";")
        name, _, value = pair.partition("=")
        name, value = name.strip(), value.strip()
        attributes = attributes.lower()
        if not value or "max-age=0" in attributes or "1970" in attributes:
            self.cookies.pop(name, None)  # a deleted cookie
        else:
            self.cookies[name] = value


def _target(location: str, origin: Origin) -> str:
    """The request target of a Location (absolute on `origin`, or a path)."""
    if location.startswith("/"):
        return location
    if location.startswith(origin.base + "/"):
        return location[len(origin.base):]
    raise StepError(f"redirected off {origin.base}: {location[:80]!r}")


def round_trip(browser: Browser, tool: Origin, platform: Origin, user: str) -> list[float]:
    """One complete launch with an empty cookie jar; returns the seconds of each of STEPS.

    Raises StepError (or an OSError / http.client error) when a step answers another status
    than expected. When the launch POST answers 200 (the landing page itself), the landing
    step is recorded as 0 s.
    """
    browser.clear()
    times: list[float] = []
    clock = time.perf_counter

    def step(name: str, expected: tuple[int, ...], origin: Origin, method: str, target: str,
             body: bytes | None = None) -> tuple[int, str, bytes]:
        start = clock()
        status, location, data = browser.request(origin, method, target, body,
                                                 cookies=origin is not platform)
        times.append(clock() - start)
        if status not in expected:
            raise StepError(f"{name}: HTTP {status}, expected {expected[0]}")
        return status, location, data

    query = urlencode(login_params(tool.base, platform, user))
    step("a1 POST /lti/login", (200,), tool, "POST", "/lti/login", query.encode())
    _, location, _ = step("a2 GET /lti/login (new window)", (302,), tool, "GET",
                          f"/lti/login?{query}&lti1p3_new_window=1")
    if not location.startswith(f"{platform.base}/auth?"):
        raise StepError(f"a2 GET /lti/login: redirected to {location[:80]!r}")
    _, _, page = step("b GET platform /auth", (200,), platform, "GET",
                      location[len(platform.base):])
    form = parse_form(page.decode())
    if not form.action or "id_token" not in form.fields or "state" not in form.fields:
        raise StepError("b GET platform /auth: no id_token form")
    status, location, _ = step("c POST /lti/launch", (303, 200), tool, "POST",
                               _target(form.action, tool), urlencode(form.fields).encode())
    if status == 200:
        times.append(0.0)  # the launch answered with the student's page
    else:
        step("d GET landing page", (200,), tool, "GET", _target(location, tool))
    return times


# Load


@dataclass
class Server:
    name: str
    origin: Origin
    pid: int  # gunicorn's master
    log: Path


@dataclass
class LoadResult:
    """One server's figures in one phase, summed over its rounds."""

    name: str
    planned: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    step_seconds: list[float] = field(default_factory=lambda: [0.0] * len(STEPS))
    server_cpu: float = 0.0  # CPU seconds of gunicorn and its workers
    platform_cpu: float = 0.0  # CPU seconds of the test platform's process
    database_cpu: float = 0.0  # CPU seconds of the PostgreSQL backends of the bench database
    client_cpu: float = 0.0  # CPU seconds of this process: the client threads
    reconnects: int = 0
    connects: int = 0
    requests: int = 0
    landed_in_launch: int = 0  # launches that answered 200 with the page itself
    rounds: int = 0

    @property
    def done(self) -> int:
        return len(self.latencies) + sum(self.errors.values())

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def per_trip_ms(self, seconds: float) -> float:
        return seconds * 1000 / (self.done or 1)

    @property
    def client_cores(self) -> float:
        return self.client_cpu / self.seconds if self.seconds else 0.0

    def step_means_ms(self) -> list[float]:
        ok = len(self.latencies) or 1
        return [seconds * 1000 / ok for seconds in self.step_seconds]

    def percentile(self, p: int) -> float:
        if not self.latencies:
            return float("nan")
        if len(self.latencies) == 1:
            return self.latencies[0] * 1000
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[p - 1] * 1000


def run_round(result: LoadResult, server: Server, platform: PlatformProcess,
              users: list[str], concurrency: int, deadline: float,
              database_cpu: Callable[[], float] = lambda: 0.0) -> None:
    """Round trips for each of `users` (in order) from `concurrency` client threads; adds the
    figures, including the CPU used meanwhile, to `result`."""
    tool, auth = server.origin, Origin(platform.base)
    queue = iter(users)
    lock = threading.Lock()
    deadline = min(deadline, time.monotonic() + ROUND_TIME_LIMIT)
    latencies: list[float] = []
    errors: Counter = Counter()
    steps = [0.0] * len(STEPS)
    landed = [0]
    browsers = [Browser() for _ in range(concurrency)]

    def client(browser: Browser) -> None:
        clock = time.perf_counter
        try:
            while time.monotonic() < deadline:
                with lock:
                    user = next(queue, None)
                if user is None:
                    return
                start = clock()
                try:
                    times = round_trip(browser, tool, auth, user)
                except Exception as e:  # noqa: BLE001 - any failure is an error of the trip
                    browser.close()  # a connection in an unknown state is not reused
                    with lock:
                        errors[_error_kind(e)] += 1
                else:
                    elapsed = clock() - start
                    with lock:
                        latencies.append(elapsed)
                        for i, seconds in enumerate(times):
                            steps[i] += seconds
                        landed[0] += times[-1] == 0.0  # no landing step: see round_trip
        finally:
            browser.close()

    threads = [threading.Thread(target=client, args=(b,), daemon=True) for b in browsers]
    server_cpu, platform_cpu = tree_cpu_seconds(server.pid), platform.cpu_seconds()
    db_cpu = database_cpu()
    client_cpu, start = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()) + REQUEST_TIMEOUT * 5 + 5)
    result.seconds += time.perf_counter() - start
    result.client_cpu += time.process_time() - client_cpu
    result.server_cpu += tree_cpu_seconds(server.pid) - server_cpu
    result.platform_cpu += platform.cpu_seconds() - platform_cpu
    result.database_cpu += database_cpu() - db_cpu
    with lock:
        result.latencies += latencies
        result.errors += errors
        result.step_seconds = [a + b for a, b in zip(result.step_seconds, steps, strict=True)]
    result.planned += len(users)
    result.reconnects += sum(b.reconnects for b in browsers)
    result.connects += sum(b.connects for b in browsers)
    result.requests += sum(b.requests for b in browsers)
    result.landed_in_launch += landed[0]
    result.rounds += 1


def run_phase(servers: list[Server], platform: PlatformProcess, users: list[str],
              concurrency: int, rounds: int, deadline: float,
              database_cpu: Callable[[], float] = lambda: 0.0) -> list[LoadResult]:
    """Each server's launches, for `users` in turn, split into `rounds` rounds per server and
    run alternately (first server, second, first, …); one LoadResult per server."""
    results = [LoadResult(s.name) for s in servers]
    size = -(-len(users) // rounds)
    for first in range(0, len(users), size):
        for server, result in zip(servers, results, strict=True):
            if time.monotonic() >= deadline:
                return results
            run_round(result, server, platform, users[first:first + size], concurrency,
                      deadline, database_cpu)
    return results


def students(count: int) -> list[str]:
    return [str(FIRST_USER + i) for i in range(count)]


def _error_kind(error: Exception) -> str:
    if isinstance(error, StepError):
        return str(error)
    return f"{type(error).__name__}: {str(error)[:100]}"


# Processes, databases, keys


def tool_env(**settings: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TOOL_ENV}
    return env | {k: v for k, v in settings.items() if v}


def flask_cli(env: dict[str, str], *args: str) -> str:
    command = [sys.executable, "-m", "flask", "--app", "wsgi", *args]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def write_rsa_key(folder: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = folder / "private.pem", folder / "public.pem"
    private.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo,
    ))
    private.chmod(0o600)
    return private, public


# The two tools


@dataclass
class Run:
    args: argparse.Namespace
    tmp: Path
    platform: PlatformProcess
    database_url: str
    prefix: str  # Redis key prefix of this run

    @property
    def instance(self) -> Path:
        return self.tmp / "instance"


def prepare_tool(run: Run) -> dict[str, str]:
    """Migrate the instance and register the platform; return the tool's environment."""
    env = tool_env(DATABASE_URL=run.database_url, INSTANCE_PATH=str(run.instance),
                   REDIS_URL=run.args.redis_url,
                   CACHE_KEY_PREFIX=run.args.redis_url and f"{run.prefix}tool:")
    flask_cli(env, "db", "upgrade")
    p = run.platform.base
    flask_cli(env, "platform", "add", "--name", "Bench", "--issuer", run.platform.issuer,
              "--client-id", CLIENT_ID, "--auth-login-url", f"{p}/auth",
              "--auth-token-url", f"{p}/token", "--key-set-url", f"{p}/jwks",
              "--deployment-id", DEPLOYMENT_ID)
    return env


def prepare_baseline(run: Run) -> dict[str, str]:
    """Write the baseline's key and settings; return its environment."""
    folder = run.tmp / "baseline"
    folder.mkdir()
    private, public = write_rsa_key(folder)
    p = run.platform.base
    settings = {
        "issuer": run.platform.issuer, "client_id": CLIENT_ID,
        "auth_login_url": f"{p}/auth", "auth_token_url": f"{p}/token",
        "key_set_url": f"{p}/jwks", "deployment_ids": [DEPLOYMENT_ID],
        "private_key_file": str(private), "public_key_file": str(public),
        "secret_key": secrets.token_hex(32), "redis_url": run.args.redis_url,
        "cache_dir": str(folder / "cache"), "cache_key_prefix": f"{run.prefix}baseline:",
    }
    config = folder / "config.json"
    config.write_text(json.dumps(settings))
    return tool_env(BASELINE_CONFIG=str(config))


@contextlib.contextmanager
def serve(run: Run, name: str, app: str, cwd: Path, env: dict[str, str]) -> Iterator[Server]:
    log = run.tmp / f"{name}.log"
    if run.args.threads:
        env = {**env, "GUNICORN_THREADS": str(run.args.threads)}
    with gunicorn(app, cwd, env, log, GUNICORN_CONF, run.args.workers) as (base, pid):
        run.platform.add_redirect_uri(f"{base}/lti/launch")
        yield Server(name, Origin(base), pid, log)


# SQL statements, counted in-process


class StatementCounter:
    """Counts the statements an engine sends, by their first word (SELECT, INSERT, ...)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.kinds: list[str] = []

    def _record(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.kinds.append(statement.split(None, 1)[0].upper())

    def take(self) -> Counter:
        counted, self.kinds = Counter(self.kinds), []
        return counted

    def __enter__(self) -> StatementCounter:
        from sqlalchemy import event

        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        from sqlalchemy import event

        event.remove(self.engine, "before_cursor_execute", self._record)


def count_sql(run: Run) -> dict[str, Counter]:
    """Statements of the tool's login, launch POST and landing page: new and returning user."""
    from lti_tool import create_app
    from lti_tool.config import database_url
    from lti_tool.extensions import db

    settings = {"INSTANCE_PATH": str(run.instance), "LOG_LEVEL": "WARNING",
                "REDIS_URL": run.args.redis_url,
                "CACHE_KEY_PREFIX": run.args.redis_url and f"{run.prefix}tool:"}
    with _environ(settings):
        app = create_app({"SQLALCHEMY_DATABASE_URI": database_url(run.database_url)})
    run.platform.add_redirect_uri("http://localhost/lti/launch")
    counts: dict[str, Counter] = {}
    with app.app_context():
        try:
            with StatementCounter(db.engine) as counter:
                for who in ("new user", "returning user"):
                    steps = launch_in_process(app, run.platform, "sql-check-user", counter)
                    counts |= {f"{step}, {who}": n for step, n in steps.items()}
        finally:
            db.session.remove()
            db.engine.dispose()
    return counts


def launch_in_process(app, platform: BenchPlatform | PlatformProcess, user: str,
                      counter: StatementCounter) -> dict[str, Counter]:
    """One launch through Flask's test client (a fresh browser); statements per step."""
    client = app.test_client()
    params = login_params("http://localhost", platform, user)
    counter.take()
    first = client.post("/lti/login", data=params)
    second = client.get("/lti/login", query_string=params | {"lti1p3_new_window": "1"})
    if first.status_code != 200 or second.status_code != 302:
        raise RuntimeError(f"in-process login: {first.status_code}, {second.status_code}")
    counts = {"login (2 requests)": counter.take()}
    browser = Browser()
    try:
        origin = Origin(platform.base)
        status, _, page = browser.request(origin, "GET",
                                          second.headers["Location"][len(platform.base):])
    finally:
        browser.close()
    form = parse_form(page.decode())
    launch = client.post(urlsplit(form.action or "").path, data=form.fields)
    if launch.status_code not in (200, 303):
        raise RuntimeError(f"in-process launch: {launch.status_code}")
    if launch.status_code == 200:
        counts["launch POST (answers with the page)"] = counter.take()
        return counts
    counts["launch POST"] = counter.take()
    if client.get(launch.headers["Location"]).status_code != 200:
        raise RuntimeError("in-process landing page did not answer 200")
    counts["landing page"] = counter.take()
    return counts


@contextlib.contextmanager
def _environ(settings: dict[str, str | None]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in (*TOOL_ENV, *settings)}
    for k in TOOL_ENV:
        os.environ.pop(k, None)
    os.environ.update({k: v for k, v in settings.items() if v})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# Report


def print_settings(args: argparse.Namespace, run: Run) -> None:
    database = ("SQLite (temporary instance folder)" if not args.database_url
                else f"PostgreSQL, fresh database {run.database_url.rsplit('/', 1)[-1]}")
    print(f"LTI launch benchmark, tool at {git_revision(ROOT)}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"  machine     {os.cpu_count()} cores, {host_platform.platform()}, "
          f"Python {host_platform.python_version()}, load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"  launches    {args.launches} per server after a warm-up of {STUDENTS} "
          f"(each of {STUDENTS} students once), in {args.rounds} alternating rounds per server")
    print(f"  clients     {args.concurrency} concurrent, each round trip a fresh browser; "
          f"the {STUDENTS} students in turn (all returning)")
    if args.lecture_hall:
        print(f"  lecture     {LECTURE_CLIENTS} clients, {LECTURE_LAUNCHES} launches per server "
              f"in {LECTURE_ROUNDS} rounds each: {LECTURE_STUDENTS} students twice, "
              f"{LECTURE_STUDENTS - STUDENTS} of them new on their first launch")
    print(f"  database    {database}")
    cache = ("Redis " + args.redis_url if args.redis_url
             else "files (tool: its default; baseline: FileSystemCache, no threshold)")
    print(f"  cache       {cache}")
    threads = args.threads or f"{os.environ.get('GUNICORN_THREADS', 4)} (gunicorn.conf.py)"
    print(f"  servers     gunicorn -c gunicorn.conf.py -w {args.workers}, threads {threads}, "
          "both up all along "
          "(tool: wsgi:app, baseline: bench/baseline_tool.py)")
    print("  platform    a process of its own (RS256 id_tokens); client: this process, "
          "raw http.client")
    print(flush=True)


def print_phase(title: str, results: list[LoadResult], database: bool) -> None:
    print(f"{title}")
    print(f"{'':10} {'launches/s':>10} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'ok':>6} "
          f"{'errors':>6} {'seconds':>7} │ CPU ms per round trip: {'server':>6} "
          f"{'database':>8} {'platform':>8} {'client':>6} │ {'client cores':>12}")
    for r in results:
        db = f"{r.per_trip_ms(r.database_cpu):8.1f}" if database else f"{'-':>8}"
        print(f"{r.name:10} {r.rate:10.1f} {r.percentile(50):7.0f} {r.percentile(95):7.0f} "
              f"{r.percentile(99):7.0f} {len(r.latencies):6} {sum(r.errors.values()):6} "
              f"{r.seconds:7.1f} │ {'':22} {r.per_trip_ms(r.server_cpu):6.1f} {db} "
              f"{r.per_trip_ms(r.platform_cpu):8.1f} {r.per_trip_ms(r.client_cpu):6.1f} │ "
              f"{r.client_cores:12.2f}")
        if r.done < r.planned:
            print(f"{'':10} stopped early (time limit): {r.done} of {r.planned} round trips")
    print(f"{'':10} mean ms per step of the successful round trips:")
    print(f"{'':10} " + "".join(f"{name:>22}" for name in STEPS))
    for r in results:
        print(f"{r.name:10} " + "".join(f"{ms:22.1f}" for ms in r.step_means_ms()))
    for r in results:
        notes = [f"{r.connects} connections opened for {r.requests} requests"]
        if r.landed_in_launch:
            notes.append(f"{r.landed_in_launch} launches answered with the page (200)")
        if r.reconnects:
            notes.append(f"{r.reconnects} requests sent again on a new connection")
        if notes:
            print(f"{r.name:10} " + "; ".join(notes))
    tool, baseline = results
    client_cpu = sum(r.client_cpu for r in results)
    seconds = sum(r.seconds for r in results)
    cpu = _ratio(tool.per_trip_ms(tool.server_cpu), baseline.per_trip_ms(baseline.server_cpu))
    print(f"tool / baseline: launches/s {_ratio(tool.rate, baseline.rate)}, "
          f"server CPU per round trip {cpu}", end="")
    if database:
        both = _ratio(tool.per_trip_ms(tool.server_cpu + tool.database_cpu),
                      baseline.per_trip_ms(baseline.server_cpu + baseline.database_cpu))
        print(f", server + database CPU per round trip {both}", end="")
    print()
    print(f"the client used {client_cpu / seconds if seconds else 0:.2f} of a core "
          f"({client_cpu:.1f} CPU s in {seconds:.1f} s)")
    for r in results:
        if r.errors:
            print(f"{r.name} errors:")
            for what, n in r.errors.most_common(8):
                print(f"  {n:6} x {what}")
    print(flush=True)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def print_goals(args: argparse.Namespace, main: list[LoadResult],
                lecture: list[LoadResult] | None) -> None:
    tool, baseline = main
    setup = "PostgreSQL + Redis" if args.database_url else "SQLite + file cache"
    rate = tool.rate / baseline.rate if baseline.rate else 0.0
    base_cpu = baseline.per_trip_ms(baseline.server_cpu)
    cpu = tool.per_trip_ms(tool.server_cpu) / base_cpu if base_cpu else float("inf")
    seconds = sum(r.seconds for r in main)
    cores = sum(r.client_cpu for r in main) / seconds if seconds else 0.0
    rows = [
        (f"launches/s >= {GOAL_RATIO}x the baseline ({setup})", f"{rate:.2f}x",
         rate >= GOAL_RATIO),
        (f"0 errors at {args.concurrency} clients", f"{sum(tool.errors.values())}",
         not tool.errors and tool.done == tool.planned),
        (f"p99 < {GOAL_P99_MS} ms at {args.concurrency} clients", f"{tool.percentile(99):.0f} ms",
         tool.percentile(99) < GOAL_P99_MS),
        (f"server CPU per round trip <= {GOAL_CPU_RATIO}x the baseline's", f"{cpu:.2f}x",
         cpu <= GOAL_CPU_RATIO),
    ]
    if lecture:
        hall = lecture[0]
        rows += [
            (f"lecture hall: 0 errors at {LECTURE_CLIENTS} clients",
             f"{sum(hall.errors.values())}", not hall.errors and hall.done == hall.planned),
            (f"lecture hall: p99 < {GOAL_LECTURE_P99_MS} ms at {LECTURE_CLIENTS} clients",
             f"{hall.percentile(99):.0f} ms", hall.percentile(99) < GOAL_LECTURE_P99_MS),
        ]
    else:
        rows.append(("lecture hall (32 clients): not run, pass --lecture-hall", "-", None))
    print("GOALS (the tool, same run, same machine)")
    for goal, value, ok in rows:
        verdict = "-" if ok is None else "PASS" if ok else "FAIL"
        print(f"  {verdict:4}  {goal:58} {value:>9}")
    valid = cores < CLIENT_CORES_LIMIT
    print(f"  bench {'valid' if valid else 'NOT VALID'}: the client used {cores:.2f} of a core "
          f"(limit {CLIENT_CORES_LIMIT}); machine load average now "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if args.concurrency != 8:
        print("  (the p99 goal is stated for 8 clients)")
    print(flush=True)


def print_sql_and_logs(sql: dict[str, Counter], servers: list[Server]) -> None:
    print("SQL statements of the tool, in-process (through SQLAlchemy; pool pings excluded):")
    for step, counter in sql.items():
        kinds = ", ".join(f"{n} {kind}" for kind, n in counter.most_common())
        print(f"  {step:44} {sum(counter.values()):3}  ({kinds or 'none'})")
    for server in servers:
        print(f"\n{server.name} gunicorn log (status >= 400, warnings, errors):")
        for line in summarize_log(server.log):
            print(f"  {line}")


# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=1500,
                        help="measured round trips per server (default 1500)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="concurrent clients (default 8)")
    parser.add_argument("--rounds", type=int, default=6,
                        help="alternating rounds per server (default 6)")
    parser.add_argument("--database-url", help="postgresql://… server (default: SQLite)")
    parser.add_argument("--redis-url", help="redis://… (default: the file cache)")
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help=f"gunicorn workers of each server (default {WORKERS})")
    parser.add_argument("--threads", type=int,
                        help="threads per worker of each server (GUNICORN_THREADS; default: "
                             "gunicorn.conf.py's 4; 1 is gunicorn's sync worker)")
    parser.add_argument("--lecture-hall", action="store_true",
                        help=f"also run {LECTURE_CLIENTS} clients, {LECTURE_STUDENTS} students "
                             "(some new)")
    args = parser.parse_args(argv)
    if not 1 <= args.launches <= 100_000 or not 1 <= args.concurrency <= 256:
        parser.error("--launches must be 1..100000 and --concurrency 1..256")
    if not 1 <= args.workers <= 32 or not 1 <= (args.threads or 1) <= 64:
        parser.error("--workers must be 1..32 and --threads 1..64")
    if not 1 <= args.rounds <= min(args.launches, 100):
        parser.error("--rounds must be 1..100 and at most --launches")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="launch-bench-"))
    prefix = f"launch_bench:{secrets.token_hex(4)}:"
    cleanups: list[Callable[[], Any]] = [lambda: shutil.rmtree(tmp, ignore_errors=True)]
    if args.redis_url:
        cleanups.append(lambda: delete_redis_keys(args.redis_url, prefix))
    try:
        with contextlib.ExitStack() as stack:
            platform = PlatformProcess()
            stack.callback(platform.close)
            database = stack.enter_context(
                fresh_database(args.database_url, tmp / "instance" / "lti_tool.sqlite3",
                               "launch_bench"))
            run = Run(args, tmp, platform, database, prefix)
            database_cpu = None
            if args.database_url:
                from sqlalchemy.engine import make_url

                server_url = make_url(args.database_url).set(drivername="postgresql")
                database_cpu = PostgresCpu(server_url.render_as_string(hide_password=False),
                                           make_url(database).database or "")
                stack.callback(database_cpu.close)
            meter = database_cpu or (lambda: 0.0)
            print_settings(args, run)
            servers = [
                stack.enter_context(serve(run, "tool", "wsgi:app", ROOT, prepare_tool(run))),
                stack.enter_context(serve(run, "baseline", "baseline_tool:app", BENCH,
                                          prepare_baseline(run))),
            ]
            deadline = time.monotonic() + RUN_TIME_LIMIT
            warm = run_phase(servers, platform, students(STUDENTS), args.concurrency, 1,
                             deadline, meter)
            for r in warm:
                if r.errors:
                    print(f"{r.name} warm-up errors: {dict(r.errors)}")
            users = [str(FIRST_USER + n % STUDENTS) for n in range(args.launches)]
            main_results = run_phase(servers, platform, users, args.concurrency, args.rounds,
                                     deadline, meter)
            print_phase(f"{args.concurrency} clients, {STUDENTS} returning students",
                        main_results, database_cpu is not None)
            lecture = None
            if args.lecture_hall:
                hall = students(LECTURE_STUDENTS) * (LECTURE_LAUNCHES // LECTURE_STUDENTS)
                lecture = run_phase(servers, platform, hall, LECTURE_CLIENTS, LECTURE_ROUNDS,
                                    deadline, meter)
                print_phase(f"lecture hall: {LECTURE_CLIENTS} clients, {LECTURE_STUDENTS} "
                            f"students ({LECTURE_STUDENTS - STUDENTS} new on their first "
                            "launch)", lecture, database_cpu is not None)
            print_goals(args, main_results, lecture)
            sql = count_sql(run)
            print_sql_and_logs(sql, servers)
    finally:
        for cleanup in reversed(cleanups):
            with contextlib.suppress(Exception):
                cleanup()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped and temporary data removed", file=sys.stderr)
        sys.exit(130)
