"""The launch benchmark's in-process count of the tool's SQL statements: one launch of a new and
of a returning student through Flask's test client, statements per step."""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bench.bench_platform import BenchPlatform, PlatformProcess, login_params, parse_form
from bench.common import TOOL_ENV
from bench.launch_load import Browser, Origin

if TYPE_CHECKING:
    from bench.launch_bench import Run


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
