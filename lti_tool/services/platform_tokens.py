"""Calling platform services: OAuth 2 access tokens (client credentials) and Bearer GETs."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable

import jwt
import requests
import urllib3.exceptions

from ..extensions import cache
from ..models import LTIPlatform
from . import keys

log = logging.getLogger(__name__)

NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
DEPLOYMENT_ID = "https://purl.imsglobal.org/spec/lti/claim/deployment_id"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 300  # seconds
BACKDATE = 5  # seconds: Moodle checks iat with no leeway
TOKEN_TIMEOUT = (5, 15)  # seconds: connect, read
MAX_TOKEN_BYTES = 64 * 1024
MAX_SERVICE_BYTES = 4 * 1024 * 1024
# A cached token is dropped this long before it runs out: the larger of MIN_MARGIN seconds and
# MARGIN_SHARE of its lifetime, but never more than half of it (a platform that grants 60 s
# tokens would otherwise be asked for a new one before every request).
MIN_MARGIN = 60
MARGIN_SHARE = 0.1
# How long other workers wait for the one fetching a token before fetching one themselves.
LOCK_WAIT = TOKEN_TIMEOUT[0] + TOKEN_TIMEOUT[1] + 2
# Requests that can never succeed as configured: not worth retrying.
BAD_URL = (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
           requests.exceptions.InvalidURL)
# The time token expiry is measured with; tests put a controllable clock here.
clock: Callable[[], float] = time.time

# What to switch on at the platform when it refuses a scope, named as each platform names it.
SCOPE_SETTINGS = {
    NRPS_SCOPE: (
        "let the tool use Names and Roles on the platform: in Moodle set the tool's "
        '"IMS LTI Names and Role Provisioning" to "Use this service to retrieve members\' '
        'information as per privacy settings"; in Canvas enable the Names and Roles scope '
        '("Can retrieve user data associated with the context the tool is installed in") on '
        "the tool's developer key; in Brightspace tick \"Names and Role Provisioning Services\" "
        "in the tool's registration"
    ),
}


class ServiceError(Exception):
    """A platform service could not be used.

    `reason` is a sentence for admins and course managers naming what to fix (the platform
    setting, when it is one); `status` the HTTP status when there was an answer; `transient`
    whether trying again later may succeed (outages, timeouts, rate limits).
    """

    def __init__(self, reason: str, *, status: int | None = None, transient: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.transient = transient


def _enable_hint(scopes: tuple[str, ...]) -> str:
    hints = [SCOPE_SETTINGS[s] for s in scopes if s in SCOPE_SETTINGS]
    return "; ".join(hints) or "enable the service for this tool on the platform"


def _audience(platform: LTIPlatform) -> str:
    return platform.auth_audience or platform.auth_token_url


def client_assertion(platform: LTIPlatform) -> str:
    """The JWT that proves the tool's identity at the platform's token URL, signed with the
    tool's current key (kid in the header); `iss` and `sub` are the client ID."""
    key = keys.ensure_current_key()
    now = int(time.time()) - BACKDATE
    claims = {
        "iss": platform.client_id,
        "sub": platform.client_id,
        "aud": _audience(platform),
        "iat": now,
        "exp": now + ASSERTION_LIFETIME,
        "jti": secrets.token_urlsafe(24),
    }
    if len(platform.deployment_ids or []) == 1:
        claims[DEPLOYMENT_ID] = platform.deployment_ids[0]
    return jwt.encode(claims, keys.private_key_pem(key), algorithm="RS256",
                      headers={"kid": key.kid, "typ": "JWT"})


def _cache_key(platform: LTIPlatform, scopes: tuple[str, ...]) -> str:
    # The client ID and token URL are part of the key: a token of the registration before an
    # edit is not used for the edited one.
    identity = "\0".join([platform.client_id, platform.auth_token_url, *sorted(set(scopes))])
    return f"platform-token:{platform.id}:{hashlib.sha256(identity.encode()).hexdigest()[:32]}"


def _margin(lifetime: float) -> float:
    return min(max(MIN_MARGIN, lifetime * MARGIN_SHARE), lifetime / 2)


def _cached(key: str) -> str | None:
    entry = cache.get(key)
    if isinstance(entry, dict) and entry.get("until", 0) > clock():
        return entry["token"]
    return None


def access_token(platform: LTIPlatform, scopes: tuple[str, ...]) -> str:
    """A Bearer token for `scopes` at `platform`, from the shared cache while it is fresh.

    One worker fetches at a time (a short lock in the cache); the others wait for its token,
    and fetch one themselves only when it takes too long. Raises ServiceError.
    """
    key = _cache_key(platform, scopes)
    token = _cached(key)
    if token is not None:
        return token
    lock = key + ":fetching"
    deadline = time.monotonic() + LOCK_WAIT
    while not cache.add(lock, 1, timeout=LOCK_WAIT + 1):
        time.sleep(0.05)
        token = _cached(key)
        if token is not None:
            return token
        if time.monotonic() > deadline:
            return _fetch_token(platform, scopes, key)
    try:
        # Another worker may have stored one between our look and taking the lock.
        return _cached(key) or _fetch_token(platform, scopes, key)
    finally:
        cache.delete(lock)


def forget_token(platform: LTIPlatform, scopes: tuple[str, ...]) -> None:
    """Drop the cached token (the service refused it): the next call fetches a new one."""
    cache.delete(_cache_key(platform, scopes))


def _fetch_token(platform: LTIPlatform, scopes: tuple[str, ...], key: str) -> str:
    asked = " ".join(sorted(set(scopes)))
    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion(platform),
        "scope": asked,
    }
    url = platform.auth_token_url
    try:
        with requests.post(url, data=data, timeout=TOKEN_TIMEOUT, allow_redirects=False,
                           stream=True, headers={"Accept": "application/json",
                                                 "User-Agent": "lti-tool"}) as response:
            status = response.status_code
            body = _read_capped(response, MAX_TOKEN_BYTES, platform, "access token URL")
    except BAD_URL:
        raise ServiceError(f"{platform.name}'s access token URL ({url!r}) is not a web "
                           "address the tool can call: check it in the platform's settings "
                           "here.") from None
    except (requests.Timeout, urllib3.exceptions.TimeoutError):
        raise _unreachable(platform, "access token URL", "did not answer in time") from None
    except (requests.RequestException, urllib3.exceptions.HTTPError) as e:
        raise _unreachable(platform, "access token URL", f"could not be reached "
                           f"({type(e).__name__})") from None
    try:
        reply = json.loads(body)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        reply = {}
    if status != 200:
        raise _token_refusal(platform, scopes, status, reply)
    token = reply.get("access_token")
    if not isinstance(token, str) or not token:
        log.warning("Token reply of platform %r holds no access_token (%d bytes)",
                    platform.name, len(body))
        raise ServiceError(
            f"{platform.name}'s access token URL ({url}) did not answer with an access token: "
            "check the Access token URL in the platform's settings here.", status=status)
    granted = reply.get("scope")
    if isinstance(granted, str) and granted.strip():
        missing = set(scopes) - set(granted.split())
        if missing:
            raise ServiceError(
                f"{platform.name} granted an access token without the scope it was asked for: "
                f"{_enable_hint(tuple(missing))}.", status=status)
    try:
        lifetime = float(reply.get("expires_in") or 3600)
    except (TypeError, ValueError):
        lifetime = 3600.0
    keep = lifetime - _margin(lifetime)
    if keep > 0:
        cache.set(key, {"token": token, "until": clock() + keep}, timeout=int(keep) + 1)
    log.info("Got an access token from platform %r for %s (valid %d s)",
             platform.name, asked, lifetime)
    return token


def _token_refusal(platform: LTIPlatform, scopes: tuple[str, ...], status: int,
                   reply: dict) -> ServiceError:
    error = reply.get("error") if isinstance(reply.get("error"), str) else ""
    log.warning("Platform %r refused an access token: HTTP %d %s (fields sent: grant_type, "
                "client_assertion_type, client_assertion, scope)", platform.name, status,
                error[:60])
    name = platform.name
    if status >= 500 or status == 429:
        return ServiceError(f"{name}'s access token URL answered HTTP {status}; "
                            "the platform may be down: try again later.",
                            status=status, transient=True)
    if error == "invalid_scope":
        return ServiceError(f"{name} does not let this tool use the service it asked for: "
                            f"{_enable_hint(scopes)}.", status=status)
    if error in ("invalid_client", "unauthorized_client"):
        return ServiceError(
            f"{name} did not accept the tool's signed token request ({error}): check that the "
            f"Client ID here ({platform.client_id}) is the one the platform shows for the tool, "
            "and that the platform reads the tool's current public keyset (/lti/jwks).",
            status=status)
    if status in (401, 403):
        audience = (f"OAuth 2 audience ({platform.auth_audience})" if platform.auth_audience
                    else f"OAuth 2 audience (empty: the token URL {platform.auth_token_url})")
        return ServiceError(
            f"{name} refused the tool's token request (HTTP {status}): check that the Client ID "
            f"({platform.client_id}) and the {audience} are what the platform expects, that "
            f"its clock is right, and {_enable_hint(scopes)}.", status=status)
    if status in (301, 302, 303, 307, 308):
        return ServiceError(f"{name}'s access token URL ({platform.auth_token_url}) redirects: "
                            "enter the URL it redirects to in the platform's settings here.",
                            status=status)
    return ServiceError(
        f"{name} refused the tool's token request (HTTP {status} {error or 'no error code'}).",
        status=status)


def _unreachable(platform: LTIPlatform, what: str, how: str) -> ServiceError:
    log.warning("Platform %r: %s %s", platform.name, what, how)
    return ServiceError(f"{platform.name}'s {what} {how}; try again later.", transient=True)


def _read_capped(response: requests.Response, max_bytes: int, platform: LTIPlatform,
                 what: str) -> bytes:
    """The body, refused when it is larger than `max_bytes`."""
    length = response.headers.get("Content-Length", "")
    body = b""
    if not (length.isdigit() and int(length) > max_bytes):
        body = response.raw.read(max_bytes + 1, decode_content=True)
    if len(body) > max_bytes or (length.isdigit() and int(length) > max_bytes):
        log.warning("Platform %r: %s sent more than %d bytes", platform.name, what, max_bytes)
        raise ServiceError(f"{platform.name}'s {what} sent more than {max_bytes // 1024} KiB; "
                           "the tool does not read answers that large.",
                           status=response.status_code)
    return body


def service_get(platform: LTIPlatform, url: str, scopes: tuple[str, ...], accept: str, *,
                timeout: tuple[float, float] = (5, 30),
                max_bytes: int = MAX_SERVICE_BYTES) -> requests.Response:
    """GET a platform service with a Bearer token for `scopes` and exactly `accept`.

    The body is read (at most `max_bytes`) before the response is returned. A 401 drops the
    token and retries once with a new one. Redirects are not followed. Raises ServiceError for
    refusals (401, 403, 404 and other 4xx: not transient), rate limits, server errors,
    timeouts and unreachable hosts (transient).
    """
    for attempt in (1, 2):
        token = access_token(platform, scopes)
        try:
            with requests.get(url, timeout=timeout, allow_redirects=False, stream=True,
                              headers={"Authorization": f"Bearer {token}", "Accept": accept,
                                       "User-Agent": "lti-tool"}) as response:
                if response.status_code == 401 and attempt == 1:
                    log.info("Platform %r refused a cached token at its service; "
                             "fetching a new one", platform.name)
                    forget_token(platform, scopes)
                    continue
                if 200 <= response.status_code < 300:
                    response._content = _read_capped(response, max_bytes, platform,
                                                     "service")
                    return response
                raise _service_refusal(platform, scopes, response.status_code)
        except BAD_URL:
            raise ServiceError(f"{platform.name}'s service URL ({url!r}) is not a web address "
                               "the tool can call.") from None
        except (requests.Timeout, urllib3.exceptions.TimeoutError):
            raise _unreachable(platform, "service", "did not answer in time") from None
        except (requests.RequestException, urllib3.exceptions.HTTPError) as e:
            raise _unreachable(platform, "service", f"could not be reached "
                               f"({type(e).__name__})") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _service_refusal(platform: LTIPlatform, scopes: tuple[str, ...],
                     status: int) -> ServiceError:
    log.warning("Platform %r: service answered HTTP %d", platform.name, status)
    name = platform.name
    if status == 429 or status >= 500:
        return ServiceError(f"{name}'s service answered HTTP {status}; the platform is busy "
                            "or down: try again later.", status=status, transient=True)
    if status in (401, 403):
        return ServiceError(f"{name} refused the tool access to the service (HTTP {status}): "
                            f"{_enable_hint(scopes)}.", status=status)
    if status == 404:
        return ServiceError(f"{name} answered 404 (not found): the course is gone or the tool "
                            "is no longer in it.", status=status)
    if 300 <= status < 400:
        return ServiceError(f"{name}'s service redirected the tool elsewhere (HTTP {status}); "
                            "the tool does not follow service redirects.", status=status)
    return ServiceError(f"{name}'s service refused the tool's request (HTTP {status}).",
                        status=status)
