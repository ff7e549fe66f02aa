"""Launch benchmark: complete LTI 1.3 launches through the tool, served as in production.

    .venv/bin/python bench/launch_bench.py [--launches N] [--concurrency C]
        [--database-url URL] [--redis-url URL]

Defaults: 1000 launches, 8 concurrent clients, SQLite in a temporary instance folder, the file
cache. With --database-url postgresql://… a fresh database is created on that server for the
run and dropped at the end; with --redis-url the shared cache is Redis (keys under a prefix of
their own, deleted at the end).

The run:
1. migrates a temporary instance (`flask --app wsgi db upgrade`) and registers a test platform
   with `flask --app wsgi platform add`;
2. starts the test platform in this process on 127.0.0.1: its JWKS at /jwks and an OIDC auth
   endpoint at /auth that answers, like Moodle, with a self-submitting form carrying a signed,
   Moodle-shaped id_token (sub = the login_hint, so a pool of distinct users launches);
3. serves the tool with `python -m gunicorn -c gunicorn.conf.py -w 2 … wsgi:app`, then the
   baseline (bench/baseline_tool.py, a minimal PyLTI1p3 tool) with the same gunicorn settings;
4. drives, against each, a warm-up and then N round trips from C client threads. One round trip
   is what a browser does: POST /lti/login (the cookie check page), GET it again with
   lti1p3_new_window=1 (302 to the platform), GET the platform's auth page, POST its form to
   /lti/launch (303), GET the page the student sees (200). Any other status is an error. Each
   round trip starts with an empty cookie jar: a browser of its own;
5. counts, in-process, the SQL statements of the tool's login, launch POST and landing page for a
   new and for a returning user;
6. prints launches/s, latency percentiles, errors, the mean time of each step, the CPU used per
   round trip by the server processes and by this process (clients and platform, which share
   the machine with the servers), the SQL counts and a summary of the gunicorn logs; then
   stops every process and removes every temporary file, database and Redis key it made.

All traffic stays on 127.0.0.1. Loops are bounded in count and in time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform as host_platform
import re
import secrets
import shutil
import socket
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
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
GUNICORN_CONF = ROOT / "gunicorn.conf.py"

CLIENT_ID = "bench-client"
DEPLOYMENT_ID = "1"
USERS = 200  # distinct login_hints, used in turn: most launches after the first round return
FIRST_USER = 1001
WARMUP = 50
WORKERS = 2
REQUEST_TIMEOUT = 30  # seconds, every HTTP request
PHASE_TIME_LIMIT = 900  # seconds; a phase stops starting round trips after this
START_TIMEOUT = 30  # seconds for gunicorn to answer /healthz

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
# Settings of the tool a developer's shell may hold that must not leak into the run.
TOOL_ENV = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "INSTANCE_PATH", "MEDIA_ROOT",
            "TRUSTED_PROXIES", "CACHE_KEY_PREFIX", "BIND", "WEB_CONCURRENCY", "LOG_LEVEL")


# The test platform


class BenchPlatform:
    """A Moodle-like platform on a loopback port: its JWKS and its OIDC auth endpoint."""

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


class FormParser(HTMLParser):
    """The first form of a page: its action and its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = values.get("action", "")
        elif tag == "input" and values.get("name"):
            self.fields[values["name"]] = values.get("value", "")


def parse_form(page: str) -> FormParser:
    parser = FormParser()
    parser.feed(page)
    return parser


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


def round_trip(session: requests.Session, tool: str, platform: BenchPlatform,
               user: str) -> list[float]:
    """One complete launch; returns the seconds of each of STEPS.

    Raises StepError (or a requests error) when a step answers another status than expected.
    """
    times: list[float] = []

    def step(name: str, status: int, method: str, url: str, **kwargs: Any) -> requests.Response:
        start = time.perf_counter()
        response = session.request(method, url, timeout=REQUEST_TIMEOUT,
                                   allow_redirects=False, **kwargs)
        times.append(time.perf_counter() - start)
        if response.status_code != status:
            raise StepError(f"{name}: HTTP {response.status_code}, expected {status}")
        return response

    params = login_params(tool, platform, user)
    step("a1 POST /lti/login", 200, "POST", f"{tool}/lti/login", data=params)
    to_platform = step(
        "a2 GET /lti/login (new window)", 302, "GET", f"{tool}/lti/login",
        params=params | {"lti1p3_new_window": "1"},
    ).headers.get("Location", "")
    if not to_platform.startswith(f"{platform.base}/auth?"):
        raise StepError(f"a2 GET /lti/login: redirected to {to_platform[:80]!r}")
    form = parse_form(step("b GET platform /auth", 200, "GET", to_platform).text)
    if not form.action or "id_token" not in form.fields or "state" not in form.fields:
        raise StepError("b GET platform /auth: no id_token form")
    landing = step(
        "c POST /lti/launch", 303, "POST", form.action, data=form.fields
    ).headers.get("Location", "")
    step("d GET landing page", 200, "GET", urljoin(form.action, landing))
    return times


# Load


@dataclass
class LoadResult:
    name: str
    planned: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    step_seconds: list[float] = field(default_factory=lambda: [0.0] * len(STEPS))
    server_cpu: float = 0.0  # CPU seconds of gunicorn and its workers
    client_cpu: float = 0.0  # CPU seconds of this process: the clients and the platform
    log_summary: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        return len(self.latencies) + sum(self.errors.values())

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def step_means_ms(self) -> list[float]:
        ok = len(self.latencies) or 1
        return [seconds * 1000 / ok for seconds in self.step_seconds]

    def percentile(self, p: int) -> float:
        if not self.latencies:
            return float("nan")
        if len(self.latencies) == 1:
            return self.latencies[0] * 1000
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[p - 1] * 1000


def run_load(name: str, tool: str, platform: BenchPlatform, launches: int, concurrency: int,
             first: int = 0) -> LoadResult:
    """`launches` round trips from `concurrency` threads; users taken in turn from the pool."""
    result = LoadResult(name, launches)
    counter = iter(range(first, first + launches))
    lock = threading.Lock()
    stop = threading.Event()
    deadline = time.monotonic() + PHASE_TIME_LIMIT

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set() and time.monotonic() < deadline:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                session.cookies.clear()
                user = str(FIRST_USER + n % USERS)
                start = time.perf_counter()
                try:
                    times = round_trip(session, tool, platform, user)
                except (StepError, requests.RequestException) as e:
                    with lock:
                        result.errors[_error_kind(e)] += 1
                else:
                    elapsed = time.perf_counter() - start
                    with lock:
                        result.latencies.append(elapsed)
                        for i, seconds in enumerate(times):
                            result.step_seconds[i] += seconds

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    start = time.perf_counter()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT * 5 + 5)
    result.seconds = time.perf_counter() - start
    return result


def _error_kind(error: Exception) -> str:
    if isinstance(error, StepError):
        return str(error)
    return f"{type(error).__name__}: {str(error)[:100]}"


# Processes, databases, caches


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@contextlib.contextmanager
def gunicorn(app: str, cwd: Path, env: dict[str, str],
             log: Path) -> Iterator[tuple[str, int]]:
    """Serve `app` with the tool's gunicorn.conf.py and two workers; yield its URL and pid."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "-w", str(WORKERS),
               "-b", f"127.0.0.1:{port}", app]
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, process, log)
        yield base, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by a process and its children (Linux /proc; else 0)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for p in [str(pid), *children]:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    except (OSError, ValueError, IndexError):
        return 0.0
    return total


def wait_until_up(base: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited early:\n{log.read_text()}")
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{base}/healthz did not answer 200 within {START_TIMEOUT} s")


@contextlib.contextmanager
def bench_database(url: str | None, instance: Path) -> Iterator[str]:
    """A SQLite file in the instance folder, or a fresh PostgreSQL database dropped at the end."""
    if not url:
        yield f"sqlite:///{instance / 'lti_tool.sqlite3'}"
        return
    import psycopg
    from sqlalchemy.engine import make_url

    server = make_url(url).set(drivername="postgresql")
    if server.get_backend_name() != "postgresql":
        raise SystemExit("--database-url must be a postgresql:// URL")
    name = f"launch_bench_{secrets.token_hex(4)}"
    admin = server.render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def delete_redis_keys(redis_url: str, prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])
        return len(keys)
    finally:
        client.close()


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
    platform: BenchPlatform
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


def measure(run: Run, name: str, app: str, cwd: Path, env: dict[str, str]) -> LoadResult:
    """Serve one tool, warm it up, then time the launches."""
    log = run.tmp / f"{name}.log"
    with gunicorn(app, cwd, env, log) as (base, pid):
        run.platform.redirect_uris.add(f"{base}/lti/launch")
        warm = run_load(name, base, run.platform, WARMUP, run.args.concurrency)
        if warm.errors:
            print(f"  {name} warm-up errors: {dict(warm.errors)}")
        server, client = tree_cpu_seconds(pid), time.process_time()
        result = run_load(name, base, run.platform, run.args.launches, run.args.concurrency,
                          first=WARMUP)
        result.server_cpu = tree_cpu_seconds(pid) - server
        result.client_cpu = time.process_time() - client
    result.log_summary = summarize_log(log)
    return result


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
    sys.path.insert(0, str(ROOT))
    from lti_tool import create_app
    from lti_tool.config import database_url
    from lti_tool.extensions import db

    settings = {"INSTANCE_PATH": str(run.instance), "LOG_LEVEL": "WARNING",
                "REDIS_URL": run.args.redis_url,
                "CACHE_KEY_PREFIX": run.args.redis_url and f"{run.prefix}tool:"}
    with _environ(settings):
        app = create_app({"SQLALCHEMY_DATABASE_URI": database_url(run.database_url)})
    run.platform.redirect_uris.add("http://localhost/lti/launch")
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


def launch_in_process(app, platform: BenchPlatform, user: str,
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
    page = requests.get(second.headers["Location"], timeout=REQUEST_TIMEOUT)
    form = parse_form(page.text)
    launch = client.post(urlsplit(form.action or "").path, data=form.fields)
    if launch.status_code != 303:
        raise RuntimeError(f"in-process launch: {launch.status_code}")
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


# Logs and report


PROBLEM = re.compile(
    r"Traceback|\b(ERROR|CRITICAL|WARNING)\b|Launch refused|^\w[\w.]*(Error|Exception): "
)
ACCESS = re.compile(r'"(GET|POST) (\S+?)(?:\?\S*)? HTTP/[\d.]+" (\d{3}) ')
TIMESTAMP = re.compile(r"^\[[^]]*\]\s*|^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s*")


def summarize_log(path: Path, limit: int = 8) -> list[str]:
    """Counts of access-log lines with status >= 400 and of problem lines (digits as N)."""
    statuses: Counter = Counter()
    problems: Counter = Counter()
    for line in path.read_text(errors="replace").splitlines():
        if match := ACCESS.search(line):
            if int(match[3]) >= 400:
                statuses[f"{match[1]} {match[2]} -> {match[3]}"] += 1
        elif PROBLEM.search(line):
            problems[re.sub(r"\d+", "N", TIMESTAMP.sub("", line))[:200]] += 1
    lines = [f"{n:6} x {what}" for what, n in statuses.most_common(limit)]
    lines += [f"{n:6} x {what}" for what, n in problems.most_common(limit)]
    return lines or ["no errors or warnings logged"]


def git_revision() -> str:
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10)
    except OSError:
        return "unknown revision"
    return done.stdout.strip() or "unknown revision"


def print_settings(args: argparse.Namespace, run: Run) -> None:
    database = ("SQLite (temporary instance folder)" if not args.database_url
                else f"PostgreSQL, fresh database {run.database_url.rsplit('/', 1)[-1]}")
    print(f"LTI launch benchmark, tool at {git_revision()}")
    print(f"  machine     {os.cpu_count()} cores, {host_platform.platform()}, "
          f"Python {host_platform.python_version()}")
    print(f"  launches    {args.launches} measured after {WARMUP} warm-up, per tool")
    print(f"  clients     {args.concurrency} concurrent, {USERS} distinct users in turn")
    print(f"  database    {database}")
    cache = ("Redis " + args.redis_url if args.redis_url
             else "files (tool: its default; baseline: FileSystemCache, no threshold)")
    print(f"  cache       {cache}")
    print(f"  servers     gunicorn -c gunicorn.conf.py -w {WORKERS} (tool: wsgi:app, "
          "baseline: bench/baseline_tool.py)")
    print()


def print_results(results: list[LoadResult], sql: dict[str, Counter]) -> None:
    print(f"{'':10} {'launches/s':>10} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'ok':>6} {'errors':>6} {'seconds':>8} {'server CPU ms':>14} {'bench CPU ms':>13}")
    for r in results:
        per_launch = 1000 / (r.done or 1)
        print(f"{r.name:10} {r.rate:10.1f} {r.percentile(50):8.0f} {r.percentile(95):8.0f} "
              f"{r.percentile(99):8.0f} {len(r.latencies):6} {sum(r.errors.values()):6} "
              f"{r.seconds:8.1f} {r.server_cpu * per_launch:14.1f} "
              f"{r.client_cpu * per_launch:13.1f}")
        if r.done < r.planned:
            print(f"{'':10} stopped after {PHASE_TIME_LIMIT} s: {r.done} of {r.planned} done")
    print("(CPU ms per round trip: the server is gunicorn and its workers, without the database "
          "and Redis;\n the bench is this process: the clients and the platform)")
    print("\nmean ms per step of the successful round trips:")
    print(f"{'':10}" + "".join(f"{name:>24}" for name in STEPS))
    for r in results:
        print(f"{r.name:10}" + "".join(f"{ms:24.1f}" for ms in r.step_means_ms()))
    tool, baseline = results
    if baseline.rate:
        print(f"\ntool / baseline launches/s: {tool.rate / baseline.rate:.2f}")
    for r in results:
        if r.errors:
            print(f"\n{r.name} errors:")
            for what, n in r.errors.most_common(8):
                print(f"  {n:6} x {what}")
    print("\nSQL statements of the tool, in-process (through SQLAlchemy; pool pings excluded):")
    for step, counter in sql.items():
        kinds = ", ".join(f"{n} {kind}" for kind, n in counter.most_common())
        print(f"  {step:34} {sum(counter.values()):3}  ({kinds or 'none'})")
    for r in results:
        print(f"\n{r.name} gunicorn log (status >= 400, warnings, errors):")
        for line in r.log_summary:
            print(f"  {line}")


# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=1000, help="measured round trips")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients")
    parser.add_argument("--database-url", help="postgresql://… server (default: SQLite)")
    parser.add_argument("--redis-url", help="redis://… (default: the file cache)")
    args = parser.parse_args(argv)
    if not 1 <= args.launches <= 100_000 or not 1 <= args.concurrency <= 256:
        parser.error("--launches must be 1..100000 and --concurrency 1..256")
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
            platform = BenchPlatform()
            stack.callback(platform.close)
            database = stack.enter_context(bench_database(args.database_url, tmp / "instance"))
            run = Run(args, tmp, platform, database, prefix)
            print_settings(args, run)
            tool = measure(run, "tool", "wsgi:app", ROOT, prepare_tool(run))
            baseline = measure(run, "baseline", "baseline_tool:app", BENCH,
                               prepare_baseline(run))
            sql = count_sql(run)
            print_results([tool, baseline], sql)
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
