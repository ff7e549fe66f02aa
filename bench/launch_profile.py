"""Launch profile: where the time of an LTI launch round trip goes, in-process, under cProfile.

    .venv/bin/python bench/launch_profile.py [--launches N] [--users U]
        [--database-url postgresql://…] [--redis-url redis://…] [--top K] [--dump FILE]

Defaults: 300 round trips of 100 returning students, SQLite in a temporary instance folder and
the file cache. With --database-url a fresh database is created on that server and dropped at
the end; with --redis-url the cache is Redis (keys under a prefix of their own, deleted at the
end).

One round trip is what a browser does, through Flask's test client: POST /lti/login (the
cookie check page), GET it again with lti1p3_new_window=1 (302 to the platform), the platform's
auth page (made in this process by bench/bench_platform.py's BenchPlatform: a real RS256-signed
id_token), POST /lti/launch, and the landing page (its GET after a 303, or the launch's own
response when it renders in place).

The run: migrate, register the platform, launch every student once and warm up (so every
launch measured is a returning student's), then
1. counts, per step of a returning student's round trip, the SQL statements (by kind) and the
   cache operations (and, on Redis, the commands sent);
2. times N round trips without the profiler (ms per round trip, in this one process);
3. profiles N round trips with cProfile and prints the self time grouped in buckets a reader
   understands (time spent in builtins and the standard library is charged to the nearest
   caller that belongs to a bucket), then the functions with the most self time.

Only the Flask app runs here: gunicorn, its access log and the network are not measured.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_platform import BenchPlatform, login_params  # noqa: E402
from common import TOOL_ENV, delete_redis_keys, fresh_database  # noqa: E402

TOOL = "http://localhost"
LTI = "https://purl.imsglobal.org/spec/lti/claim/"
STEPS = ("login", "login (new window)", "platform auth (bench)", "launch POST", "landing page")


# Buckets: a frame's file (or a builtin's name) tells which part of the stack it belongs to.
# Checked in order; the first match wins. None: charged to the callers instead.
BUCKETS: list[tuple[str, re.Pattern]] = [
    ("SQL execution (driver)", re.compile(
        r"sqlite3|/psycopg/|/psycopg_c/|/psycopg_binary/|psycopg_c\.|psycopg_binary\.")),
    ("Redis I/O", re.compile(r"/redis/")),
    ("file cache I/O", re.compile(r"/cachelib/|/flask_caching/|lti_tool/cache_backends\.py")),
    ("ORM + SQL compilation (SQLAlchemy)", re.compile(r"/sqlalchemy/|/flask_sqlalchemy/")),
    ("PyLTI1p3 + JWT/RSA", re.compile(
        r"/pylti1p3/|/jwt/|/cryptography/|RSAPublicKey|RSAPrivateKey|'verify'|'sign'")),
    ("templates (Jinja)", re.compile(r"/jinja2/|/markupsafe/|/templates/.*\.html|<template>")),
    ("logging", re.compile(r"/logging/")),
    ("our provisioning", re.compile(
        r"lti_tool/services/(provisioning|accounts|users|roles|role_mappings|nrps_jobs|claims)\.py")),
    ("our launch + login code", re.compile(
        r"lti_tool/(launch/|services/(launches|message_launch|oidc|tool_conf|platform_memory|jwks|platforms|keys|"
        r"platform_storage|doctor)\.py)")),
    ("our landing page (media views)", re.compile(r"lti_tool/(media/|services/)")),
    ("our other code (app, security, sessions)", re.compile(r"/lti_tool/")),
    ("Flask/werkzeug/sessions/login", re.compile(
        r"/flask/|/werkzeug/(?!test\.py)|/flask_login/|/flask_wtf/|/itsdangerous/|/blinker/|"
        r"/wtforms/")),
    ("bench harness (test client, platform)", re.compile(
        r"/werkzeug/test\.py|/bench/|/html/parser\.py|/_markupbase\.py|/urllib/")),
]
STDLIB = re.compile(r"/lib/python3\.\d+/(?!site-packages)")


def bucket_of(func: tuple[str, int, str]) -> str | None:
    """The bucket of a profiled function, or None for builtins and the standard library."""
    filename, _, name = func
    where = f"{filename}:{name}" if filename != "~" else name
    for bucket, pattern in BUCKETS:
        if pattern.search(where):
            return bucket
    if filename == "~" or STDLIB.search(filename):
        return None
    return "other libraries"


def bucketed(stats: pstats.Stats) -> Counter:
    """Self time per bucket; generic frames charge their callers in proportion."""
    raw: dict = stats.stats  # type: ignore[attr-defined]
    totals: Counter = Counter()

    def charge(func, seconds: float, depth: int) -> None:
        bucket = bucket_of(func)
        if bucket is not None:
            totals[bucket] += seconds
            return
        callers = raw.get(func, (0, 0, 0, 0, {}))[4]
        if depth >= 8 or not callers:
            totals["other (standard library, builtins)"] += seconds
            return
        # the caller's share of this function's cumulative time
        shares = {caller: entry[3] for caller, entry in callers.items()}
        whole = sum(shares.values())
        if whole <= 0:
            totals["other (standard library, builtins)"] += seconds
            return
        for caller, share in shares.items():
            charge(caller, seconds * share / whole, depth + 1)

    for func, (_, _, tottime, _, _) in raw.items():
        if tottime:
            charge(func, tottime, 0)
    return totals


# Counting statements and cache operations


class Counters:
    """SQL statements by kind and cache operations (and Redis commands) since the last take."""

    def __init__(self) -> None:
        self.sql: Counter = Counter()
        self.cache: Counter = Counter()
        self.redis: Counter = Counter()

    def take(self) -> tuple[Counter, Counter, Counter]:
        taken = self.sql, self.cache, self.redis
        self.sql, self.cache, self.redis = Counter(), Counter(), Counter()
        return taken


@contextlib.contextmanager
def counting(engine, backend, counters: Counters) -> Iterator[None]:
    from sqlalchemy import event

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        counters.sql[statement.split(None, 1)[0].upper()] += 1

    event.listen(engine, "before_cursor_execute", record)
    wrapped = []
    for name in ("get", "set", "add", "delete", "has", "count", "get_many", "set_many",
                 "delete_many", "inc"):
        method = getattr(backend, name, None)
        if method is None:
            continue
        wrapped.append(name)
        setattr(backend, name, _counted(method, name, lambda: counters.cache))
    clients = [c for c in {id(c): c for c in (getattr(backend, "_write_client", None),
                                              getattr(backend, "_read_client", None)) if c}
               .values()]
    originals = []
    for client in clients:
        originals.append((client, client.execute_command))
        client.execute_command = _counted(
            client.execute_command, None, lambda: counters.redis)  # type: ignore[method-assign]
    pipeline_execute = None
    if clients:
        import redis.client

        pipeline_execute = redis.client.Pipeline.execute

        def execute(self, *args, **kwargs):
            counters.redis["MULTI/EXEC pipeline"] += 1
            counters.redis.update(str(c[0][0]).upper() for c in self.command_stack)
            return pipeline_execute(self, *args, **kwargs)

        redis.client.Pipeline.execute = execute
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", record)
        for name in wrapped:
            delattr(backend, name)
        for client, original in originals:
            client.execute_command = original
        if pipeline_execute is not None:
            import redis.client

            redis.client.Pipeline.execute = pipeline_execute


def _counted(method: Callable, name: str | None, counter: Callable[[], Counter]) -> Callable:
    def call(*args, **kwargs):
        counter()[name or str(args[0]).upper()] += 1
        return method(*args, **kwargs)

    return call


# One round trip through the test client


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


def round_trip(app, platform: BenchPlatform, user: str,
               between: Callable[[str], None] = lambda step: None) -> None:
    """One launch of `user` from a fresh browser; `between(step)` is called after each step."""
    client = app.test_client()
    params = login_params(TOOL, platform, user)
    _expect(client.post("/lti/login", data=params), 200, "login")
    between(STEPS[0])
    second = client.get("/lti/login", query_string=params | {"lti1p3_new_window": "1"})
    _expect(second, 302, "login (new window)")
    between(STEPS[1])
    query = {k: v[0] for k, v in parse_qs(urlsplit(second.headers["Location"]).query).items()}
    status, page = platform.auth_page(query)
    if status != 200:
        raise RuntimeError(f"platform auth: {status} {page[:200]}")
    form = FormParser()
    form.feed(page)
    between(STEPS[2])
    launch = client.post(urlsplit(form.action or "").path, data=form.fields)
    if launch.status_code not in (200, 303):
        raise RuntimeError(f"launch POST: HTTP {launch.status_code}: {launch.text[:300]}")
    between(STEPS[3])
    if launch.status_code == 303:
        _expect(client.get(launch.headers["Location"]), 200, "landing page")
    between(STEPS[4])


def _expect(response, status: int, step: str) -> None:
    if response.status_code != status:
        raise RuntimeError(f"{step}: HTTP {response.status_code}, expected {status}: "
                           f"{response.text[:300]}")


# Setup


def make_app(database_url: str, instance: Path, redis_url: str | None, prefix: str):
    for name in TOOL_ENV:
        os.environ.pop(name, None)
    os.environ["INSTANCE_PATH"] = str(instance)
    os.environ["LOG_LEVEL"] = "WARNING"
    if redis_url:
        os.environ["REDIS_URL"] = redis_url
        os.environ["CACHE_KEY_PREFIX"] = prefix
    from lti_tool import create_app
    from lti_tool.config import database_url as driver_url

    return create_app({"SQLALCHEMY_DATABASE_URI": driver_url(database_url)})


def register(app, platform: BenchPlatform) -> None:
    from flask_migrate import upgrade

    from lti_tool.extensions import db
    from lti_tool.models import LTIPlatform

    sample = platform.claims("u", "n", "t")
    with app.app_context():
        upgrade()
        db.session.add(LTIPlatform(
            name="Bench", platform_id=platform.issuer, client_id=sample["aud"],
            auth_login_url=f"{platform.base}/auth", auth_token_url=f"{platform.base}/token",
            key_set_url=f"{platform.base}/jwks", deployment_ids=[sample[LTI + "deployment_id"]],
        ))
        db.session.commit()
        db.session.remove()
    platform.redirect_uris.add(f"{TOOL}/lti/launch")


# Report


def print_counts(per_step: dict[str, list[Counter]], step_seconds: Counter, trips: int,
                 redis: bool) -> None:
    print(f"\nper step of a returning student's round trip (mean of {trips}; ms while counting):")
    header = f"  {'step':22} {'ms':>6} {'SQL':>5}  {'cache ops':>9}"
    print(header + (f"  {'Redis cmds':>10}" if redis else "") + "  detail")
    for step in STEPS:
        sql, ops, cmds = (Counter({k: v / trips for k, v in c.items()}) for c in per_step[step])
        detail = "; ".join(
            part for part in (
                ", ".join(f"{v:g} {k}" for k, v in sql.most_common()),
                ", ".join(f"{v:g} {k}" for k, v in ops.most_common()),
            ) if part)
        line = (f"  {step:22} {step_seconds[step] * 1000 / trips:6.2f} {sum(sql.values()):5g}"
                f"  {sum(ops.values()):9g}")
        if redis:
            line += f"  {sum(cmds.values()):10g}"
        print(f"{line}  {detail or '-'}")
    totals = [sum(sum(per_step[s][i].values()) for s in STEPS) / trips for i in range(3)]
    ms = sum(step_seconds.values()) * 1000 / trips
    line = f"  {'round trip':22} {ms:6.2f} {totals[0]:5g}  {totals[1]:9g}"
    print(line + (f"  {totals[2]:10g}" if redis else ""))


def print_profile(stats: pstats.Stats, trips: int, top: int) -> None:
    buckets = bucketed(stats)
    total = sum(buckets.values())
    print(f"\nprofile: self time by bucket, ms per round trip (cProfile; {trips} round trips)")
    for bucket, seconds in buckets.most_common():
        print(f"  {bucket:42} {seconds * 1000 / trips:7.2f} ms  {seconds / total:6.1%}")
    print(f"  {'total':42} {total * 1000 / trips:7.2f} ms")
    print(f"\nthe {top} functions with the most self time (ms per round trip, calls per trip):")
    raw: dict = stats.stats  # type: ignore[attr-defined]
    rows = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:top]
    for (filename, line, name), (_, calls, tottime, _, _) in rows:
        where = name if filename == "~" else f"{_short(filename)}:{line} {name}"
        print(f"  {tottime * 1000 / trips:6.2f} {calls / trips:7.1f}x  "
              f"{bucket_of((filename, line, name)) or '(charged to callers)':32.32}  {where}")


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3", str(ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=300, help="profiled round trips")
    parser.add_argument("--users", type=int, default=100, help="returning students, in turn")
    parser.add_argument("--database-url", help="postgresql://… server (default: SQLite)")
    parser.add_argument("--redis-url", help="redis://… (default: the file cache)")
    parser.add_argument("--top", type=int, default=20, help="functions listed by self time")
    parser.add_argument("--dump", help="also write the raw cProfile data to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.launches <= 20_000 or not 1 <= args.users <= 10_000:
        parser.error("--launches must be 1..20000 and --users 1..10000")
    return args


@contextlib.contextmanager
def in_process_run(name: str, database_url: str | None,
                   redis_url: str | None) -> Iterator[tuple[Path, str, str, BenchPlatform]]:
    """A temporary folder, a database (SQLite in the folder, or a fresh PostgreSQL one), a Redis
    key prefix and the test platform for one in-process run; all removed at the end."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{name.replace('_', '-')}-"))
    prefix = f"{name}:{secrets.token_hex(4)}:"
    platform = BenchPlatform()
    try:
        with fresh_database(database_url, tmp / "instance" / "lti_tool.sqlite3", name) as url:
            yield tmp, url, prefix, platform
    finally:
        platform.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if redis_url:
            with contextlib.suppress(Exception):
                delete_redis_keys(redis_url, prefix)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with in_process_run("launch_profile", args.database_url, args.redis_url) as (
            tmp, url, prefix, platform):
        run(args, tmp / "instance", url, prefix, platform)


def run(args: argparse.Namespace, instance: Path, url: str, prefix: str,
        platform: BenchPlatform) -> None:
    app = make_app(url, instance, args.redis_url, prefix)
    register(app, platform)
    from lti_tool.extensions import cache, db

    users = [str(2001 + n) for n in range(args.users)]
    setup = "PostgreSQL" if args.database_url else "SQLite"
    setup += " + Redis" if args.redis_url else " + file cache"
    print(f"launch profile: {setup}, {args.users} returning students, "
          f"{args.launches} round trips in-process")
    with app.app_context():
        engine = db.engine
    for user in users:  # every student once: all later launches are returning ones
        round_trip(app, platform, user)
    for n in range(50):  # warm-up
        round_trip(app, platform, users[n % len(users)])

    per_step: dict[str, list[Counter]] = {s: [Counter(), Counter(), Counter()] for s in STEPS}
    step_seconds: Counter = Counter()
    counters = Counters()
    counted = min(args.launches, 50)
    last = [0.0]

    def between(step: str) -> None:
        now = time.perf_counter()
        step_seconds[step] += now - last[0]
        for total, taken in zip(per_step[step], counters.take(), strict=True):
            total.update(taken)
        last[0] = time.perf_counter()

    with app.app_context():
        backend = cache.cache
    with counting(engine, backend, counters):
        for n in range(counted):
            counters.take()
            last[0] = time.perf_counter()
            round_trip(app, platform, users[n % len(users)], between)
    print_counts(per_step, step_seconds, counted, bool(args.redis_url))

    start, cpu = time.perf_counter(), time.process_time()
    for n in range(args.launches):
        round_trip(app, platform, users[n % len(users)])
    plain, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"\nwithout the profiler: {plain * 1000 / args.launches:.2f} ms per round trip, "
          f"{cpu * 1000 / args.launches:.2f} ms CPU of this process (one thread; includes the "
          "platform signing its id_token and the test client)")

    profiler = cProfile.Profile()
    profiler.enable()
    for n in range(args.launches):
        round_trip(app, platform, users[n % len(users)])
    profiler.disable()
    if args.dump:
        profiler.dump_stats(args.dump)
    print_profile(pstats.Stats(profiler), args.launches, args.top)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


if __name__ == "__main__":
    main()
