"""Serve the tool the way production does (gunicorn, several workers) for end-to-end tests."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(database_uri: str, instance: Path, workers: int = 2, **env: str) -> Iterator[str]:
    """Run `gunicorn -w N wsgi:app` on a free loopback port; yield its base URL."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATABASE_URL")}
    environ |= {"DATABASE_URL": database_uri, "INSTANCE_PATH": str(instance)} | env
    log = open(instance.parent / "gunicorn.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-w", str(workers),
         "-b", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, process, log)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


def _wait_until_up(base: str, process: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"gunicorn exited early:\n{log.read()}")
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=2).close()
            return
        except OSError:  # refused, reset or timed out while the workers boot
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not answer within 30 s")
