"""A test platform's services: an OAuth 2 token endpoint and a paged Names and Roles endpoint.

The token endpoint checks the tool's client assertion against the tool's own JWKS (as read from
/lti/jwks) and issues opaque tokens; the memberships endpoint checks them and the Accept header,
and pages with `Link: <…>; rel="next"` URLs carrying mixed-case opaque page tokens that must come
back exactly. Failures can be injected per page. Import the `nrps_lms` fixture into a test module.
"""

from __future__ import annotations

import json
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
from requests.structures import CaseInsensitiveDict

from .lms import TestPlatform

NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
MEMBERSHIPS_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = 600  # seconds an assertion's exp may lie ahead of now
ROLES = "http://purl.imsglobal.org/vocab/lis/v2/membership#"


def member(sub: str, role: str = "Learner", *, status: str | None = "Active",
           name: str | None = "", email: str | None = "", roles: list[str] | None = None,
           **extra) -> dict[str, Any]:
    """One NRPS member as Moodle sends it. `name=""` makes one up from the sub; `name=None`
    (or `email=None`) leaves the field out, as a platform's privacy settings may;
    `status=None` leaves out the status (which then means Active)."""
    body: dict[str, Any] = {"user_id": sub, "roles": roles if roles is not None else [role]}
    if status is not None:
        body["status"] = status
    if name is not None:
        name = name or f"Person {sub}"
        given, _, family = name.partition(" ")
        body |= {"name": name, "given_name": given, "family_name": family or given}
    if email is not None:
        body["email"] = email or f"person{sub}@example.edu"
    body["lis_person_sourcedid"] = ""
    return body | extra


def members(n: int, role: str = "Learner", *, start: int = 1, **kwargs) -> list[dict[str, Any]]:
    """`n` members with subs start, start+1, …"""
    return [member(str(i), role, **kwargs) for i in range(start, start + n)]


@dataclass
class Course:
    id: str
    title: str = "Modern History"
    label: str = "HIST210"
    roster: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Logged:
    """One request the platform's services received."""

    method: str
    path: str
    query: dict[str, str]
    headers: CaseInsensitiveDict  # as received; names compare case-insensitively
    status: int = 0
    page: int | None = None  # memberships: which page (1-based) was asked for


@dataclass
class Issued:
    scopes: set[str]
    expires_at: float


def _page_token() -> str:
    """An opaque page token with upper and lower case letters (Canvas's are base64)."""
    while True:
        token = secrets.token_urlsafe(18)
        if any(c in string.ascii_lowercase for c in token) and any(
            c in string.ascii_uppercase for c in token
        ):
            return token


class NrpsPlatform:
    """The service side of a `TestPlatform` on its own loopback port.

    Token endpoint: `token_url`. Settable: `tool_jwks` (the tool's public keyset; the fixture
    reads it from /lti/jwks, `read_tool_keys()` again), `audience` (the aud expected; default
    the token URL), `allowed_scopes`, `token_lifetime` (expires_in), `token_failure` (None, an
    OAuth error code such as "invalid_scope"/"invalid_client" answered with 400, or an HTTP
    status), `token_delay` (seconds). `token_requests` counts token requests, `assertions`
    holds the decoded ones.

    Memberships: `memberships_url(context)`. Settable: `courses` (`set_roster()`), `max_limit`
    (the platform's own page size cap), `canvas_links` (also send first/last/current links),
    `page_failures` {page number: HTTP status | "junk" | "no-members" | "slow"}, `slow_seconds`.
    `log` lists every request (tokens and memberships).
    """

    def __init__(self, lms: TestPlatform):
        self.lms = lms
        self.client_id = lms.client_id
        self.tool_jwks: dict[str, Any] = {"keys": []}
        self.read_tool_jwks = None  # callable the fixture sets: the tool's /lti/jwks
        self.allowed_scopes = {NRPS_SCOPE}
        self.token_lifetime = 3600
        self.token_failure: str | int | None = None
        self.token_delay = 0.0  # seconds the token endpoint takes to answer
        self.token_requests = 0
        self.assertions: list[dict[str, Any]] = []
        self.used_jtis: set[str] = set()
        self.tokens: dict[str, Issued] = {}
        self.courses: dict[str, Course] = {}
        self.max_limit: int | None = None
        self.canvas_links = False
        self.page_failures: dict[int, int | str] = {}
        self.slow_seconds = 6.0
        self.log: list[Logged] = []
        self._pages: dict[str, tuple[str, int]] = {}  # page token -> (context, offset)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.token_url = f"{self.base}/mod/lti/token.php"
        self.audience: str | None = None
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self._closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # setting up

    def read_tool_keys(self) -> None:
        """Read the tool's public keyset again (after a key rotation), as the platform would."""
        self.tool_jwks = self.read_tool_jwks()

    def set_roster(self, roster: list[dict[str, Any]], context: str = "24", **course) -> Course:
        """The members of course `context` (created if new; `title`, `label` may be given)."""
        current = self.courses.get(context)
        values = {"title": current.title, "label": current.label} if current else {}
        self.courses[context] = Course(id=context, roster=list(roster), **(values | course))
        return self.courses[context]

    def memberships_url(self, context: str = "24", **query) -> str:
        url = f"{self.base}/nrps/{context}/memberships"
        return f"{url}?{urlencode(query)}" if query else url

    def claim(self, context: str = "24") -> dict[str, Any]:
        """The NRPS claim of a launch from course `context`, as Moodle sends it."""
        return {"context_memberships_url": self.memberships_url(context),
                "service_versions": ["1.0", "2.0"]}

    def revoke_tokens(self) -> None:
        """Forget every token issued (the service then answers 401 to them)."""
        self.tokens.clear()

    def memberships_requests(self) -> list[Logged]:
        return [r for r in self.log if "/memberships" in r.path]

    # the token endpoint

    def token_answer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.token_requests += 1
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            return 400, {"error": "invalid_request"}
        try:
            claims = self._verify(form["client_assertion"])
        except (jwt.PyJWTError, ValueError) as e:
            return 400, {"error": "invalid_client", "error_description": str(e)}
        self.assertions.append(claims)
        if self.token_delay:
            self._closing.wait(self.token_delay)
        if isinstance(self.token_failure, int):
            return self.token_failure, {"error": "server_error" if self.token_failure >= 500
                                        else "unauthorized"}
        if self.token_failure:
            return 400, {"error": self.token_failure}
        granted = set((form.get("scope") or "").split()) & self.allowed_scopes
        if not granted:
            return 400, {"error": "invalid_scope"}
        token = secrets.token_urlsafe(32)
        self.tokens[token] = Issued(granted, time.time() + self.token_lifetime)
        return 200, {"access_token": token, "token_type": "Bearer",
                     "expires_in": self.token_lifetime, "scope": " ".join(sorted(granted))}

    def _verify(self, assertion: str) -> dict[str, Any]:
        header = jwt.get_unverified_header(assertion)
        if header.get("alg") != "RS256":
            raise ValueError("alg must be RS256")
        jwk = next((k for k in self.tool_jwks.get("keys", []) if k.get("kid") == header.get("kid")),
                   None)
        if jwk is None:
            raise ValueError(f"kid {header.get('kid')!r} is not in the tool's keyset")
        claims = jwt.decode(
            assertion, jwt.PyJWK(jwk).key, algorithms=["RS256"],
            audience=self.audience or self.token_url,
            options={"require": ["iss", "sub", "aud", "iat", "exp", "jti"]},
        )
        if claims["iss"] != self.client_id or claims["sub"] != self.client_id:
            raise ValueError("iss and sub must be the client ID")
        if claims["exp"] > time.time() + MAX_ASSERTION_LIFETIME:
            raise ValueError("exp too far ahead")
        with self._lock:
            if claims["jti"] in self.used_jtis:
                raise ValueError("jti used before")
            self.used_jtis.add(claims["jti"])
        return claims | {"header": header}

    # the memberships endpoint

    def memberships_answer(self, context: str, query: dict[str, str], headers,
                           logged: Logged) -> tuple[int, dict[str, str], bytes]:
        auth = headers.get("Authorization") or ""
        issued = self.tokens.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") \
            else None
        if issued is None or issued.expires_at < time.time() or NRPS_SCOPE not in issued.scopes:
            return 401, {}, b'{"error": "invalid token"}'
        if headers.get("Accept") != MEMBERSHIPS_TYPE:
            return 400, {}, b'{"error": "unsupported Accept"}'
        course = self.courses.get(context)
        if course is None:
            return 404, {}, b'{"error": "no such context"}'
        limit = query.get("limit")
        if limit is not None and not limit.isdigit():
            return 400, {}, b'{"error": "bad limit"}'
        roster = course.roster
        kept = {"role": query["role"]} if query.get("role") else {}
        if kept:  # short names and full URIs both match, as in Moodle
            wanted = query["role"].removeprefix(ROLES)
            roster = [m for m in roster if wanted in (r.removeprefix(ROLES) for r in m["roles"])]
        size = int(limit) if limit else len(roster) or 1
        if self.max_limit:
            size = min(size, self.max_limit)
        size = max(size, 1)
        offset = 0
        if "page" in query:
            found = self._pages.get(query["page"])
            if found is None or found[0] != context:
                return 400, {}, b'{"error": "unknown page token"}'
            offset = found[1]
        page = offset // size + 1
        logged.page = page
        failure = self.page_failures.get(page)
        if failure == "slow":
            self._closing.wait(self.slow_seconds)
        elif isinstance(failure, int):
            return failure, {}, b'{"error": "injected"}'
        elif failure == "junk":
            return 200, {"Content-Type": MEMBERSHIPS_TYPE}, b"<html>Service unavailable"
        chunk = roster[offset:offset + size]
        body: dict[str, Any] = {
            "id": self.memberships_url(context),
            "context": {"id": course.id, "label": course.label, "title": course.title},
            "members": chunk,
        }
        if failure == "no-members":
            del body["members"]
        out = {"Content-Type": MEMBERSHIPS_TYPE}
        links = []
        if offset + size < len(roster):
            links.append(f'<{self._page_url(context, size, offset + size, kept)}>; rel="next"')
        if self.canvas_links and limit:
            last = (len(roster) - 1) // size * size if roster else 0
            links = [f'<{self._page_url(context, size, offset, kept)}>; rel="current"', *links,
                     f'<{self.memberships_url(context, limit=size, **kept)}>; rel="first"',
                     f'<{self._page_url(context, size, last, kept)}>; rel="last"']
        if links:
            out["Link"] = ",".join(links)
        return 200, out, json.dumps(body).encode()

    def _page_url(self, context: str, size: int, offset: int, kept: dict[str, str]) -> str:
        token = _page_token()
        self._pages[token] = (context, offset)
        return self.memberships_url(context, limit=size, **kept, page=token)

    # HTTP

    def _handler(self):
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def _log(self) -> Logged:
                parts = urlsplit(self.path)
                logged = Logged(self.command, parts.path,
                                {k: v[0] for k, v in parse_qs(parts.query).items()},
                                CaseInsensitiveDict(self.headers.items()))
                platform.log.append(logged)
                return logged

            def do_POST(self):
                logged = self._log()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if logged.path != urlsplit(platform.token_url).path:
                    return self.answer(logged, 404, {}, b"")
                if not (self.headers.get("Content-Type") or "").startswith(
                    "application/x-www-form-urlencoded"
                ):
                    status, reply = 400, {"error": "invalid_request"}
                else:
                    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                    status, reply = platform.token_answer(form)
                self.answer(logged, status, {"Content-Type": "application/json"},
                            json.dumps(reply).encode())

            def do_GET(self):
                logged = self._log()
                parts = logged.path.strip("/").split("/")
                if len(parts) == 3 and parts[0] == "nrps" and parts[2] == "memberships":
                    status, headers, body = platform.memberships_answer(
                        parts[1], logged.query, self.headers, logged)
                    return self.answer(logged, status, headers, body)
                self.answer(logged, 404, {}, b"")

            def answer(self, logged: Logged, status: int, headers: dict[str, str], body: bytes):
                logged.status = status
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the tool gave up waiting (a slow page)

            def log_message(self, *args):
                pass

        return Handler


@pytest.fixture
def nrps_lms(app, db, lms):
    """The test LMS with its services on loopback: the registration's token URL points at it,
    NRPS is enabled, and course "24" (the context of `lms.launch`) has an empty roster."""
    from lti_tool.services import keys

    nrps = NrpsPlatform(lms)
    keys.ensure_current_key()
    reader = app.test_client()
    nrps.read_tool_jwks = lambda: reader.get("/lti/jwks").get_json()
    nrps.read_tool_keys()
    nrps.set_roster([], "24")
    lms.platform.auth_token_url = nrps.token_url
    lms.platform.enable_nrps = True
    db.session.commit()
    yield nrps
    nrps.close()
