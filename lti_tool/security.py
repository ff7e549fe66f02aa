"""Response headers, proxy handling, the public address, and input no page should ever see."""

import re
import secrets
from urllib.parse import urlsplit

from flask import Flask, Request, Response, abort, g, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter
from werkzeug.sansio.utils import host_is_trusted

from .services.paging import MAX_ID

# Control characters other than tab, line feed and carriage return: never in a form or a query
# string a person wrote (PostgreSQL refuses NUL in text outright).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A year of HTTPS only, once a browser has reached the tool over https.
HSTS_SECONDS = 365 * 24 * 3600


def cookie_flags(is_secure: bool) -> dict:
    """Cookie attributes for a response served over https (True) or plain http (False).

    Inside an LMS iframe the tool is a third party: its cookies only come back when they are
    `Secure; SameSite=None`, and `Partitioned` keeps them working where third-party cookies are
    phased out (CHIPS). Over plain http (local development) `Secure` cookies would be dropped,
    so they are `SameSite=Lax` instead.
    """
    if is_secure:
        return {"secure": True, "samesite": "None", "partitioned": True}
    return {"secure": False, "samesite": "Lax", "partitioned": False}


class SchemeAwareSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, with flags chosen per request by `cookie_flags`, and its
    signing serializer made once per key rather than on every request."""

    def __init__(self) -> None:
        self._serializers: dict[tuple, object] = {}

    def get_signing_serializer(self, app: Flask):
        key = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        serializer = self._serializers.get(key)
        if serializer is None:
            serializer = self._serializers[key] = super().get_signing_serializer(app)
            if len(self._serializers) > 8:  # keys changed at run time (tests): keep a few
                self._serializers.pop(next(iter(self._serializers)))
        return serializer

    def get_cookie_secure(self, app: Flask) -> bool:
        return cookie_flags(request.is_secure)["secure"]

    def get_cookie_samesite(self, app: Flask) -> str | None:
        return cookie_flags(request.is_secure)["samesite"]

    def get_cookie_partitioned(self, app: Flask) -> bool:
        return cookie_flags(request.is_secure)["partitioned"]


def bounded_int(value) -> int:
    """`int(value)`, refusing (ValueError) a number no id or page can be."""
    number = int(value)
    if not -MAX_ID <= number <= MAX_ID:
        raise ValueError(f"{value!r} is out of range")
    return number


class BoundedIdConverter(IntegerConverter):
    """`<int:…>` in a URL: an id larger than any table holds matches no route (404)."""

    def __init__(self, map, fixed_digits=0, min=None, max=MAX_ID, signed=False):
        super().__init__(map, fixed_digits, min, max, signed)


class BoundedParameters(ImmutableMultiDict):
    """Query string and form values; `.get(name, type=int)` treats a huge number as absent."""

    def get(self, key, default=None, type=None):
        return super().get(key, default, bounded_int if type is int else type)

    def getlist(self, key, type=None):
        return super().getlist(key, bounded_int if type is int else type)


class ToolRequest(Request):
    parameter_storage_class = BoundedParameters


class PublicAddress:
    """WSGI middleware: requests for a trusted host are seen as made to PUBLIC_BASE_URL.

    Every absolute URL the tool builds (url_for(..., _external=True), request.url_root, the
    scheme and so the cookie flags) then comes from the setting, never from a Host or
    X-Forwarded-Host header. A request for another host is left as it came, for Flask's
    TRUSTED_HOSTS check to refuse with 400.
    """

    def __init__(self, wsgi_app, base_url: str, trusted_hosts: list[str]):
        parts = urlsplit(base_url)
        self.wsgi_app = wsgi_app
        self.scheme = parts.scheme
        self.netloc = parts.netloc
        self.port = str(parts.port or (443 if parts.scheme == "https" else 80))
        self.trusted_hosts = trusted_hosts

    def __call__(self, environ, start_response):
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME")
        if host_is_trusted(host, self.trusted_hosts):
            environ = environ | {
                "HTTP_HOST": self.netloc,
                "SERVER_NAME": urlsplit(f"//{self.netloc}").hostname,
                "SERVER_PORT": self.port,
                "wsgi.url_scheme": self.scheme,
            }
        return self.wsgi_app(environ, start_response)


def init_app(app: Flask) -> None:
    """Trust the configured proxies and public address, refuse hostile input, add headers."""
    app.request_class = ToolRequest
    if base_url := app.config.get("PUBLIC_BASE_URL"):
        hosts = app.config["TRUSTED_HOSTS"] = [
            urlsplit(base_url).hostname, *app.config["TRUSTED_HOSTS"]
        ]
        app.wsgi_app = PublicAddress(app.wsgi_app, base_url, hosts)
    proxies = app.config["TRUSTED_PROXIES"]
    if proxies:
        # The scheme (and so the cookie flags), host and client IP come from the proxies'
        # X-Forwarded-* headers; a proxy that does not set one must strip it.
        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies
        )
    app.session_interface = SchemeAwareSessionInterface()
    app.before_request(_refuse_control_characters)
    app.after_request(_security_headers)


def register_converters(app: Flask) -> None:
    """Before any blueprint: every `<int:…>` route refuses ids beyond the database's range."""
    app.url_map.converters["int"] = BoundedIdConverter


def _refuse_control_characters() -> None:
    """400 for NUL and other control characters in the path, the query string, form fields or
    file names."""
    values = [*request.args.items(multi=True), *request.form.items(multi=True)]
    names = [(name, f.filename or "") for name, f in request.files.items(multi=True)]
    for name, value in [("path", request.path), *values, *names]:
        if CONTROL_CHARACTERS.search(name) or CONTROL_CHARACTERS.search(value):
            abort(400, description="The request contains control characters. Nothing was done.")


def allow_framing_by(*origins: str) -> None:
    """Let the current response be framed by these origins (LTI pages shown inside an LMS)."""
    g.frame_ancestors = " ".join(origins) if origins else "'none'"


def allow_form_posts_to(*urls: str) -> None:
    """Let the current page's forms post to these URLs' origins too (the LMS's return URL)."""
    g.form_action = [_origin(url) for url in urls]


def csp_nonce() -> str:
    """The nonce of the current response's inline script and style (made on first use)."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(18)
    return g.csp_nonce


def content_security_policy() -> str:
    """The current response's policy: the tool's own files only, framing as allowed."""
    nonce = f" 'nonce-{g.csp_nonce}'" if "csp_nonce" in g else ""
    form_action = " ".join(["'self'", *g.get("form_action", [])])
    frame_ancestors = g.get("frame_ancestors", "'none'")
    return "; ".join([
        "default-src 'self'",
        f"script-src 'self'{nonce}",
        f"style-src 'self'{nonce}",
        # hls.js plays through Media Source Extensions: the player's source is a blob: URL.
        "media-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        f"form-action {form_action}",
        f"frame-ancestors {frame_ancestors}",
    ])


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", content_security_policy())
    if g.get("frame_ancestors", "'none'") == "'none'":
        response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", f"max-age={HSTS_SECONDS}")
    return response
