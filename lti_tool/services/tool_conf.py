"""PyLTI1p3 wired to our models: the database-backed tool configuration and its helpers."""

from __future__ import annotations

from dataclasses import dataclass

from flask import g
from flask import request as flask_request
from pylti1p3.contrib.flask import (
    FlaskCacheDataStorage,
    FlaskCookieService,
    FlaskRequest,
    FlaskSessionService,
)
from pylti1p3.deployment import Deployment
from pylti1p3.registration import Registration
from pylti1p3.tool_config import ToolConfAbstract
from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload

from ..errors import LaunchError
from ..extensions import cache, db
from ..models import LTIPlatform
from ..security import cookie_flags
from . import keys

LAUNCH_DATA_TTL = 4 * 3600  # seconds a launch's data stays readable (the deep-linking picker)


# Built once: each launch and login runs them (SQLAlchemy keeps a built statement's cache key).
_PLATFORM_BY_ISSUER = select(LTIPlatform).where(
    LTIPlatform.platform_id == bindparam("issuer")).limit(2)
_PLATFORM = _PLATFORM_BY_ISSUER.where(LTIPlatform.client_id == bindparam("client_id"))
_PLATFORM_WITH_MAPPINGS = _PLATFORM.options(joinedload(LTIPlatform.role_mappings)) \
    .execution_options(populate_existing=True)


def find_platform(issuer: str | None, client_id: str | None, *,
                  role_mappings: bool = False) -> LTIPlatform:
    """The registration for an issuer and client ID, refusing unknown and inactive ones.

    With `role_mappings` (a launch) the platform's role mappings come in the same query, read
    afresh.

    Without a client ID (a login that did not send one) the issuer must have exactly one
    registration. Raises LaunchError `unknown_platform`, `platform_inactive` or
    `registration_pending` (inactive while its dynamic registration waits for approval).
    """
    if not issuer:
        raise LaunchError("malformed_token", "The request names no issuer (iss).")
    query = (_PLATFORM_WITH_MAPPINGS if role_mappings and client_id
             else _PLATFORM if client_id else _PLATFORM_BY_ISSUER)
    found = list(db.session.scalars(query, {"issuer": issuer, "client_id": client_id}).unique())
    if not found:
        who = f"issuer {issuer!r}" + (f" with client ID {client_id!r}" if client_id else "")
        raise LaunchError("unknown_platform", f"No platform is registered for {who}.")
    if len(found) > 1:
        raise LaunchError(
            "unknown_platform",
            f"Issuer {issuer!r} has several registrations and the request names no client ID.",
        )
    platform = found[0]
    if not platform.active:
        error = LaunchError("platform_inactive", f"The platform {platform.name!r} is switched off.")
        if platform.registration_pending:
            error = LaunchError("registration_pending",
                                f"The platform {platform.name!r} waits for approval.")
        error.platform = platform
        raise error
    return platform


def check_deployment(platform: LTIPlatform, deployment_id: str) -> None:
    """Refuse a deployment ID the platform's registration does not list.

    Raises LaunchError `unknown_deployment`, filed under the platform.
    """
    if not deployment_allowed(platform, deployment_id):
        error = LaunchError(
            "unknown_deployment",
            f"Deployment ID {deployment_id!r} is not allowed for this platform.",
            deployment_id=deployment_id,
        )
        error.platform = platform
        raise error


def deployment_allowed(platform: LTIPlatform, deployment_id: str) -> bool:
    return deployment_id in (platform.deployment_ids or [])


class DatabaseToolConf(ToolConfAbstract):
    """Registrations and deployments from active LTIPlatform rows, looked up once per request.

    Every lookup uses issuer and client ID: one issuer may have several registrations.
    """

    def __init__(self):
        super().__init__()
        self._platforms: dict[tuple[str, str | None], LTIPlatform] = {}

    def remember(self, platform: LTIPlatform) -> None:
        """Use this already loaded platform for its issuer and client ID."""
        self._platforms[(platform.platform_id, platform.client_id)] = platform

    def check_iss_has_one_client(self, iss: str) -> bool:
        return False

    def check_iss_has_many_clients(self, iss: str) -> bool:
        return True

    def platform(self, iss: str, client_id: str | None) -> LTIPlatform | None:
        key = (iss, client_id)
        if key not in self._platforms:
            try:
                self._platforms[key] = find_platform(iss, client_id)
            except LaunchError:
                return None
        return self._platforms[key]

    def find_registration_by_issuer(self, iss: str, *args, **kwargs) -> Registration | None:
        return self.find_registration_by_params(iss, None)

    def find_registration_by_params(
        self, iss: str, client_id: str | None, *args, **kwargs
    ) -> Registration | None:
        platform = self.platform(iss, client_id)
        return registration_for(platform) if platform is not None else None

    def find_deployment(self, iss: str, deployment_id: str) -> Deployment | None:
        return self.find_deployment_by_params(iss, deployment_id, None)

    def find_deployment_by_params(
        self, iss: str, deployment_id: str, client_id: str | None, *args, **kwargs
    ) -> Deployment | None:
        platform = self.platform(iss, client_id)
        if platform is None or not deployment_allowed(platform, deployment_id):
            return None
        return Deployment().set_deployment_id(deployment_id)

    def get_jwks(self, iss: str | None = None, client_id: str | None = None, **kwargs):
        return keys.public_jwks()


def registration_for(platform: LTIPlatform) -> Registration:
    """A PyLTI1p3 Registration of the platform (the tool signs its own messages, not PyLTI1p3)."""
    return (
        Registration()
        .set_issuer(platform.platform_id)
        .set_client_id(platform.client_id)
        .set_auth_login_url(platform.auth_login_url)
        .set_auth_token_url(platform.auth_token_url)
        .set_auth_audience(platform.auth_audience or platform.auth_token_url)
        .set_key_set_url(platform.key_set_url)
        .set_key_set(platform.key_set)
    )


class ToolSessionService(FlaskSessionService):
    """PyLTI1p3's bookkeeping minus what our own checks replace.

    The nonce is stored with its state by ToolOIDCLogin and consumed by ToolMessageLaunch, and
    a state is never "valid" twice, so PyLTI1p3's nonce and state-validity records are not
    written; launch data lives LAUNCH_DATA_TTL, not a day.
    """

    _launch_data_lifetime = LAUNCH_DATA_TTL

    def save_nonce(self, nonce: str) -> None:
        pass

    def set_state_valid(self, state: str, id_token_hash: str) -> None:
        pass


class ToolCookieService(FlaskCookieService):
    """PyLTI1p3's cookies with our flags: Secure; SameSite=None; Partitioned on https."""

    def update_response(self, response):
        flags = cookie_flags(self._request.is_secure())
        for key, data in self._cookie_data_to_set.items():
            response.set_cookie(
                key, data["value"], max_age=data["exp"], path="/", httponly=True, **flags
            )


@dataclass
class LTIContext:
    """What PyLTI1p3's Flask classes need for one request."""

    request: FlaskRequest
    tool_conf: DatabaseToolConf
    cookies: ToolCookieService
    storage: FlaskCacheDataStorage
    cookie_names: frozenset[str]


def lti_context(request_data: dict | None = None) -> LTIContext:
    """Build PyLTI1p3's request, tool config, cookie service and shared launch-data storage."""
    request = FlaskRequest(request_data=request_data)
    return LTIContext(
        request=request,
        tool_conf=DatabaseToolConf(),
        cookies=ToolCookieService(request),
        storage=FlaskCacheDataStorage(cache),
        cookie_names=frozenset(flask_request.cookies),
    )


def load_launch_data(ctx: LTIContext, launch_id: str) -> dict | None:
    """The claims of an earlier validated launch of this browser, as PyLTI1p3 stored them."""
    storage = ctx.storage
    storage.set_request(ctx.request)
    cookie_name = storage.get_session_cookie_name()
    if cookie_name:
        # A Platform Storage launch rendering its landing page in place has no cookie.
        session_id = ctx.cookies.get_cookie(cookie_name) or g.get("lti_storage_session_id")
        if not session_id:
            return None
        storage.set_session_id(session_id)
    service = ToolSessionService(ctx.request)
    service.set_data_storage(storage)
    return service.get_launch_data(launch_id)
