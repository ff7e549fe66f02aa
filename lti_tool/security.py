"""Response headers, proxy handling, and cookie flags that follow the request's scheme."""

from flask import Flask, Response, g, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix


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
    """Flask's signed-cookie session, with flags chosen per request by `cookie_flags`."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return cookie_flags(request.is_secure)["secure"]

    def get_cookie_samesite(self, app: Flask) -> str | None:
        return cookie_flags(request.is_secure)["samesite"]

    def get_cookie_partitioned(self, app: Flask) -> bool:
        return cookie_flags(request.is_secure)["partitioned"]


def init_app(app: Flask) -> None:
    """Trust the configured number of proxies, pick cookie flags per request, add headers."""
    proxies = app.config["TRUSTED_PROXIES"]
    if proxies:
        # The scheme (and so the cookie flags), host and client IP come from the proxies'
        # X-Forwarded-* headers; a proxy that does not set one must strip it.
        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies
        )
    app.session_interface = SchemeAwareSessionInterface()
    app.after_request(_security_headers)


def allow_framing_by(*origins: str) -> None:
    """Let the current response be framed by these origins (LTI pages shown inside an LMS)."""
    g.frame_ancestors = " ".join(origins) if origins else "'none'"


def _security_headers(response: Response) -> Response:
    frame_ancestors = g.get("frame_ancestors", "'none'")
    response.headers.setdefault("Content-Security-Policy", f"frame-ancestors {frame_ancestors}")
    if frame_ancestors == "'none'":
        response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    return response
