"""The launch benchmark's load: browsers making round trips through an LTI launch, in rounds
of client threads, and what each server's rounds add up to (latencies, steps, errors, CPU).

A browser is raw http.client connections kept alive and a dict for a cookie jar, with as
little parsing as the flow allows: the client must not compete with the servers it measures.
"""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from bench.bench_platform import PlatformProcess, login_params, parse_form
from bench.common import tree_cpu_seconds

REQUEST_TIMEOUT = 30  # seconds, every HTTP request
ROUND_TIME_LIMIT = 300  # seconds; a round stops starting round trips after this


STEPS = ("a1 login", "a2 login (new window)", "b platform auth", "c launch", "d landing")


class StepError(Exception):
    pass



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


def _error_kind(error: Exception) -> str:
    if isinstance(error, StepError):
        return str(error)
    return f"{type(error).__name__}: {str(error)[:100]}"
