"""LTI endpoints: the tool's JWKS now; OIDC login and launch come with the launch work."""

from flask import Blueprint, jsonify

from ..extensions import db
from ..services import keys

bp = Blueprint("launch", __name__, url_prefix="/lti")


@bp.get("/jwks")
def jwks():
    """The tool's public keys: platforms check our deep-linking and token JWTs with them."""
    keys.ensure_current_key()
    db.session.commit()
    response = jsonify(keys.public_jwks())
    response.cache_control.public = True
    response.cache_control.max_age = 300
    return response
