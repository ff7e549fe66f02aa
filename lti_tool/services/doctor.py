"""The launch doctor: one fixed list of failure categories, each with its status and its fix."""

from __future__ import annotations

from dataclasses import dataclass
from string import Formatter

from ..models import LTIPlatform
from .launches import LEEWAY

MOODLE_TOOL_FORM = (
    "Moodle's External tool configuration (Site administration > Plugins > Activity modules > "
    "External tool > Manage tools > the tool's settings)"
)


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
        400, "The LMS refused the sign-in",
        "Your LMS did not let the tool sign you in. Close this and open the activity again.",
        "The LMS answered the login with '{error}' ({description}). access_denied usually means "
        "the browser is signed in to the LMS as another user; unauthorized_client or "
        "invalid_request: check 'Initiate login URL' and 'Redirection URI(s)' in {moodle_form}.",
    ),
    "malformed_token": Diagnosis(
        400, "This is not an LTI 1.3 launch",
        "The tool received a request it cannot read.",
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
        400, "The launch could not be checked",
        "The tool could not accept this launch. Open the activity again from your course; if "
        "it happens again, tell your teacher or administrator.",
        "PyLTI1p3 refused the launch after the tool's own checks passed: {detail} If it names "
        "a cookie, the browser dropped one of the tool's cookies between login and launch "
        "(open the tool in a new window); otherwise report this message with the reference.",
    ),
    "state_mismatch": Diagnosis(
        400, "This launch belongs to another sign-in",
        "This page came from an older launch. Open the activity again from your course.",
        "The state posted back does not match the one this browser was given ({detail}).",
    ),
    "unknown_platform": Diagnosis(
        403, "This LMS is not registered with the tool",
        "This LMS is not connected to the media tool yet.",
        "No platform is registered for issuer {iss} and client ID {client_id}: add it in the "
        "tool's admin (Platforms > Add) with 'Platform ID' and 'Client ID' from Moodle's "
        "'Tool configuration details'.",
    ),
    "platform_inactive": Diagnosis(
        403, "This LMS is switched off in the tool",
        "The media tool is switched off for this LMS.",
        "Platform '{platform}' is inactive: activate it in the tool's admin (Platforms > "
        "{platform} > Activate).",
    ),
    "missing_kid": Diagnosis(
        401, "The launch was not signed correctly",
        "The tool could not check who sent this launch.",
        "The id_token header has no key ID (kid). LTI 1.3 platforms must send one; check the "
        "LMS version or report it to its vendor.",
    ),
    "unknown_kid": Diagnosis(
        401, "The launch was signed with an unknown key",
        "The tool could not check who sent this launch.",
        "Platform '{platform}' signed with key {kid}, which is not at {key_set_url}: check its "
        "'Public keyset URL' in the tool (Moodle: 'Public keyset URL' in 'Tool configuration "
        "details', ending in /mod/lti/certs.php).",
    ),
    "jwks_unavailable": Diagnosis(
        502, "The LMS's keys could not be fetched",
        "The tool could not reach your LMS to check this launch. Try again in a minute.",
        "Fetching {key_set_url} failed: {detail} Check the platform's 'Public keyset URL' and "
        "that the tool's server can reach the LMS.",
    ),
    "bad_algorithm": Diagnosis(
        401, "The launch was not signed correctly",
        "The tool could not check who sent this launch.",
        "The id_token is signed with {alg}; LTI 1.3 requires RS256.",
    ),
    "bad_signature": Diagnosis(
        401, "The launch's signature is invalid",
        "The tool could not check who sent this launch.",
        "The signature does not verify with key {kid} of platform '{platform}': its 'Public "
        "keyset URL' may belong to another site. Compare it with Moodle's 'Public keyset URL'.",
    ),
    "expired": Diagnosis(
        401, "The launch expired",
        "The launch took too long. Open the activity again from your course.",
        "The id_token expired {seconds} s before it arrived ({leeway} s leeway allowed). If this "
        "repeats, synchronise the clocks of the LMS and tool servers (NTP).",
    ),
    "clock_skew": Diagnosis(
        401, "The clocks of the LMS and the tool disagree",
        "The tool could not accept this launch because of a server clock problem.",
        "The id_token was issued {seconds} s in the future by the tool's clock ({leeway} s "
        "leeway allowed): synchronise the clocks of the LMS and tool servers (NTP).",
    ),
    "wrong_audience": Diagnosis(
        401, "The launch was meant for another tool",
        "The tool could not accept this launch.",
        "The token's audience {aud} (azp {azp}) does not match client ID {client_id} of "
        "platform '{platform}': copy 'Client ID' from Moodle's 'Tool configuration details'.",
    ),
    "nonce_replay": Diagnosis(
        401, "This launch was already used",
        "This launch was already used (page refreshed or back button). Open the activity "
        "again from your course.",
        "The same id_token was posted twice; each launch is accepted once.",
    ),
    "nonce_mismatch": Diagnosis(
        401, "The launch does not match its sign-in",
        "Open the activity again from your course.",
        "The id_token's nonce is not the one the tool issued for this login ({detail}).",
    ),
    "unknown_deployment": Diagnosis(
        403, "This deployment is not allowed",
        "This course's link to the media tool is not approved yet.",
        "Deployment ID {deployment_id} is not allowed for platform '{platform}': add it in the "
        "tool's admin (Platforms > {platform} > Edit > Deployment IDs). Moodle shows it as "
        "'Deployment ID' under the tool's 'View configuration details'.",
    ),
    "missing_claim": Diagnosis(
        400, "The launch is missing information",
        "The LMS did not send everything the tool needs.",
        "The id_token has no {claim}. Check that 'LTI version' is 'LTI 1.3' in {moodle_form}.",
    ),
    "invalid_claim": Diagnosis(
        400, "The launch has an invalid value",
        "The LMS sent something the tool cannot use.",
        "The id_token's {claim} is {value!s}: {detail} For the LTI version, set 'LTI version' to "
        "'LTI 1.3' in {moodle_form}.",
    ),
    "unsupported_message": Diagnosis(
        400, "This kind of launch is not supported",
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
        403, "Your account does not exist in the media tool",
        "Your account has not been set up in the media tool yet. Ask your administrator.",
        "No user is mapped to {sub} on platform '{platform}' and 'Auto create users' is off: "
        "create the account and its mapping first, or switch 'Auto create users' on "
        "(Platforms > {platform} > Edit).",
    ),
    "tool_key_unavailable": Diagnosis(
        503, "The tool cannot sign its answer",
        "The media tool could not add the media to your course; nothing was changed. Tell your "
        "administrator.",
        "The tool's signing key cannot be used: {detail} On the tool's server run "
        "`flask --app wsgi keys rotate` (the LMS then reads the new key from /lti/jwks), and "
        "check that SECRET_KEY is the same on every host.",
    ),
}


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
