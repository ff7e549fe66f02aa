"""The OIDC third-party-initiated login on PyLTI1p3: cookie check, state and nonce, redirect."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

from flask import make_response
from pylti1p3.contrib.flask import FlaskOIDCLogin
from pylti1p3.cookies_allowed_check import CookiesAllowedCheckPage
from pylti1p3.exception import LtiException, OIDCException

from ..errors import LaunchError
from ..extensions import cache
from ..models import LTIPlatform
from ..security import csp_nonce
from . import platform_storage
from .platform_memory import login_platform
from .tool_conf import LTIContext, ToolSessionService

LOGIN_TTL = 600  # seconds a login's state and nonce wait for the launch
LOGIN_KEY = "lti-login:"
MAX_KEPT_PARAM = 2048  # characters of a login parameter kept for "Try again"; longer: none kept


class PartitionedCookieCheckPage(CookiesAllowedCheckPage):
    """PyLTI1p3's cookie check page, testing a Partitioned cookie on https.

    Browsers that block third-party cookies still keep partitioned ones (CHIPS), and the tool's
    own cookies are partitioned, so that is the cookie worth testing; PyLTI1p3 tests an
    unpartitioned one and would send every such browser to a new window.
    """

    def get_js_block(self) -> str:
        return super().get_js_block().replace(
            "cookie + '; SameSite=None; secure'", "cookie + '; SameSite=None; secure; Partitioned'"
        )

    def get_html(self) -> str:
        """The page under the tool's Content-Security-Policy.

        Its inline script and style carry this response's nonce; the blocks start `hidden`
        (the script shows one by setting its display), and the link has no `javascript:` URL.
        """
        nonce = csp_nonce()
        return (
            super().get_html()
            .replace('<script type="text/javascript">', f'<script nonce="{nonce}">')
            .replace('<style type="text/css">', f'<style nonce="{nonce}">')
            .replace(' style="display: none;"', " hidden")
            .replace('href="javascript: void(0);"', 'href="#"')
        )


class ToolOIDCLogin(FlaskOIDCLogin):
    """PyLTI1p3's login with random state and nonce from `secrets`, bound to each other.

    The pair is stored under the state in the shared cache; the state is also set as a cookie
    in the browser (by PyLTI1p3), so the launch must come back to the same browser.
    """

    def __init__(self, ctx: LTIContext, platform: LTIPlatform, params: dict[str, str],
                 storage: bool = False):
        super().__init__(
            ctx.request,
            ctx.tool_conf,
            session_service=ToolSessionService(ctx.request),
            cookie_service=ctx.cookies,
            launch_data_storage=ctx.storage,
        )
        self._platform = platform
        # Kept with the login's state for "Try again"; oversized values are not worth caching.
        self._params = params if all(len(v) <= MAX_KEPT_PARAM for v in params.values()) else None
        # Platform Storage: state and nonce kept by the LMS's page, not in a cookie.
        self._storage = storage

    def _get_uuid(self) -> str:
        return secrets.token_urlsafe(24)

    def _generate_nonce(self) -> str:
        return secrets.token_urlsafe(32)

    def get_cookies_allowed_js_check(self) -> str:
        params = {"lti1p3_new_window": "1"}
        for name in ("iss", "login_hint", "target_link_uri", "lti_message_hint",
                     "lti_deployment_id", "client_id"):
            if value := self._get_request_param(name):
                params[name] = value
        return PartitionedCookieCheckPage(
            params,
            "https" if self._request.is_secure() else "http",
            self._cookies_unavailable_msg_main_text,
            self._cookies_unavailable_msg_click_text,
            self._cookies_check_loading_text,
        ).get_html()

    def _prepare_redirect_url(self, launch_url: str) -> str:
        url = super()._prepare_redirect_url(launch_url)
        query = parse_qs(urlsplit(url).query)
        state, nonce = query["state"][0], query["nonce"][0]
        cache.set(
            LOGIN_KEY + state,
            # The login's parameters let a refused launch offer "Try again" (a new login).
            {"nonce": nonce, "platform_id": self._platform.id, "params": self._params,
             "storage": self._storage,
             # Without cookies the launch data's session id comes back from here.
             "session_id": self._launch_data_storage.get_session_id() if self._storage else None},
            timeout=LOGIN_TTL,
        )
        return url


def start_login(ctx: LTIContext, params: dict[str, str | None], launch_url: str):
    """Answer a third-party-initiated login: the cookie check page, or the redirect to the LMS.

    Returns the response and the platform it is for.

    Refuses an unknown or inactive platform and, when the login names one, an unknown
    deployment, before the browser goes to the platform. Raises LaunchError, carrying the
    login's parameters (its page can post them again) and what its fix names.
    """
    params = {name: value for name, value in params.items() if value}
    try:
        return _start_login(ctx, params, launch_url)
    except LaunchError as error:
        error.login_params = params
        for name in ("iss", "client_id"):
            error.details.setdefault(name, params.get(name, "?"))
        error.details.setdefault("deployment_id", params.get("lti_deployment_id", "?"))
        raise


def _start_login(ctx: LTIContext, params: dict[str, str], launch_url: str):
    if not params.get("iss"):
        raise LaunchError("missing_claim", "The login request has no 'iss'.", claim="iss")
    platform = login_platform(params["iss"], params.get("client_id"),
                              params.get("lti_deployment_id"))
    if not params.get("login_hint"):
        error = LaunchError("missing_claim", "The login has no 'login_hint'.", claim="login_hint")
        error.platform = platform
        raise error
    ctx.tool_conf.remember(platform)
    target = platform_storage.storage_target(params)
    if target:
        return _storage_login(ctx, platform, params, target, launch_url), platform
    login = ToolOIDCLogin(ctx, platform, params)
    login.enable_check_cookies(
        main_msg="Your browser blocks the cookies the media tool needs inside this page.",
        click_msg="Open the media tool in a new window",
        loading_msg="Loading the media tool…",
    )
    try:
        return login.redirect(launch_url), platform
    except (LtiException, OIDCException) as e:
        error = LaunchError("unknown_platform", str(e))
        error.platform = platform
        raise error from None


def _storage_login(ctx: LTIContext, platform: LTIPlatform, params: dict[str, str], target: str,
                   launch_url: str):
    """The Platform Storage login: a page keeping state and nonce in the LMS's frame `target`,
    then going to the platform's auth URL. The state cookie is offered, not needed."""
    login = ToolOIDCLogin(ctx, platform, params, storage=True)
    try:
        auth_url = login._prepare_redirect_url(launch_url)
    except (LtiException, OIDCException) as e:
        error = LaunchError("unknown_platform", str(e))
        error.platform = platform
        raise error from None
    query = parse_qs(urlsplit(auth_url).query)
    response = make_response(platform_storage.login_page(
        target=target, auth_url=auth_url, state=query["state"][0], nonce=query["nonce"][0],
        params=params,
    ))
    # The state cookie too: where the browser keeps it, the launch takes the cookie path and
    # its session; only where it is blocked does the launch read the state back.
    ctx.cookies.update_response(response)
    return response
