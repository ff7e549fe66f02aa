"""The test platform of the launch benchmarks: a Moodle-like LMS on a loopback port.

`BenchPlatform` serves its JWKS and an OIDC auth endpoint that answers, like Moodle, with a
self-submitting form carrying a signed (RS256), Moodle-shaped id_token of one student of the
bench course; `PlatformProcess` runs one in a child process so that its CPU is nobody else's.
Used by `launch_bench.py` (over HTTP) and `launch_profile.py` (in-process).
"""

from __future__ import annotations

import contextlib
import html
import json
import re
import select
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import process_cpu_seconds  # noqa: E402

CLIENT_ID = "bench-client"
DEPLOYMENT_ID = "1"
LTI = "https://purl.imsglobal.org/spec/lti/claim/"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"


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
            [sys.executable, "-c", "from bench.bench_platform import serve_platform; "
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



def login_params(tool: str, platform: BenchPlatform, user: str) -> dict[str, str]:
    return {
        "iss": platform.issuer,
        "login_hint": user,
        "target_link_uri": f"{tool}/lti/launch",
        "lti_message_hint": json.dumps({"cmid": 1, "launchid": uuid.uuid4().hex}),
        "client_id": CLIENT_ID,
        "lti_deployment_id": DEPLOYMENT_ID,
    }



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
