"""LTI Dynamic Registration 1.0: read a platform's OpenID configuration, register the tool with
it, and store the platform it answers with (inactive until approved unless its issuer is trusted).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select

from ..errors import ValidationError
from ..extensions import cache, db
from ..models import LTIPlatform, RegisteredBy
from . import platforms
from .safe_fetch import FetchError, fetch_json

log = logging.getLogger(__name__)

TOOL_CONFIGURATION = "https://purl.imsglobal.org/spec/lti-tool-configuration"
PLATFORM_CONFIGURATION = "https://purl.imsglobal.org/spec/lti-platform-configuration"
NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
# What the tool asks to know about people: who they are, for their account and the class list.
CLAIMS = ["iss", "sub", "name", "given_name", "family_name", "email"]
# URLs the platform's configuration must give, as the tool stores or calls them.
REQUIRED_ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri",
                      "registration_endpoint")
# Anyone may open /lti/register: each address may start this many registrations an hour, and
# at most MAX_PENDING untrusted registrations wait for approval at once.
ATTEMPT_WINDOW = 3600
MAX_ATTEMPTS_PER_ADDRESS = 20
MAX_PENDING = 50
# An OAuth 2 bearer token (RFC 6750 b64token): Moodle's and Canvas's are JWTs.
TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]{1,4096}=*")
PRODUCTS = {"moodle": "Moodle", "canvas": "Canvas", "desire2learn": "Brightspace",
            "brightspace": "Brightspace", "sakai": "Sakai", "blackboard": "Blackboard",
            "schoology": "Schoology"}


class RegistrationError(Exception):
    """A registration that cannot go on: `message` for the LMS admin, `reason` for the log,
    `status` for the page (400: what the LMS sent is wrong; 502: the platform failed us; 409: it
    would overwrite a platform in use)."""

    def __init__(self, reason: str, message: str, status: int = 400, detail: str = ""):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status
        self.detail = detail  # what the platform said, when it refused


@dataclass(frozen=True)
class ToolUrls:
    """The tool's own absolute URLs as the platform must call them."""

    login: str
    launch: str
    jwks: str
    name: str = "Media tool"
    description: str = "Video, audio, images and PDFs for your courses"


@dataclass
class Registered:
    platform: LTIPlatform
    active: bool  # usable at once (a trusted issuer); else waiting for an admin
    updated: bool  # a pending registration of the same issuer and client ID was replaced


@dataclass(frozen=True)
class Settings:
    trusted_issuers: tuple[str, ...] = ()
    allow_loopback: bool = False


def register(config_url: str, token: str | None, tool: ToolUrls, settings: Settings,
             client_ip: str | None = None) -> Registered:
    """Run one dynamic registration and add (or update) the platform (flushed; caller commits).

    Raises RegistrationError. Every attempt is logged with where it came from and how it ended;
    never with the token (nor the configuration URL's query, which may carry one).
    """
    where = _loggable(config_url)
    try:
        _reserve_attempt(client_ip)
        if token is not None and not TOKEN.fullmatch(token):
            raise RegistrationError("bad_token", "The link's registration_token is not valid. "
                                    "Start the registration again from your LMS.")
        configuration = fetch_configuration(config_url, token, settings.allow_loopback)
        where = configuration["issuer"]
        trusted = is_trusted(where, settings.trusted_issuers)
        if not trusted and count_pending() >= MAX_PENDING:
            raise RegistrationError(
                "too_many_pending",
                f"{MAX_PENDING} registrations are already waiting for the media tool's "
                "administrator. Ask them to approve or remove those first.",
                status=503,
            )
        answer = post_registration(configuration, token, tool, settings.allow_loopback)
        result = store_platform(configuration, answer, settings.trusted_issuers)
    except RegistrationError as e:
        log.warning("Dynamic registration from %r (client %s) refused: %s (%r)", where,
                    client_ip, e.reason, e.message)
        raise
    state = "active" if result.active else "waiting for approval"
    log.info("Dynamic registration from %r (client %s): platform #%s %s, %s", where, client_ip,
             result.platform.id, "updated" if result.updated else "added", state)
    return result


def count_pending() -> int:
    """How many dynamic registrations wait for an admin's approval."""
    return db.session.scalar(select(func.count()).select_from(LTIPlatform).where(
        LTIPlatform.registration_pending.is_(True), LTIPlatform.active.is_(False)))


def pending_registrations() -> list[LTIPlatform]:
    """The dynamic registrations waiting for an admin's approval, oldest first."""
    return list(db.session.scalars(select(LTIPlatform).where(
        LTIPlatform.registration_pending.is_(True), LTIPlatform.active.is_(False),
    ).order_by(LTIPlatform.created_at, LTIPlatform.id)))


def approve(platform: LTIPlatform) -> LTIPlatform:
    """An admin approves a waiting registration: it becomes active (flushed)."""
    platform.active = True
    platform.registration_pending = False
    db.session.flush()
    log.info("Approved the dynamic registration of platform %r", platform.name)
    return platform


def _reserve_attempt(client_ip: str | None) -> None:
    count = cache.cache.count(f"registration:ip:{client_ip or '?'}", ATTEMPT_WINDOW)
    if count > MAX_ATTEMPTS_PER_ADDRESS:
        raise RegistrationError(
            "rate_limited",
            f"Too many registrations from your address: wait {ATTEMPT_WINDOW // 60} minutes, "
            "then start again from your LMS.",
            status=429,
        )


def fetch_configuration(config_url: str, token: str | None,
                        allow_loopback: bool = False) -> dict[str, Any]:
    """The platform's OpenID configuration, checked: its issuer belongs to the URL it came from,
    and it names every endpoint the tool needs as an https URL."""
    if not (config_url or "").strip():
        raise RegistrationError(
            "missing_parameter",
            "The link has no openid_configuration address. Start the registration again from "
            "your LMS's administration pages.",
        )
    config_url = config_url.strip()
    configuration = _fetch(config_url, token, allow_loopback, "the platform's configuration")
    if not isinstance(configuration, dict):
        raise _malformed("The platform's configuration is not a JSON object.")
    issuer = configuration.get("issuer")
    if not isinstance(issuer, str) or not issuer.strip():
        raise _malformed("The platform's configuration names no issuer.")
    if not issuer_matches(issuer, config_url):
        raise RegistrationError(
            "issuer_mismatch",
            f"The configuration says it belongs to {issuer}, but it came from "
            f"{platforms.origin(config_url)}. The tool only registers a platform whose "
            "configuration comes from its own site.",
        )
    for name in ("issuer", *REQUIRED_ENDPOINTS):
        _check_url(configuration, name, allow_loopback)
    if configuration.get("authorization_server") is not None:
        _check_text(configuration, "authorization_server")
    algorithms = configuration.get("id_token_signing_alg_values_supported")
    if isinstance(algorithms, list) and algorithms and "RS256" not in algorithms:
        raise _malformed("The platform does not sign its messages with RS256, which LTI needs.")
    product = configuration.get(PLATFORM_CONFIGURATION)
    if product is not None and not isinstance(product, dict):
        raise _malformed(f"{PLATFORM_CONFIGURATION} in the platform's configuration is not an "
                         "object.")
    return configuration


def issuer_matches(issuer: str, config_url: str) -> bool:
    """The issuer is the configuration URL's origin, or that origin with a leading part of its
    path (a Moodle site at https://lms.example.edu/moodle). Compared as parsed scheme, host and
    port, never as a string prefix (https://lms.edu.evil.com starts with https://lms.edu)."""
    try:
        a, b = urlsplit(issuer.strip()), urlsplit(config_url)
        same_origin = (a.scheme.lower(), a.hostname, a.port) == (
            b.scheme.lower(), b.hostname, b.port
        )
    except ValueError:
        return False
    if not same_origin or a.hostname is None or a.query or a.fragment or a.username:
        return False
    path = a.path.rstrip("/")
    return not path or b.path == path or b.path.startswith(path + "/")


def client_registration(configuration: Mapping[str, Any], tool: ToolUrls) -> dict[str, Any]:
    """The tool's client registration request for this platform."""
    domain = urlsplit(tool.launch).netloc
    scopes = configuration.get("scopes_supported")
    # Canvas refuses scopes it does not know: ask NRPS only where it is offered (or unknown).
    wants_nrps = not isinstance(scopes, list) or NRPS_SCOPE in scopes
    request: dict[str, Any] = {
        "application_type": "web",
        "response_types": ["id_token"],
        "grant_types": ["implicit", "client_credentials"],
        "token_endpoint_auth_method": "private_key_jwt",
        "initiate_login_uri": tool.login,
        "redirect_uris": [tool.launch],
        "jwks_uri": tool.jwks,
        "client_name": tool.name,
        TOOL_CONFIGURATION: {
            "domain": domain,
            "target_link_uri": tool.launch,
            "description": tool.description,
            "claims": CLAIMS,
            "messages": [
                {"type": "LtiResourceLinkRequest", "target_link_uri": tool.launch,
                 "label": tool.name},
                {"type": "LtiDeepLinkingRequest", "target_link_uri": tool.launch,
                 "label": f"Add from {tool.name.lower()}",
                 "placements": ["ContentArea", "RichTextEditor"]},
            ],
        },
    }
    if wants_nrps:
        request["scope"] = NRPS_SCOPE
    return request


def post_registration(configuration: Mapping[str, Any], token: str | None, tool: ToolUrls,
                      allow_loopback: bool = False) -> dict[str, Any]:
    """POST the client registration; the platform's answer, checked to carry a client ID."""
    answer = _fetch(configuration["registration_endpoint"], token, allow_loopback,
                    "the platform's registration endpoint",
                    body=client_registration(configuration, tool))
    if not isinstance(answer, dict):
        raise _malformed("The platform's answer to the registration is not a JSON object.")
    client_id = answer.get("client_id")
    if isinstance(client_id, int) and not isinstance(client_id, bool):
        client_id = str(client_id)
    if not isinstance(client_id, str) or not client_id.strip() or len(client_id) > 255:
        raise _malformed("The platform's answer to the registration has no client ID.")
    answer["client_id"] = client_id.strip()
    deployment = deployment_id(answer)
    if deployment is not None and (not deployment or len(deployment) > 255):
        raise _malformed("The platform's answer has an unusable deployment ID.")
    return answer


def deployment_id(answer: Mapping[str, Any]) -> str | None:
    """The deployment ID of a registration answer: Moodle puts it inside the tool
    configuration, Canvas at the top level (only when it made a deployment); None if absent."""
    inner = answer.get(TOOL_CONFIGURATION)
    for source in (inner if isinstance(inner, dict) else {}, answer):
        value = source.get("deployment_id")
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str):
            return value.strip()
        if value is not None:
            return ""
    return None


def is_trusted(issuer: str, trusted: Iterable[str]) -> bool:
    """The issuer is listed by URL, or its host is listed by name."""
    host = (urlsplit(issuer).hostname or "").lower()
    for entry in trusted:
        entry = entry.strip()
        if "://" in entry:
            if entry.rstrip("/") == issuer.rstrip("/"):
                return True
        elif entry and entry.lower().rstrip(".") == host:
            return True
    return False


def store_platform(configuration: Mapping[str, Any], answer: Mapping[str, Any],
                   trusted: Iterable[str] = ()) -> Registered:
    """Add the registered platform, or update a pending one of the same issuer and client ID.

    A platform already in use (active, or switched off by an admin) is never overwritten.
    """
    issuer = configuration["issuer"]
    client_id = answer["client_id"]
    existing = db.session.scalar(select(LTIPlatform).where(
        LTIPlatform.platform_id == issuer, LTIPlatform.client_id == client_id))
    if existing is not None and not (existing.registration_pending and not existing.active):
        raise RegistrationError(
            "already_registered",
            f"This tool already has a platform for {issuer} with client ID {client_id} "
            "in use. It was left unchanged. To register again, ask the tool's administrator "
            "to remove that platform first.",
            status=409,
        )
    active = is_trusted(issuer, trusted)
    product = configuration.get(PLATFORM_CONFIGURATION) or {}
    family = _short(product.get("product_family_code"))
    deployment = deployment_id(answer)
    data: dict[str, Any] = {
        "name": existing.name if existing else _free_name(family, issuer),
        "platform_id": issuer,
        "client_id": client_id,
        "auth_login_url": configuration["authorization_endpoint"],
        "auth_token_url": configuration["token_endpoint"],
        "key_set_url": configuration["jwks_uri"],
        "auth_audience": configuration.get("authorization_server") or None,
        "deployment_ids": [*(existing.deployment_ids if existing else []),
                           *([deployment] if deployment else [])],
        "active": active,
    }
    try:
        if existing is not None:
            platform = platforms.update_platform(existing, data)
        else:
            platform = platforms.create_platform(data)
    except ValidationError as e:
        raise _malformed(
            f"The platform's {e.field.replace('_', ' ')} is unusable: {e.message}."
        ) from None
    platform.registered_by = RegisteredBy.DYNAMIC
    platform.registration_pending = not active
    platform.product_family_code = family
    platform.product_version = _short(product.get("version"))
    db.session.flush()
    return Registered(platform, active, existing is not None)


def product_name(family: str | None) -> str:
    """The LMS's name for people: Moodle, Canvas, Brightspace; "LMS" when unknown."""
    if not family:
        return "LMS"
    return PRODUCTS.get(family.lower(), family[:1].upper() + family[1:])


def _free_name(family: str | None, issuer: str) -> str:
    parts = urlsplit(issuer)
    base = f"{product_name(family)} {parts.netloc}{parts.path.rstrip('/')}"
    return platforms.free_name(base[:240])


def _fetch(url: str, token: str | None, allow_loopback: bool, what: str, body=None) -> Any:
    try:
        return fetch_json(url, method="POST" if body is not None else "GET", body=body,
                          token=token, allow_loopback=allow_loopback).data
    except FetchError as e:
        if e.reason in ("bad_url", "not_https", "port", "private_address"):
            raise RegistrationError(e.reason, f"The tool will not contact {what}. {e.message}"
                                    ) from None
        raise RegistrationError(f"fetch_{e.reason}", f"Fetching {what} failed. {e.message}",
                                status=502, detail=e.body[:300]) from None


def _check_url(configuration: Mapping[str, Any], name: str, allow_loopback: bool) -> None:
    value = _check_text(configuration, name)
    try:
        platforms.check_url(value)
    except ValueError:
        raise _malformed(f"{name} in the platform's configuration is not an https URL.") from None
    if urlsplit(value).scheme != "https" and not allow_loopback:
        raise _malformed(f"{name} in the platform's configuration is not an https URL.")


def _check_text(configuration: Mapping[str, Any], name: str) -> str:
    value = configuration.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _malformed(f"The platform's configuration has no {name}.")
    if len(value) > 1024:
        raise _malformed(f"{name} in the platform's configuration is too long.")
    return value


def _short(value: Any) -> str | None:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value).strip()[:64] or None
    return None


def _malformed(message: str) -> RegistrationError:
    return RegistrationError("malformed", message, status=502)


def _loggable(url: str) -> str:
    """The URL without its query and fragment (Brightspace carries its token in the query)."""
    try:
        parts = urlsplit((url or "").strip())
    except ValueError:
        return "an unparsable URL"
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else "no URL"
