"""Claim names, and the sanitized copy of a launch's claims kept in the launch log."""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
MESSAGE_TYPE = LTI + "message_type"
VERSION = LTI + "version"
DEPLOYMENT_ID = LTI + "deployment_id"
ROLES = LTI + "roles"
CONTEXT = LTI + "context"
RESOURCE_LINK = LTI + "resource_link"
TARGET_LINK_URI = LTI + "target_link_uri"
CUSTOM = LTI + "custom"
LAUNCH_PRESENTATION = LTI + "launch_presentation"
TOOL_PLATFORM = LTI + "tool_platform"
EXT = LTI + "ext"
LIS = LTI + "lis"
DL_SETTINGS = "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"
NRPS = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
AGS = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"

RESOURCE_LINK_REQUEST = "LtiResourceLinkRequest"
DEEP_LINKING_REQUEST = "LtiDeepLinkingRequest"

KEEP = ("iss", "aud", "azp", "sub", "iat", "exp", "nbf", DEPLOYMENT_ID, MESSAGE_TYPE, VERSION,
        TARGET_LINK_URI, ROLES)
# What a later request reads from a deep-linking launch (the picker and its signed answer).
LATER = ("iss", "aud", "azp", DEPLOYMENT_ID, MESSAGE_TYPE)
DL_LATER = ("deep_link_return_url", "accept_types", "accept_multiple",
            "accept_presentation_document_targets", "data")
MAX_VALUE = 200
MAX_JSON = 16_000


def client_id(claims: dict[str, Any]) -> Any:
    """The client ID a token names: its azp, else its (first) audience; None when absent.

    Not checked here: the caller decides what a non-string means.
    """
    aud = claims.get("aud")
    return claims.get("azp") or (aud[0] if isinstance(aud, list) and aud else aud)


def kept_for_later(claims: dict[str, Any]) -> dict[str, Any]:
    """The part of a deep-linking launch the picker needs later, for the launch-data cache.

    No names, emails, usernames or launch_presentation return URL (Moodle's carries its
    sesskey): only issuer, audience, deployment, message type, the course id and the
    deep-linking settings the answer must echo (its return URL exactly as sent, and `data`).
    """
    out = {k: claims[k] for k in LATER if k in claims}
    if isinstance(context := claims.get(CONTEXT), dict) and "id" in context:
        out[CONTEXT] = {"id": context["id"]}
    if isinstance(settings := claims.get(DL_SETTINGS), dict):
        out[DL_SETTINGS] = {k: settings[k] for k in DL_LATER if k in settings}
    return out


def _text(value: Any) -> Any:
    """Cap a string's length and strip control characters (log injection)."""
    if not isinstance(value, str):
        return value
    if not value.isprintable():  # most values are: no copy character by character
        value = "".join(c if c.isprintable() else " " for c in value)
    return value if len(value) <= MAX_VALUE else value[:MAX_VALUE] + "…"


def _mask_email(value: Any) -> str:
    if not isinstance(value, str) or "@" not in value:
        return "***"
    local, _, domain = value.partition("@")
    return f"{local[:1]}***@{_text(domain)}"


def _initials(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        return ""
    return " ".join(part[0] + "." for part in value.split())


def _without_query(url: Any) -> Any:
    """Drop query and fragment: Moodle's return URLs carry its sesskey."""
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _pick(value: Any, keys: tuple[str, ...]) -> dict | None:
    if not isinstance(value, dict):
        return None
    return {k: _text(value[k]) for k in keys if k in value}


def sanitize(claims: dict[str, Any] | None) -> dict[str, Any]:
    """The claims support staff need, with personal data masked and tokens and secrets dropped.

    Kept: issuer, audience, subject, times, deployment, message type, version, target, roles,
    context, resource link, tool platform, presentation, custom (keys, short values).
    Masked: email, names, username. Dropped: query strings of return URLs (sesskey), the
    nonce (a short hash stays), pictures and unknown claims (their names stay).
    """
    if not isinstance(claims, dict):
        return {}
    out: dict[str, Any] = {}
    for key in KEEP:
        if key in claims:
            value = claims[key]
            out[key] = [_text(v) for v in value] if isinstance(value, list) else _text(value)
    if isinstance(claims.get("nonce"), str):
        out["nonce_sha256"] = hashlib.sha256(claims["nonce"].encode()).hexdigest()[:12]
    if "email" in claims:
        out["email"] = _mask_email(claims["email"])
    for name in ("name", "given_name", "family_name"):
        if name in claims:
            out[name] = _initials(claims[name])
    simple = {
        CONTEXT: ("id", "label", "title", "type"),
        RESOURCE_LINK: ("id", "title"),
        TOOL_PLATFORM: ("product_family_code", "family_code", "version", "name", "guid"),
    }
    for key, fields in simple.items():
        if (picked := _pick(claims.get(key), fields)) is not None:
            out[key] = picked
    if isinstance(presentation := claims.get(LAUNCH_PRESENTATION), dict):
        out[LAUNCH_PRESENTATION] = _pick(presentation, ("document_target", "locale")) | (
            {"return_url": _without_query(presentation["return_url"])}
            if "return_url" in presentation else {}
        )
    if isinstance(settings := claims.get(DL_SETTINGS), dict):
        kept = _pick(settings, ("accept_types", "accept_presentation_document_targets",
                                "accept_multiple", "auto_create", "title"))
        kept["deep_link_return_url"] = _without_query(settings.get("deep_link_return_url"))
        kept["data_present"] = "data" in settings
        out[DL_SETTINGS] = kept
    if isinstance(custom := claims.get(CUSTOM), dict):
        out[CUSTOM] = {_text(str(k)): _text(v) for k, v in list(custom.items())[:50]}
    if isinstance(ext := claims.get(EXT), dict) and "user_username" in ext:
        out[EXT] = {"user_username": _initials(ext["user_username"]) or "***"}
    for key in (NRPS, AGS):
        if isinstance(claims.get(key), dict):
            out[key] = {"present": True}
    dropped = sorted(k for k in claims if k not in out and k not in (
        "nonce", "email", "name", "given_name", "family_name", EXT, "picture"))
    if dropped:
        out["other_claims"] = [_text(k) for k in dropped[:50]]
    if len(json.dumps(out, default=str)) > MAX_JSON:
        out = {k: out[k] for k in KEEP if k in out} | {"truncated": True}
    return out
