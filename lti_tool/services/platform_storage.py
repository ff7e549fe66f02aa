"""Platform Storage (1EdTech lti-cs-oidc, lti-pm-s): state and nonce kept in the LMS's page.

Where the browser blocks the tool's cookies inside the LMS's iframe, a platform that sends
`lti_storage_target` in its login (Canvas, Brightspace, Sakai) keeps the login's state and nonce
for the tool: the tool's page posts `lti.put_data` to the LMS frame the target names, and at the
launch asks them back with `lti.get_data`. Messages go to, and are accepted only from, the
origin of the platform's OIDC auth URL, and each answer must carry its request's message_id.

The server side: the login record in the cache (oidc.LOGIN_KEY) is marked `storage` for such
logins; the launch POST without the state cookie answers a page that reads the state back and
re-posts the launch with a one-time proof (issued here, bound to the state) and the value read.
Only a storage-mode login's launch is accepted that way, once. The login still offers the state
cookie: a browser that keeps it (Canvas sends the target to every browser) takes the cookie path.

The server cannot see the LMS's storage: the proof shows the launch went through our read-back
page, whose script checked the LMS's answer (origin, message_id, value). The landing page is then
rendered in the launch response and no session is kept, so a continuation posted into another
browser signs no one in there for later.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit

from flask import Request, render_template, url_for
from markupsafe import Markup

from ..extensions import cache

TARGET_PARAM = "lti_storage_target"
PROOF_PARAM = "lti_storage_proof"  # the one-time proof the read-back page posts
STATE_READ_PARAM = "lti_storage_state"  # the value the platform's storage gave back
PROOF_KEY = "lti-storage-proof:"
PROOF_TTL = 120  # seconds between the launch POST and its continuation
TIMEOUT_MS = 4000  # how long the pages wait for the platform's answers
# A frame name: Canvas `post_message_forwarding`, Sakai `_parent`; nothing that needs quoting.
TARGET_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
COOKIELESS_FRAME = (
    "Your browser blocks the media tool's cookies inside the LMS page, so only the first page "
    "opens here. Use \"Open the media tool in a new window\" on that page, or open the "
    "activity again from your course."
)
NEW_WINDOW_PARAMS = ("iss", "login_hint", "target_link_uri", "lti_message_hint",
                     "lti_deployment_id", "client_id")


def storage_target(values: Mapping[str, str | None]) -> str | None:
    """The frame the platform keeps data in, if the request names a usable one."""
    target = values.get(TARGET_PARAM) or ""
    return target if TARGET_PATTERN.fullmatch(target) else None


def origin_of(url: str | None) -> str:
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def new_window_url(params: Mapping[str, str] | None) -> str | None:
    """The login again, in a window of its own where the tool's cookies work (cookie path)."""
    if not params:
        return None
    kept = {name: params[name] for name in NEW_WINDOW_PARAMS if params.get(name)}
    return url_for("launch.login") + "?" + urlencode({"lti1p3_new_window": "1", **kept})


def state_key(state: str) -> str:
    return f"state_{state}"


def nonce_key(nonce: str) -> str:
    return f"nonce_{nonce}"


def login_page(*, target: str, auth_url: str, state: str, nonce: str,
               params: Mapping[str, str]) -> str:
    """The page that stores state and nonce in the platform, then goes to its auth URL."""
    return render_template(
        "launch/storage_login.html",
        target=target,
        origin=origin_of(auth_url),
        entries=[(state_key(state), state), (nonce_key(nonce), nonce)],
        next_url=auth_url,
        new_window=new_window_url(params),
        timeout=TIMEOUT_MS,
    )


def launch_target(form: Mapping[str, str], login: Mapping) -> str | None:
    """The frame named by the launch POST, else by its login (a platform may not repeat it)."""
    return storage_target(form) or storage_target(login.get("params") or {})


def wants_read_back(form: Mapping[str, str], login: Mapping | None, has_state_cookie: bool) -> bool:
    """A launch POST to answer with the read-back page: a storage-mode login's, without the
    state cookie, not yet carrying a proof."""
    return bool(
        login and login.get("storage") and launch_target(form, login) and form.get("state")
        and not has_state_cookie and not form.get(PROOF_PARAM)
    )


def read_back_page(*, form: Mapping[str, str], login: Mapping, auth_url: str) -> str:
    """The page that asks the platform for the state (and nonce) and, on matching answers,
    posts the launch again with a one-time proof."""
    state = form["state"]
    proof = secrets.token_urlsafe(24)
    # One proof per login at a time (a page asked again replaces it): bounded by the logins.
    cache.set(PROOF_KEY + state, proof, timeout=PROOF_TTL)
    return render_template(
        "launch/storage_launch.html",
        target=launch_target(form, login),
        origin=origin_of(auth_url),
        entries=[(state_key(state), state), (nonce_key(login["nonce"]), login["nonce"])],
        fields={
            "id_token": form.get("id_token") or "",
            "state": state,
            TARGET_PARAM: launch_target(form, login),
            PROOF_PARAM: proof,
        },
        new_window=new_window_url(login.get("params")),
        timeout=TIMEOUT_MS,
    )


def proven(login: Mapping | None, state: str, proof: str | None, read: str | None) -> bool:
    """True once for a storage-mode login whose state its page read back from the platform.

    The proof is single use: a replayed continuation is refused.
    """
    if not (login and login.get("storage") and proof and read):
        return False
    key = PROOF_KEY + state
    issued = cache.get(key)
    if issued is None or not secrets.compare_digest(str(issued).encode(), proof.encode()):
        return False
    if not cache.delete(key):  # another request used it first
        return False
    return secrets.compare_digest(read.encode(), state.encode())


def landing_notice(login: Mapping | None) -> Markup | None:
    """The notice on a Platform Storage landing page: this page works, the next ones need the
    tool's cookies, which a window of its own has."""
    url = new_window_url((login or {}).get("params"))
    if not url:
        return None
    return Markup(render_template("launch/_storage_notice.html", new_window=url))


def cookieless_frame(req: Request) -> bool:
    """A page requested inside the LMS's frame with none of the tool's cookies: the browser
    blocks them there (after a Platform Storage launch, every page after the first)."""
    return not req.cookies and req.headers.get("Sec-Fetch-Dest") == "iframe"
