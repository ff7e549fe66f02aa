"""Platform public keys: the cached JWKS, refreshed (within limits) when an unknown kid arrives."""

import hashlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests
from flask import current_app
from sqlalchemy import update

from ..errors import LaunchError
from ..extensions import cache, db
from ..models import LTIPlatform
from . import platform_memory

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 512 * 1024
# Unknown kids make the tool fetch a platform's keyset, but never twice within this many
# seconds, and at most MAX_REFRESHES times per REFRESH_WINDOW seconds (one kid: once per
# JWKS_REFRESH_INTERVAL, a setting).
MIN_REFRESH_GAP = 2
REFRESH_WINDOW = 60
MAX_REFRESHES = 4
# The time the limits above are measured with; tests put a controllable clock here.
clock: Callable[[], float] = time.time


class JWKSFetchError(Exception):
    """The platform's keyset could not be fetched or read; the message says exactly why."""


def fetch_jwks(url: str, timeout: float = 5) -> dict[str, Any]:
    """GET a JWKS with a timeout, no redirects and a size cap; it must hold an RSA key."""
    try:
        with requests.get(
            url,
            timeout=timeout,
            allow_redirects=False,
            stream=True,
            headers={"Accept": "application/json", "User-Agent": "lti-tool"},
        ) as response:
            if response.status_code != 200:
                raise JWKSFetchError(f"{url} answered HTTP {response.status_code}")
            body = response.raw.read(MAX_JWKS_BYTES + 1, decode_content=True)
    except requests.Timeout:
        raise JWKSFetchError(f"{url} did not answer within {timeout:g} s") from None
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
    key_set = fetch_jwks(platform.key_set_url, current_app.config["JWKS_FETCH_TIMEOUT"])
    now = datetime.now(UTC)
    with db.engine.begin() as conn:
        conn.execute(
            update(LTIPlatform)
            .where(LTIPlatform.id == platform.id)
            .values(key_set=key_set, key_set_updated=now)
        )
    # Keep the session's copy in step without marking the row dirty.
    db.session.expire(platform, ["key_set", "key_set_updated"])
    platform_memory.platforms_changed()  # a Core write: the ORM's events did not see it
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


def _stored_key_set(platform: LTIPlatform) -> dict[str, Any] | None:
    """The keyset as stored now, which another worker may just have refreshed."""
    db.session.refresh(platform, ["key_set", "key_set_updated"])
    return platform.key_set


def platform_key(platform: LTIPlatform, kid: str) -> dict[str, Any]:
    """The platform's public key `kid` as a JWK, from the cache when it is there.

    On a miss, one worker refreshes the keyset while launches arriving meanwhile in any worker
    wait for its result, so a key rotation at the platform (or its very first launch) does not
    fail a lecture hall of launches. How often a miss may fetch is limited per platform (see
    `refresh_refusal`). Raises LaunchError `unknown_kid` or `jwks_unavailable`.
    """
    key = _find(platform.key_set, kid)
    if key is not None:
        return key
    refreshing_key = f"jwks-refreshing:{platform.id}"
    timeout = current_app.config["JWKS_FETCH_TIMEOUT"]
    if cache.add(refreshing_key, 1, timeout=timeout + 2):
        try:
            return _refresh_and_find(platform, kid)
        finally:
            cache.delete(refreshing_key)
    deadline = time.monotonic() + timeout + 1
    while cache.get(refreshing_key) and time.monotonic() < deadline:
        time.sleep(0.05)
    key = _find(_stored_key_set(platform), kid)
    if key is not None:
        return key
    if platform.key_set is None:
        raise LaunchError(
            "jwks_unavailable",
            "The platform's keyset could not be fetched by the launch that tried just now.",
            detail="a fetch failed moments ago.",
        )
    raise _unknown_kid(platform, kid)


def _unknown_kid(platform: LTIPlatform, kid: str) -> LaunchError:
    return LaunchError(
        "unknown_kid",
        f"The platform signed with key {kid!r}, which is not in its keyset "
        f"{platform.key_set_url} even after a refresh.",
        kid=kid,
    )


def refresh_refusal(platform_id: int, kid: str, interval: int, now: float) -> str | None:
    """Why a miss of `kid` may not fetch the platform's keyset now, or None if it may.

    Each kid may fetch once per `interval` (JWKS_REFRESH_INTERVAL), so a platform that
    rotates twice in a row is looked up each time; any fetch waits MIN_REFRESH_GAP seconds
    after the previous one, and at most MAX_REFRESHES happen in REFRESH_WINDOW seconds: the
    limit made-up kids run into. Called by the one worker holding the platform's refresh lock.
    """
    missed = cache.get(_kid_key(platform_id, kid))
    if missed is not None and now - missed < interval:
        return f"that key was looked up {now - missed:.0f} s ago (once per {interval} s per key)"
    fetches = _recent_fetches(platform_id, now)
    if fetches and now - fetches[-1] < MIN_REFRESH_GAP:
        return f"the keyset was fetched less than {MIN_REFRESH_GAP} s ago"
    if len(fetches) >= MAX_REFRESHES:
        return f"the keyset was fetched {MAX_REFRESHES} times in the last {REFRESH_WINDOW} s"
    return None


def _kid_key(platform_id: int, kid: str) -> str:
    return f"jwks-kid:{platform_id}:{hashlib.sha256(kid.encode()).hexdigest()[:32]}"


def _recent_fetches(platform_id: int, now: float) -> list[float]:
    times = cache.get(f"jwks-fetches:{platform_id}") or []
    return [t for t in times if now - t < REFRESH_WINDOW]


def _refresh_and_find(platform: LTIPlatform, kid: str) -> dict[str, Any]:
    key = _find(_stored_key_set(platform), kid)
    if key is not None:  # another worker refreshed it a moment ago
        return key
    interval = current_app.config["JWKS_REFRESH_INTERVAL"]
    now = clock()
    if reason := refresh_refusal(platform.id, kid, interval, now):
        raise LaunchError(
            "unknown_kid" if platform.key_set else "jwks_unavailable",
            f"The platform signed with key {kid!r}, which is not in its keyset; it is not "
            f"fetched again yet: {reason}.",
            kid=kid,
            detail=f"not fetched again yet: {reason}.",
        )
    cache.set(
        f"jwks-fetches:{platform.id}", [*_recent_fetches(platform.id, now), now],
        timeout=REFRESH_WINDOW,
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
        cache.set(_kid_key(platform.id, kid), now, timeout=interval)
        raise _unknown_kid(platform, kid)
    return key
