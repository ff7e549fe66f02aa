"""LTI Dynamic Registration: the page an LMS opens (in its dialog) to register the tool."""

from flask import Blueprint, current_app, render_template, request, url_for
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..security import allow_framing_by
from ..services import registration

bp = Blueprint("registration", __name__, url_prefix="/lti")


@bp.before_request
def _framed_by_any_lms():
    # The LMS that opens this page is not known yet (and Canvas frames it from another host than
    # its issuer). The page has no controls but its close button, needs no session, and shows
    # nothing secret; what it does needs the LMS's one-time registration token.
    allow_framing_by("*")


@bp.after_request
def _no_referrer(response):
    # The page's URL carries the one-time registration token: no request it makes names it.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/register")
def register():
    """Register the tool with the platform whose OpenID configuration the LMS names."""
    if not current_app.config["REGISTRATION_ENABLED"]:
        return render_template("registration/switched_off.html"), 404
    try:
        result = registration.register(
            request.args.get("openid_configuration", ""),
            request.args.get("registration_token") or None,
            _tool_urls(),
            registration.Settings(
                trusted_issuers=tuple(current_app.config["REGISTRATION_TRUSTED_ISSUERS"]),
                allow_loopback=current_app.config["REGISTRATION_ALLOW_LOOPBACK"],
            ),
            request.remote_addr,
        )
        db.session.commit()
    except registration.RegistrationError as error:
        db.session.rollback()
        return render_template("registration/error.html", error=error), error.status
    except IntegrityError:  # a registration of the same platform finished at the same moment
        db.session.rollback()
        error = registration.RegistrationError(
            "conflict", "Another registration of this platform was saved at the same moment. "
            "Check the tool's platforms, or start again from your LMS.", status=409)
        return render_template("registration/error.html", error=error), error.status
    return render_template(
        "registration/done.html", result=result,
        product=registration.product_name(result.platform.product_family_code),
    )


def _tool_urls() -> registration.ToolUrls:
    return registration.ToolUrls(
        login=url_for("launch.login", _external=True),
        launch=url_for("launch.launch", _external=True),
        jwks=url_for("launch.jwks", _external=True),
    )
