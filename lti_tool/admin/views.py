"""Admin dashboard (platforms, role mappings, setup pages); its pages come with the admin work."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")
