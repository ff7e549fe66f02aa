"""The launch doctor: one fixed list of failure categories, each with its status and its fix."""

from __future__ import annotations

import json
from dataclasses import dataclass
from string import Formatter
from urllib.parse import urlsplit

from ..models import LTIPlatform
from .message_launch import LEEWAY

MOODLE_TOOL_FORM = (
    "Moodle's External tool configuration (Site administration > Plugins > Activity modules > "
    "External tool > Manage tools > the tool's settings)"
)
# Shown under a refusal that was captured into the admin's platform inbox (services/inbox.py).
TOLD = ("The media tool's administrator has been told and can connect your LMS from the tool's "
        "dashboard.")


@dataclass(frozen=True)
class Diagnosis:
    status: int
    title: str
    learner: str
    fix: str


# Fix texts name the setting to change and where. `{platform}` is the platform's name in the
# tool; other fields come from the failure's details and fall back to "?".
CATEGORIES: dict[str, Diagnosis] = {
    "platform_error": Diagnosis(
        400, "Your LMS did not let the media tool sign you in",
        "Your LMS did not let the tool sign you in. Close this and open the activity again.",
        "The LMS answered the login with '{error}' ({description}). access_denied usually means "
        "the browser is signed in to the LMS as another user; unauthorized_client or "
        "invalid_request: check 'Initiate login URL' and 'Redirection URI(s)' in {moodle_form}.",
    ),
    "malformed_token": Diagnosis(
        400, "The media tool could not read this link",
        "The tool received a request it cannot read. Open the activity again from your course.",
        "The request carried no valid id_token: {detail} Check that 'LTI version' is 'LTI 1.3' "
        "and 'Redirection URI(s)' is {launch_url} in {moodle_form}.",
    ),
    "state_missing": Diagnosis(
        400, "Your browser blocked the tool's cookie",
        "Your browser did not keep the tool's cookie, often because third-party cookies are "
        "blocked. Open the tool in a new window, or allow cookies for this site.",
        "The launch came back without the login's state cookie ({detail}). Usually third-party "
        "cookies are blocked in the iframe: set 'Default launch container' to 'New window' in "
        "{moodle_form}, or check TRUSTED_PROXIES so the tool sees https.",
    ),
    "launch_rejected": Diagnosis(
        400, "The media tool could not open",
        "The tool could not open this link. Open the activity again from your course; if "
        "it happens again, tell your teacher or administrator.",
        "PyLTI1p3 refused the launch after the tool's own checks passed: {detail} If it names "
        "a cookie, the browser dropped one of the tool's cookies between login and launch "
        "(open the tool in a new window); otherwise report this message with the reference.",
    ),
    "state_mismatch": Diagnosis(
        400, "This page came from an earlier visit",
        "This page came from an earlier visit to the tool. Open the activity again from your "
        "course.",
        "The state posted back does not match the one this browser was given ({detail}).",
    ),
    "unknown_platform": Diagnosis(
        403, "This LMS is not set up for the media tool yet",
        "Your LMS is not connected to the media tool yet. Your teacher or the LMS "
        "administrator can fix this.",
        "No platform is registered for issuer {iss} and client ID {client_id}: add it in the "
        "tool's admin (Platforms > Add) with 'Platform ID' and 'Client ID' from Moodle's "
        "'Tool configuration details'.",
    ),
    "platform_inactive": Diagnosis(
        403, "The media tool is switched off for this LMS",
        "The media tool is switched off for this LMS.",
        "Platform '{platform}' is inactive: activate it in the tool's admin (Platforms > "
        "{platform} > Activate).",
    ),
    "registration_pending": Diagnosis(
        403, "The media tool is waiting for approval for this LMS",
        "This LMS registered with the media tool, and the registration is waiting for approval "
        "in the tool's dashboard. Try again once the tool's administrator has approved it.",
        "Platform '{platform}' registered itself (LTI Dynamic Registration) and is waiting for "
        "approval in the tool's dashboard: approve it there (Inbox > Approve), or list its "
        "issuer in REGISTRATION_TRUSTED_ISSUERS for future registrations.",
    ),
    "missing_kid": Diagnosis(
        401, "The media tool could not check where this link came from",
        "The tool could not check that this link came from your LMS.",
        "The id_token header has no key ID (kid). LTI 1.3 platforms must send one; check the "
        "LMS version or report it to its vendor.",
    ),
    "unknown_kid": Diagnosis(
        401, "The media tool could not check where this link came from",
        "The tool could not check that this link came from your LMS.",
        "Platform '{platform}' signed with key {kid}, which is not at {key_set_url}: check its "
        "'Public keyset URL' in the tool (Moodle: 'Public keyset URL' in 'Tool configuration "
        "details', ending in /mod/lti/certs.php).",
    ),
    "jwks_unavailable": Diagnosis(
        502, "The media tool could not reach your LMS",
        "The tool could not reach your LMS to check this link. Try again in a minute.",
        "Fetching {key_set_url} failed: {detail} Check the platform's 'Public keyset URL' and "
        "that the tool's server can reach the LMS.",
    ),
    "bad_algorithm": Diagnosis(
        401, "The media tool could not check where this link came from",
        "The tool could not check that this link came from your LMS.",
        "The id_token is signed with {alg}; LTI 1.3 requires RS256.",
    ),
    "bad_signature": Diagnosis(
        401, "The media tool could not check where this link came from",
        "The tool could not check that this link came from your LMS.",
        "The signature does not verify with key {kid} of platform '{platform}': its 'Public "
        "keyset URL' may belong to another site. Compare it with Moodle's 'Public keyset URL'.",
    ),
    "expired": Diagnosis(
        401, "The link took too long to open",
        "Opening the tool took too long. Open the activity again from your course.",
        "The id_token expired {seconds} s before it arrived ({leeway} s leeway allowed). If this "
        "repeats, synchronise the clocks of the LMS and tool servers (NTP).",
    ),
    "clock_skew": Diagnosis(
        401, "The clocks of the LMS and the media tool disagree",
        "The tool could not open this link because of a server clock problem.",
        "The id_token was issued {seconds} s in the future by the tool's clock ({leeway} s "
        "leeway allowed): synchronise the clocks of the LMS and tool servers (NTP).",
    ),
    "wrong_audience": Diagnosis(
        401, "This link was meant for another tool",
        "The tool could not open this link.",
        "The token's audience {aud} (azp {azp}) does not match client ID {client_id} of "
        "platform '{platform}': copy 'Client ID' from Moodle's 'Tool configuration details'.",
    ),
    "nonce_replay": Diagnosis(
        401, "This link was already used",
        "This link was already used (page refreshed or back button). Open the activity "
        "again from your course.",
        "The same id_token was posted twice; each launch is accepted once.",
    ),
    "nonce_mismatch": Diagnosis(
        401, "This page does not match your sign-in",
        "Open the activity again from your course.",
        "The id_token's nonce is not the one the tool issued for this login ({detail}).",
    ),
    "unknown_deployment": Diagnosis(
        403, "This course's LMS is not set up for the media tool yet",
        "This course's link to the media tool is not approved yet. Your teacher or the LMS "
        "administrator can fix this.",
        "Deployment ID {deployment_id} is not allowed for platform '{platform}': add it in the "
        "tool's admin (Platforms > {platform} > Edit > Deployment IDs). Moodle shows it as "
        "'Deployment ID' under the tool's 'View configuration details'.",
    ),
    "missing_claim": Diagnosis(
        400, "Your LMS did not send everything the media tool needs",
        "The LMS did not send everything the tool needs.",
        "The id_token has no {claim}. Check that 'LTI version' is 'LTI 1.3' in {moodle_form}.",
    ),
    "invalid_claim": Diagnosis(
        400, "Your LMS sent something the media tool cannot use",
        "The LMS sent something the tool cannot use.",
        "The id_token's {claim} is {value!s}: {detail} For the LTI version, set 'LTI version' to "
        "'LTI 1.3' in {moodle_form}.",
    ),
    "unsupported_message": Diagnosis(
        400, "The media tool cannot open this kind of link",
        "The tool cannot open this kind of link.",
        "The LMS sent a {message_type} message; the tool handles LtiResourceLinkRequest and "
        "LtiDeepLinkingRequest.",
    ),
    "deep_linking_disabled": Diagnosis(
        403, "Choosing media is switched off",
        "Choosing media from this LMS is switched off. Ask your administrator.",
        "Deep linking is off for platform '{platform}': switch on 'Enable deep linking' in the "
        "tool's admin (Platforms > {platform} > Edit), or untick 'Supports Deep Linking "
        "(Content-Item Message)' in {moodle_form}.",
    ),
    "role_not_allowed": Diagnosis(
        403, "Only teachers can choose media",
        "Choosing media for the course is for teachers. Ask your teacher to add the media.",
        "A user without a teaching role ({roles}) opened the media picker. Teaching roles are "
        "Instructor, TeachingAssistant, ContentDeveloper and Administrator, or any role mapped to "
        "contributor or manager (Platforms > {platform} > Role mappings).",
    ),
    "user_creation_disabled": Diagnosis(
        403, "Your account is not set up in the media tool",
        "Your account has not been set up in the media tool yet. Ask your administrator.",
        "No user is mapped to {sub} on platform '{platform}' and 'Auto create users' is off: "
        "create the account and its mapping first, or switch 'Auto create users' on "
        "(Platforms > {platform} > Edit).",
    ),
    "tool_key_unavailable": Diagnosis(
        503, "The media tool could not add the media to your course",
        "The media tool could not add the media to your course; nothing was changed. Tell your "
        "administrator.",
        "The tool's signing key cannot be used: {detail} On the tool's server run "
        "`flask --app wsgi keys rotate` (the LMS then reads the new key from /lti/jwks), and "
        "check that SECRET_KEY is the same on every host.",
    ),
    # Written by the Redis-down handler (errors.py): the shared cache did not answer.
    "tool_unavailable": Diagnosis(
        503, "The media tool is temporarily unavailable",
        "The media tool is temporarily unavailable. Try again in a minute.",
        "The tool's shared cache (Redis, REDIS_URL) did not answer: {detail} Check that Redis "
        "is running and reachable from every web host; launches resume on their own when it "
        "answers again.",
    ),
}


# Refusals at the launch step that a new launch may well get past.
TRANSIENT = frozenset({
    "state_missing", "state_mismatch", "expired", "nonce_replay", "nonce_mismatch",
    "jwks_unavailable", "platform_error", "launch_rejected", "clock_skew",
})
# Refusals at the login step that the tool's admin fixes; the same login then goes through.
FIXED_IN_SETUP = frozenset({"unknown_platform", "platform_inactive", "unknown_deployment",
                            "registration_pending"})
TOOL_PLATFORM = "https://purl.imsglobal.org/spec/lti/claim/tool_platform"


@dataclass(frozen=True)
class Retry:
    """How the error page's "Try again" starts over: a form posting the login's parameters to
    the tool's login again (`params`), or the activity reopened in the LMS's top window (`url`)."""

    params: dict[str, str] | None = None
    url: str | None = None


def retry_for(
    category: str, step: str, login_params: dict[str, str] | None,
    platform: LTIPlatform | None, claims: dict | None,
) -> Retry | None:
    """What "Try again" does for a refusal at the "login" or "launch" step, if it can help.

    A refused login never reached the LMS, so posting it again works once the setup is fixed.
    A launch step refusal needs a new login: Moodle's login hint is single-use, so for Moodle
    the activity is reopened (mod/lti/view.php); other LMSs get the stored login again.
    """
    if not login_params or not login_params.get("iss"):
        return None
    if step == "login":
        return Retry(params=login_params) if category in FIXED_IN_SETUP else None
    if category not in TRANSIENT:
        return None
    cmid = _moodle_cmid(login_params.get("lti_message_hint"))
    family = (claims or {}).get(TOOL_PLATFORM)
    moodle = cmid is not None or (
        isinstance(family, dict) and family.get("product_family_code") == "moodle"
    )
    if not moodle:
        return Retry(params=login_params)
    issuer = platform.platform_id if platform else ""
    if cmid is None or urlsplit(issuer).scheme not in ("http", "https"):
        return None
    return Retry(url=f"{issuer.rstrip('/')}/mod/lti/view.php?id={cmid}")


def _moodle_cmid(hint: str | None) -> int | None:
    """The course module ID in Moodle's lti_message_hint ({"launchid": ..., "cmid": 57})."""
    try:
        value = json.loads(hint or "")
    except ValueError:
        return None
    cmid = value.get("cmid") if isinstance(value, dict) else None
    if isinstance(cmid, str) and cmid.isdigit():
        cmid = int(cmid)
    return cmid if isinstance(cmid, int) and not isinstance(cmid, bool) and cmid > 0 else None


class _Defaults(dict):
    def __missing__(self, key: str) -> str:
        return "?"


def diagnose(category: str) -> Diagnosis:
    return CATEGORIES[category]


def fix_for(category: str, details: dict, platform: LTIPlatform | None, launch_url: str) -> str:
    """The one-line fix for a failure, with its details filled in."""
    values = _Defaults(details)
    values.setdefault("platform", platform.name if platform else "?")
    values.setdefault("key_set_url", platform.key_set_url if platform else "?")
    values.setdefault("client_id", platform.client_id if platform else "?")
    values.setdefault("moodle_form", MOODLE_TOOL_FORM)
    values.setdefault("launch_url", launch_url)
    values.setdefault("leeway", LEEWAY)
    return Formatter().vformat(CATEGORIES[category].fix, (), values)
