"""Launch-log viewer; its pages come with the audit work."""

from flask import Blueprint

bp = Blueprint("audit", __name__, url_prefix="/audit")
