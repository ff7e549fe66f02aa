"""PyLTI1p3's message launch with the checks PyLTI1p3 2.0.0 lacks, each refusal a LaunchError
category of the launch doctor."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import jwt
from flask import g
from pylti1p3.contrib.flask import FlaskMessageLaunch
from pylti1p3.exception import LtiException
from sqlalchemy import select

from ..errors import LaunchError
from ..extensions import cache, db
from ..models import LTIPlatform, LTIRoleMapping
from . import claims as c
from . import jwks, platform_memory, platform_storage
from .oidc import LOGIN_KEY
from .tool_conf import LTIContext, ToolSessionService, check_deployment

LEEWAY = 60  # seconds; Moodle's id_tokens live 60 s, clocks drift, browsers take time
USED_NONCE_TTL = 3600
USED_NONCE_KEY = "lti-used-nonce:"
STORAGE_SESSION_ID = "lti_storage_session_id"  # g: the launch data's session without cookies

_parsed_keys: dict[tuple[str, str], Any] = {}


class ToolMessageLaunch(FlaskMessageLaunch):
    """PyLTI1p3's message launch with our order of checks, each failure a LaunchError category.

    Adds what PyLTI1p3 2.0.0 lacks: a clock leeway, a JWKS cache refreshed (within limits)
    for an unknown kid, RS256 only, the full audience and azp check, and a nonce that is bound to
    the login's state and accepted exactly once.
    """

    def __init__(self, ctx: LTIContext):
        super().__init__(
            ctx.request,
            ctx.tool_conf,
            session_service=ToolSessionService(ctx.request),
            cookie_service=ctx.cookies,
        )
        self._ctx = ctx
        self.platform: LTIPlatform | None = None
        self.role_mappings: list[LTIRoleMapping] = []
        self._login: dict[str, Any] | None = None
        self._platforms_generation: object = None

    def validate(self) -> ToolMessageLaunch:
        self._validated = True
        # The platforms' generation comes in the login record's cache round trip.
        self._login, self._platforms_generation = cache.get_many(
            LOGIN_KEY + (self._get_request_param("state") or ""), platform_memory.GENERATION_KEY)
        try:
            self._check_platform_error()
            self.validate_jwt_format()
            self.validate_state()
            self.validate_registration()
            self.validate_jwt_signature()
            self.validate_nonce()
            self.validate_deployment()
            self.validate_message()
            self.set_launch_data_storage(self._ctx.storage)
            self.save_launch_data()
        except LtiException as e:
            # A PyLTI1p3 check we did not pre-empt: keep its words, never a 500.
            self._validated = False
            raise self._annotate(rejected(e)) from None
        except LaunchError as e:
            self._validated = False
            raise self._annotate(e) from None
        return self

    def set_launch_data_storage(self, data_storage) -> ToolMessageLaunch:
        """A Platform Storage launch has no session-id cookie: its login kept the id."""
        if g.get(STORAGE_SESSION_ID):
            data_storage.set_request(self._request)
            data_storage.set_session_id(g.get(STORAGE_SESSION_ID))
            self._session_service.set_data_storage(data_storage)
            return self
        return super().set_launch_data_storage(data_storage)

    def save_launch_data(self) -> ToolMessageLaunch:
        """Keep what the picker reads later, for deep-linking launches only.

        PyLTI1p3 would store the whole token (emails, names, return URLs with the LMS's
        session key) for LAUNCH_DATA_TTL; nothing reads a resource-link launch later.
        """
        if self.body.get(c.MESSAGE_TYPE) == c.DEEP_LINKING_REQUEST:
            self._session_service.save_launch_data(self._launch_id, c.kept_for_later(self.body))
        return self

    @property
    def login_params(self) -> dict[str, str] | None:
        """The parameters of the login this launch answers, when its record was found."""
        return (self._login or {}).get("params")

    @property
    def body(self) -> dict[str, Any]:
        return self._jwt.get("body") or {}

    def _annotate(self, error: LaunchError) -> LaunchError:
        """Attach the platform, as far as it can be told, and the unverified claims.

        Before the token is verified the platform comes from the login this launch claims to
        answer, or from the token's unverified iss and aud: only to file the failure under it.
        """
        error.platform = error.platform or self.platform
        if error.platform is None and self._login:
            error.platform = db.session.get(LTIPlatform, self._login["platform_id"])
        client_id = c.client_id(self.body)
        if error.platform is None and isinstance(self.body.get("iss"), str) and isinstance(
            client_id, str
        ):
            error.platform = db.session.scalar(
                select(LTIPlatform).where(
                    LTIPlatform.platform_id == self.body["iss"], LTIPlatform.client_id == client_id
                )
            )
        error.claims = self.body or error.claims
        error.login_params = self.login_params
        error.deep_linking = self.body.get(c.MESSAGE_TYPE) == c.DEEP_LINKING_REQUEST
        return error

    def _check_platform_error(self) -> None:
        error = self._get_request_param("error")
        if error:
            description = (self._get_request_param("error_description") or "no description")
            raise LaunchError(
                "platform_error",
                f"The platform answered the login with {error!r}: {description}",
                error=error[:100],
                description=description[:300],
            )

    def validate_jwt_format(self) -> ToolMessageLaunch:
        token = self._get_request_param("id_token")
        if not token:
            raise LaunchError("malformed_token", "The launch has no id_token.", detail="none sent.")
        try:
            unverified = jwt.decode_complete(token, options={"verify_signature": False})
            header, body = unverified["header"], unverified["payload"]
        except jwt.PyJWTError as e:
            raise LaunchError(
                "malformed_token", f"The id_token is not a JWT ({e}).", detail=f"{e}."
            ) from None
        self._jwt = {"header": header, "body": body}
        if not body.get("iss") or not body.get("aud"):
            raise LaunchError(
                "malformed_token",
                "The id_token has no issuer or audience: it is not an LTI message.",
                detail="no iss or aud.",
            )
        return self

    def validate_state(self) -> ToolMessageLaunch:
        state = self._get_request_param("state")
        if not state:
            raise LaunchError("state_missing", "The launch has no state.", detail="no state posted")
        cookie = self._cookie_service.get_cookie(state)
        if cookie != state and (self._login or {}).get("storage"):
            # Platform Storage: accepted without the cookie only with the state its page read
            # back from the LMS (and the one-time proof that page was given).
            if platform_storage.proven(
                self._login, state, self._get_request_param(platform_storage.PROOF_PARAM),
                self._get_request_param(platform_storage.STATE_READ_PARAM),
            ):
                g.setdefault(STORAGE_SESSION_ID, self._login.get("session_id"))
                return self
            raise LaunchError(
                "state_missing",
                "The LMS's storage did not give back this login's state.",
                detail="the state was not confirmed by the LMS's storage",
            )
        if cookie != state:
            if any(name.startswith("lti1p3-state-") for name in self._ctx.cookie_names):
                raise LaunchError(
                    "state_mismatch",
                    "The posted state is not the one this browser was given.",
                    detail="this browser holds another login's state",
                )
            raise LaunchError(
                "state_missing",
                "The browser sent no state cookie back (third-party cookies blocked?).",
                detail="no state cookie",
            )
        return self

    def validate_registration(self) -> ToolMessageLaunch:
        body = self.body
        client_id = c.client_id(body)
        if not isinstance(client_id, str):
            raise LaunchError("malformed_token", "The id_token's audience is not a string.",
                              detail="aud is not a string.")
        try:
            self.platform, self.role_mappings = platform_memory.launch_platform(
                body.get("iss"), client_id, body.get(c.DEPLOYMENT_ID),
                self._platforms_generation)
        except LaunchError as e:
            e.details.update(iss=body.get("iss"), client_id=client_id)
            raise
        self._tool_config.remember(self.platform)
        self._registration = self._tool_config.find_registration_by_params(
            self.platform.platform_id, self.platform.client_id
        )
        return self

    def validate_jwt_signature(self) -> ToolMessageLaunch:
        header = self._jwt["header"]
        alg, kid = header.get("alg"), header.get("kid")
        if alg != "RS256":
            raise LaunchError("bad_algorithm", f"The id_token is signed with {alg!r}.", alg=alg)
        if not kid:
            raise LaunchError("missing_kid", "The id_token header has no kid.")
        key = self._public_key(kid)
        try:
            jwt.decode(
                self._get_id_token(),
                key,
                algorithms=["RS256"],
                leeway=LEEWAY,
                options={"verify_aud": False, "require": ["exp", "iat"]},
            )
        except jwt.ExpiredSignatureError:
            seconds = int(time.time() - float(self.body["exp"]))
            raise LaunchError(
                "expired", f"The id_token expired {seconds} s ago.", seconds=seconds
            ) from None
        except jwt.ImmatureSignatureError:
            issued = max(float(self.body.get("iat") or 0), float(self.body.get("nbf") or 0))
            seconds = int(issued - time.time())
            raise LaunchError(
                "clock_skew",
                f"The id_token was issued {seconds} s in the future (clock skew).",
                seconds=seconds,
            ) from None
        except jwt.InvalidSignatureError:
            raise LaunchError(
                "bad_signature", "The id_token's signature is invalid.", kid=kid
            ) from None
        except jwt.MissingRequiredClaimError as e:
            raise LaunchError(
                "missing_claim", f"The id_token has no '{e.claim}'.", claim=e.claim
            ) from None
        except jwt.PyJWTError as e:
            raise LaunchError("invalid_claim", f"The id_token is invalid: {e}",
                              claim="token", value="?", detail=str(e)) from None
        self._check_audience()
        return self

    def _public_key(self, kid: str):
        jwk = jwks.platform_key(self.platform, kid)
        cache_key = (kid, jwk.get("n", ""))
        key = _parsed_keys.get(cache_key)
        if key is None:
            try:
                key = jwt.PyJWK(jwk, algorithm="RS256").key
            except jwt.PyJWTError as e:
                raise LaunchError(
                    "jwks_unavailable", f"Key {kid!r} cannot be read: {e}", detail=str(e)
                ) from None
            _parsed_keys[cache_key] = key
        return key

    def _check_audience(self) -> None:
        body = self.body
        aud = body.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        client_id = self.platform.client_id
        azp = body.get("azp")
        problem = None
        if client_id not in audiences:
            problem = f"client ID {client_id!r} is not in the audience"
        elif len(audiences) > 1:
            trusted = set(
                db.session.scalars(
                    select(LTIPlatform.client_id).where(
                        LTIPlatform.platform_id == self.platform.platform_id,
                        LTIPlatform.active.is_(True),
                    )
                )
            )
            if untrusted := [a for a in audiences if a not in trusted]:
                problem = f"the audience lists untrusted parties {untrusted}"
            elif azp != client_id:
                problem = f"azp {azp!r} is not {client_id!r}"
        elif azp is not None and azp != client_id:
            problem = f"azp {azp!r} is not {client_id!r}"
        if problem:
            raise LaunchError(
                "wrong_audience", f"Wrong audience: {problem}.", aud=aud, azp=azp
            )

    def validate_nonce(self) -> ToolMessageLaunch:
        state = self._get_request_param("state")
        nonce = self.body.get("nonce")
        if not nonce or not isinstance(nonce, str):
            raise LaunchError("nonce_mismatch", "The id_token has no nonce.", detail="no nonce")
        used_key = USED_NONCE_KEY + hashlib.sha256(nonce.encode()).hexdigest()
        replay = LaunchError("nonce_replay", "This id_token was already used.")
        # A used nonce is looked up only when the launch fails anyway: a login record that is
        # still there has not been consumed, so its own nonce cannot have been used.
        if self._login is None:
            if cache.get(used_key):
                raise replay
            raise LaunchError(
                "state_missing",
                "The login behind this launch is unknown or expired.",
                detail="the login expired or was never made here",
            )
        if self._login["nonce"] != nonce or self._login["platform_id"] != self.platform.id:
            if cache.get(used_key):
                raise replay
            raise LaunchError(
                "nonce_mismatch",
                "The nonce is not the one issued for this login.",
                detail="issued for another login",
            )
        # Consume only now, after the signature is good: a forged token cannot burn a nonce.
        if not cache.delete(LOGIN_KEY + state):
            raise replay
        cache.set(used_key, 1, timeout=USED_NONCE_TTL)
        return self

    def validate_deployment(self) -> ToolMessageLaunch:
        deployment_id = self.body.get(c.DEPLOYMENT_ID)
        if not deployment_id:
            raise LaunchError("missing_claim", "The id_token has no deployment_id.",
                              claim="deployment_id")
        check_deployment(self.platform, deployment_id)
        return self

    def validate_message(self) -> ToolMessageLaunch:
        body = self.body
        version = body.get(c.VERSION)
        if version is None:
            raise LaunchError("missing_claim", "The id_token has no LTI version.", claim="version")
        if version != "1.3.0":
            raise LaunchError(
                "invalid_claim", f"The LTI version is {version!r}, not '1.3.0'.",
                claim="version", value=version, detail="expected 1.3.0.",
            )
        message_type = body.get(c.MESSAGE_TYPE)
        if not message_type:
            raise LaunchError("missing_claim", "The id_token has no message_type.",
                              claim="message_type")
        if message_type not in (c.RESOURCE_LINK_REQUEST, c.DEEP_LINKING_REQUEST):
            raise LaunchError(
                "unsupported_message", f"Message type {message_type!r} is not supported.",
                message_type=message_type,
            )
        roles = body.get(c.ROLES)
        if roles is None:
            raise LaunchError("missing_claim", "The id_token has no roles claim.", claim="roles")
        if not isinstance(roles, list):
            raise LaunchError("invalid_claim", "The roles claim is not a list.",
                              claim="roles", value=type(roles).__name__, detail="expected a list.")
        if not body.get("sub") or not isinstance(body["sub"], str):
            raise LaunchError("missing_claim", "The id_token has no user (sub).", claim="sub")
        if message_type == c.RESOURCE_LINK_REQUEST:
            link = body.get(c.RESOURCE_LINK)
            if not isinstance(link, dict) or not link.get("id"):
                raise LaunchError("missing_claim", "The id_token has no resource link id.",
                                  claim="resource_link.id")
        else:
            settings = body.get(c.DL_SETTINGS)
            if not isinstance(settings, dict):
                raise LaunchError("missing_claim", "The id_token has no deep_linking_settings.",
                                  claim="deep_linking_settings")
            if not settings.get("deep_link_return_url"):
                raise LaunchError("missing_claim", "The deep-linking settings have no return URL.",
                                  claim="deep_link_return_url")
            if not self.platform.enable_deep_linking:
                raise LaunchError("deep_linking_disabled",
                                  "Deep linking is switched off for this platform.")
        return self


def rejected(e: LtiException) -> LaunchError:
    """A PyLTI1p3 refusal our own checks did not pre-empt, in its own category."""
    return LaunchError("launch_rejected", f"PyLTI1p3 refused the launch: {e}", detail=str(e))
