"""What the benchmarks share: timing a page, printing a size comparison, serving an app with
gunicorn and measuring its CPU, and the databases and Redis keys made for one run."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

# Settings of the tool a developer's shell may hold that must not leak into a benchmark's run.
TOOL_ENV = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "INSTANCE_PATH", "MEDIA_ROOT",
            "TRUSTED_PROXIES", "CACHE_KEY_PREFIX", "PUBLIC_BASE_URL", "TRUSTED_HOSTS", "BIND",
            "WEB_CONCURRENCY", "LOG_LEVEL")


def median_ms(client, url: str, repeat: int) -> float:
    """The median time of `repeat` GETs of `url`, each of which must answer 200."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    return statistics.median(times)


def print_comparison(label: str, results: dict[int, dict[str, float]]) -> None:
    """One row of figures per size, then the ratio of the largest size to the smallest."""
    names = list(next(iter(results.values())))
    print(f"{label:>10}  " + "  ".join(f"{name:>14}" for name in names))
    for size, figures in results.items():
        print(f"{size:>10,}  " + "  ".join(f"{figures[name]:>14.1f}" for name in names))
    small, large = results[min(results)], results[max(results)]
    print("ratio       " + "  ".join(f"{large[n] / small[n]:>14.2f}" for n in names))


# Servers and processes: what the benchmarks that serve the tool with gunicorn share.


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, every thread) used so far by one process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by a process and its direct children, e.g. gunicorn's master
    and workers (Linux /proc; 0 elsewhere)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return sum(process_cpu_seconds(int(p)) for p in [pid, *children])
    except (OSError, ValueError, IndexError):
        return 0.0


@contextlib.contextmanager
def gunicorn(app: str, cwd: Path, env: dict[str, str], log: Path, conf: Path, workers: int,
             start_timeout: float = 30) -> Iterator[tuple[str, int]]:
    """Serve `app` with `gunicorn -c conf -w workers` on a free loopback port; yield its base URL
    and the master's pid once /healthz answers 200. Stopped (TERM, then KILL) on exit."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "-c", str(conf), "-w", str(workers),
               "-b", f"127.0.0.1:{port}", app]
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(port, process, log, start_timeout)
        yield base, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_until_up(port: int, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited early:\n{log.read_text()}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
        time.sleep(0.2)
    raise RuntimeError(f"127.0.0.1:{port}/healthz did not answer 200 within {timeout} s")


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


def git_revision(root: Path) -> str:
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=root,
                              capture_output=True, text=True, timeout=10)
    except OSError:
        return "unknown revision"
    return done.stdout.strip() or "unknown revision"


# Databases and caches made for one run, removed at its end


@contextlib.contextmanager
def fresh_database(url: str | None, sqlite_file: Path, prefix: str) -> Iterator[str]:
    """A SQLite file, or a fresh PostgreSQL database on the server of `url`, dropped at the end."""
    if not url:
        yield f"sqlite:///{sqlite_file}"
        return
    import psycopg
    from sqlalchemy.engine import make_url

    server = make_url(url).set(drivername="postgresql")
    if server.get_backend_name() != "postgresql":
        raise SystemExit("--database-url must be a postgresql:// URL")
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = server.render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def delete_redis_keys(redis_url: str, prefix: str) -> int:
    """Delete the keys under `prefix` (never anything else); return how many there were."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])
        return len(keys)
    finally:
        client.close()


class PostgresCpu:
    """CPU seconds used so far by the PostgreSQL backends connected to one database of a server
    on this machine (from /proc; run as root or as the postgres user). A backend that exits is
    no longer counted, so measure a span during which the app keeps its pool."""

    def __init__(self, admin_url: str, database: str) -> None:
        import psycopg

        self.database = database
        self.conn = psycopg.connect(admin_url, autocommit=True, connect_timeout=10)

    def __call__(self) -> float:
        pids = self.conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s",
                                 (self.database,)).fetchall()
        total = 0.0
        for (pid,) in pids:
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += process_cpu_seconds(pid)
        return total

    def close(self) -> None:
        self.conn.close()
