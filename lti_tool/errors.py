"""Domain exceptions and the HTML error pages."""

import logging

from flask import Flask, current_app, make_response, render_template
from flask.globals import request_ctx
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge

log = logging.getLogger(__name__)


class ValidationError(Exception):
    """Input a service refuses; `field` names the form field or CLI option at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class LaunchError(Exception):
    """An LTI login or launch that cannot go on.

    `category` is one of the launch doctor's categories (services/doctor.py); `details` feed its
    fix text. What the launch had learned when it failed (the platform, the unverified claims,
    the message type) is attached on the way out, for the failed-launch log entry; the login's
    parameters too when they are known, for the error page's "Try again".
    """

    def __init__(self, category: str, message: str, **details):
        super().__init__(message)
        self.category = category
        self.message = message
        self.details = details
        self.platform = None
        self.claims: dict | None = None
        self.deep_linking = False
        self.login_params: dict[str, str] | None = None


class KeyUnavailableError(RuntimeError):
    """The tool's private key cannot be used (for example SECRET_KEY changed since it was made)."""


def human_size(n: int) -> str:
    """A byte count for people: 512 KB, 2 MB, 1.5 GB."""
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(RequestEntityTooLarge, _too_large)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)


def _http_error(error: HTTPException):
    # A refused Host header leaves no URL adapter: that page links nothing, so it still renders.
    template = "errors/error.html" if request_ctx.url_adapter else "errors/plain.html"
    response = make_response(render_template(template, error=error), error.code)
    # Keep the headers the error carries: Allow on 405, Content-Range on 416, …
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _too_large(error: RequestEntityTooLarge):
    limit = human_size(current_app.config["MAX_UPLOAD_BYTES"])
    error.description = f"The file is larger than the limit of {limit}. Nothing was saved."
    return _http_error(error)


def _unexpected_error(error: Exception):
    log.exception("Unhandled error")
    return _http_error(InternalServerError())
