"""gunicorn as gunicorn.conf.py sets it up, stopped the way `systemctl stop` stops it (SIGTERM):
it finishes the request it holds, and meanwhile refuses new connections at once, so that nginx
tries another host instead of waiting on this one."""

import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from .server import ROOT, free_port

SLOW_APP = '''
import time

def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(4)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]
'''


def connect(port: int) -> str:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return "refused"
    return "accepted"


@pytest.mark.parametrize("threads", ["4", "1"])
def test_a_stopping_server_finishes_its_request_and_refuses_new_ones(tmp_path, threads):
    (tmp_path / "slow_app.py").write_text(SLOW_APP)
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "-w", "1",
             "-b", f"127.0.0.1:{port}", "slow_app:app"],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
            env={"PATH": "/usr/bin:/bin", "GUNICORN_THREADS": threads, "ACCESS_LOG": "0"})
    try:
        deadline = time.monotonic() + 20
        while connect(port) == "refused":
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        answers = []
        held = threading.Thread(target=lambda: answers.append(
            urllib.request.urlopen(f"http://127.0.0.1:{port}/slow", timeout=10).read()))
        held.start()
        time.sleep(1)  # the worker holds the request now
        server.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        seen = [connect(port)]
        if threads == "4":
            # The threaded worker (the default) refuses while it finishes: nginx moves on.
            assert seen == ["refused"], log.read_text()
        held.join(timeout=10)
        assert answers == [b"done"], "the request held at the stop was answered"
        assert server.wait(timeout=10) == 0
        assert connect(port) == "refused"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
