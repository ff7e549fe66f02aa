"""A test platform for LTI Dynamic Registration on a loopback port: an OpenID configuration and a
registration endpoint answering as Moodle or Canvas do, and an admin page framing the tool.

Moodle-shaped: the site lives under /moodle (issuer `{base}/moodle`), the deployment ID comes
inside the tool-configuration object, errors are plain text, `messages_supported` are strings.
Canvas-shaped: issuer `{base}`, `authorization_server` given, the Bearer token is required on
the configuration too, the deployment ID comes at the top level, errors are 422 JSON.
Import the `registration_lms` fixture into a test module.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from requests.structures import CaseInsensitiveDict

TOOL_CONFIGURATION = "https://purl.imsglobal.org/spec/lti-tool-configuration"
PLATFORM_CONFIGURATION = "https://purl.imsglobal.org/spec/lti-platform-configuration"
NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
DROP = object()  # an override value that removes the key


@dataclass
class Received:
    method: str
    path: str
    headers: CaseInsensitiveDict
    body: Any = None  # the parsed JSON of a POST


@dataclass
class RegistrationPlatform:
    """Settable: `shape` ("moodle" | "canvas"), `token` (the registration token it issued and
    checks on both requests; None: no check), `config_overrides` / `answer_overrides` (keys
    replaced, DROP removes one), `config_body` (raw bytes instead), `answer_status`,
    `client_id`, `deployment_id` (None: none given). `received` lists every request;
    `registrations` the parsed POSTed bodies."""

    shape: str = "moodle"
    token: str | None = "reg-token-123"
    config_overrides: dict[str, Any] = field(default_factory=dict)
    answer_overrides: dict[str, Any] = field(default_factory=dict)
    answer_status: int = 200
    client_id: str = "AbCdEfGh1234567"
    deployment_id: str | None = "7"
    config_body: bytes | None = None  # sent as the configuration instead, as application/json
    received: list[Received] = field(default_factory=list)
    token_used: bool = False

    def __post_init__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.tool_url = ""  # the browser journey's tool, framed by `admin_page`
        self.frame_width = "700"  # of the registration dialog's iframe
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # What it serves

    @property
    def site(self) -> str:
        return f"{self.base}/moodle" if self.shape == "moodle" else self.base

    @property
    def issuer(self) -> str:
        return self.config_overrides.get("issuer", self.site)

    @property
    def config_url(self) -> str:
        if self.shape == "moodle":
            return f"{self.site}/mod/lti/openid-configuration.php"
        return f"{self.site}/api/lti/security/openid-configuration"

    @property
    def registration_url(self) -> str:
        if self.shape == "moodle":
            return f"{self.site}/mod/lti/openid-registration.php"
        return f"{self.site}/api/lti/registrations"

    def configuration(self) -> dict[str, Any]:
        site = self.site
        if self.shape == "moodle":
            body = {
                "issuer": site,
                "token_endpoint": f"{site}/mod/lti/token.php",
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
                "jwks_uri": f"{site}/mod/lti/certs.php",
                "authorization_endpoint": f"{site}/mod/lti/auth.php",
                "registration_endpoint": self.registration_url,
                "scopes_supported": [
                    "https://purl.imsglobal.org/spec/lti-ags/scope/score", NRPS_SCOPE, "openid"],
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public", "pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "claims_supported": ["sub", "iss", "name", "given_name", "family_name", "email"],
                PLATFORM_CONFIGURATION: {
                    "product_family_code": "moodle",
                    "version": "4.5.2 (Build: 20250210)",
                    "messages_supported": ["LtiResourceLinkRequest", "LtiDeepLinkingRequest"],
                    "variables": ["basic-lti-launch-request"],
                },
            }
        else:
            body = {
                "issuer": site,
                "authorization_endpoint": f"{site}/api/lti/authorize_redirect",
                "registration_endpoint": self.registration_url,
                "jwks_uri": f"{site}/api/lti/security/jwks",
                "token_endpoint": f"{site}/login/oauth2/token",
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", NRPS_SCOPE],
                "response_types_supported": ["id_token"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "claims_supported": ["sub", "picture", "email", "name", "given_name",
                                     "family_name", "locale"],
                "subject_types_supported": ["public"],
                "authorization_server": f"{site}/login/oauth2/aud",
                PLATFORM_CONFIGURATION: {
                    "product_family_code": "canvas",
                    "version": "OpenSource",
                    "messages_supported": [
                        {"type": "LtiResourceLinkRequest", "placements": ["course_navigation"]},
                        {"type": "LtiDeepLinkingRequest", "placements": ["link_selection"]},
                    ],
                    "variables": ["ResourceLink.id"],
                    "https://canvas.instructure.com/lti/account_name": "Test school",
                },
            }
        return _apply(body, self.config_overrides)

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        body = json.loads(json.dumps(request)) | {"client_id": self.client_id}
        if self.shape == "moodle":
            if self.deployment_id is not None:
                body[TOOL_CONFIGURATION]["deployment_id"] = self.deployment_id
        else:
            body["registration_client_uri"] = f"{self.site}/api/lti/registrations/1"
            if self.deployment_id is not None:
                body["deployment_id"] = self.deployment_id
        return _apply(body, self.answer_overrides)

    def admin_page(self) -> str:
        """The LMS admin's page with the registration dialog: the tool in an iframe, and what
        the page receives by postMessage written out (#received)."""
        src = (f"{self.tool_url}/lti/register?openid_configuration={quote(self.config_url)}"
               f"&registration_token={quote(self.token or '')}")
        return (
            "<!doctype html><html lang='en'><title>Register a tool</title>"
            "<h1>Register a tool</h1><p id='received'>nothing yet</p>"
            f"<iframe id='dialog' src='{src}' width='{self.frame_width}' height='600'></iframe>"
            "<script>window.addEventListener('message', function (e) {"
            "document.getElementById('received').textContent ="
            " 'received ' + JSON.stringify(e.data) + ' from ' + e.origin; });</script>"
        )

    # HTTP

    def _authorized(self, headers) -> bool:
        return self.token is None or headers.get("Authorization") == f"Bearer {self.token}"

    def _handler(self):
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = urlsplit(self.path).path
                platform.received.append(Received("GET", path, CaseInsensitiveDict(self.headers)))
                if path == "/admin/register":
                    return self.send(200, platform.admin_page().encode(), "text/html")
                if path != urlsplit(platform.config_url).path:
                    return self.send(404, b"not found", "text/plain")
                if platform.shape == "canvas" and not platform._authorized(self.headers):
                    return self.json(401, {"errors": [{"message": "Invalid token"}]})
                if platform.config_body is not None:
                    return self.send(200, platform.config_body, "application/json")
                self.json(200, platform.configuration())

            def do_POST(self):
                path = urlsplit(self.path).path
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                platform.received.append(
                    Received("POST", path, CaseInsensitiveDict(self.headers), body))
                if path != urlsplit(platform.registration_url).path:
                    return self.send(404, b"not found", "text/plain")
                if not platform._authorized(self.headers):
                    return self.refuse(401, "missing_registration_token")
                if platform.token_used:
                    return self.refuse(401, "token_already_used")
                if not isinstance(body, dict):
                    return self.refuse(400, "invalid_json")
                if platform.answer_status >= 400:
                    return self.refuse(platform.answer_status, "registration refused")
                platform.token_used = True
                self.json(platform.answer_status, platform.answer(body))

            def refuse(self, status: int, error: str):
                if platform.shape == "canvas":
                    return self.json(422 if status == 400 else status,
                                     {"errors": [{"message": error}]})
                self.send(status, error.encode(), "text/plain")

            def json(self, status: int, body: Any):
                self.send(status, json.dumps(body).encode(), "application/json")

            def send(self, status: int, body: bytes, content_type: str):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        return Handler

    @property
    def registrations(self) -> list[dict[str, Any]]:
        return [r.body for r in self.received if r.method == "POST"]


def _apply(body: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for key, value in overrides.items():
        if value is DROP:
            body.pop(key, None)
        else:
            body[key] = value
    return body


@pytest.fixture
def registration_lms():
    platform = RegistrationPlatform()
    yield platform
    platform.close()
