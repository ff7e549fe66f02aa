"""Platform public keys: the cached JWKS, one rate-limited refresh when an unknown kid arrives."""

import json
import logging
from datetime import UTC, datetime
from typing import Any

import requests
from flask import current_app
from sqlalchemy import update

from ..errors import LaunchError
from ..extensions import cache, db
from ..models import LTIPlatform

log = logging.getLogger(__name__)

FETCH_TIMEOUT = (3.05, 5)  # connect, read (seconds)
MAX_JWKS_BYTES = 512 * 1024
REFRESH_INTERVAL = 30  # seconds between two refreshes of one platform's keys


class JWKSFetchError(Exception):
    """The platform's keyset could not be fetched or read; the message says exactly why."""


def fetch_jwks(url: str) -> dict[str, Any]:
    """GET a JWKS with timeouts, no redirects and a size cap; it must hold at least one RSA key."""
    try:
        with requests.get(
            url,
            timeout=FETCH_TIMEOUT,
            allow_redirects=False,
            stream=True,
            headers={"Accept": "application/json", "User-Agent": "lti-tool"},
        ) as response:
            if response.status_code != 200:
                raise JWKSFetchError(f"{url} answered HTTP {response.status_code}")
            body = response.raw.read(MAX_JWKS_BYTES + 1, decode_content=True)
    except requests.Timeout:
        raise JWKSFetchError(f"{url} did not answer within {FETCH_TIMEOUT[1]} s") from None
    except requests.RequestException as e:
        raise JWKSFetchError(f"{url} could not be reached ({type(e).__name__})") from None
    if len(body) > MAX_JWKS_BYTES:
        raise JWKSFetchError(f"{url} sent more than {MAX_JWKS_BYTES // 1024} KiB")
    try:
        data = json.loads(body)
    except ValueError:
        raise JWKSFetchError(f"{url} did not return JSON") from None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list):
        raise JWKSFetchError(f"{url} returned JSON without a 'keys' list")
    rsa = [k for k in keys if isinstance(k, dict) and k.get("kty") == "RSA" and k.get("n")]
    if not rsa:
        raise JWKSFetchError(f"{url} holds no RSA keys")
    return {"keys": rsa}


def refresh_platform_keys(platform: LTIPlatform) -> dict[str, Any]:
    """Fetch and store the platform's JWKS now, in its own transaction.

    It is kept even if the launch that asked for it fails. On error the old cache stays.
    """
    key_set = fetch_jwks(platform.key_set_url)
    now = datetime.now(UTC)
    with db.engine.begin() as conn:
        conn.execute(
            update(LTIPlatform)
            .where(LTIPlatform.id == platform.id)
            .values(key_set=key_set, key_set_updated=now)
        )
    # Keep the session's copy in step without marking the row dirty.
    db.session.expire(platform, ["key_set", "key_set_updated"])
    log.info(
        "Fetched keys of platform %r: %s",
        platform.name, ", ".join(str(k.get("kid")) for k in key_set["keys"]),
    )
    return key_set


def _find(key_set: dict[str, Any] | None, kid: str) -> dict[str, Any] | None:
    for key in (key_set or {}).get("keys", []):
        if isinstance(key, dict) and key.get("kid") == kid:
            return key
    return None


def platform_key(platform: LTIPlatform, kid: str) -> dict[str, Any]:
    """The platform's public key `kid` as a JWK, from the cache when it is there.

    A kid not in the cache triggers one refresh, at most every REFRESH_INTERVAL seconds per
    platform across all workers (the limit an attacker's made-up kids run into). Raises
    LaunchError `unknown_kid` or `jwks_unavailable`.
    """
    key = _find(platform.key_set, kid)
    if key is not None:
        return key
    if not _may_refresh(platform):
        if platform.key_set is None:
            raise LaunchError(
                "jwks_unavailable",
                "The platform's keyset is not cached yet and was tried seconds ago.",
                detail="the last attempt failed seconds ago.",
            )
        raise LaunchError(
            "unknown_kid",
            f"The platform signed with key {kid!r}, which is not in its keyset; the keyset was "
            f"refreshed less than {REFRESH_INTERVAL} s ago.",
        )
    try:
        key_set = refresh_platform_keys(platform)
    except JWKSFetchError as e:
        log.warning("Keyset of platform %r unavailable: %s", platform.name, e)
        raise LaunchError(
            "jwks_unavailable", f"The platform's keyset is unavailable: {e}", detail=f"{e}."
        ) from None
    key = _find(key_set, kid)
    if key is None:
        raise LaunchError(
            "unknown_kid",
            f"The platform signed with key {kid!r}, which is not in its keyset "
            f"{platform.key_set_url} even after a refresh.",
        )
    return key


def _may_refresh(platform: LTIPlatform) -> bool:
    """One refresh per interval for kid misses; a platform with no cached keys yet (its first
    launch) is fetched at most every few seconds, so a failing first fetch is retried soon."""
    if platform.key_set is None:
        return bool(cache.add(f"jwks-first-fetch:{platform.id}", 1, timeout=5))
    interval = current_app.config.get("JWKS_REFRESH_INTERVAL", REFRESH_INTERVAL)
    return bool(cache.add(f"jwks-refresh:{platform.id}", 1, timeout=interval))
