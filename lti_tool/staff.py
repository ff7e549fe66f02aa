"""The staff pages' guard, shared by the admin and audit blueprints: admins may change things,
managers may read, anyone else gets 403, and strangers are sent to sign in first."""

from flask import Blueprint, abort, redirect, request, url_for
from flask_login import current_user

from .models import GlobalRole

# Endpoints anyone may reach, and POSTs any staff member may send.
OPEN_ENDPOINTS = frozenset({"admin.login"})
POSTS_FOR_ALL_STAFF = frozenset({"admin.logout"})


def require_staff():
    """`before_request` of the staff blueprints."""
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
    if not current_user.has_global_role(GlobalRole.MANAGER):
        abort(403)
    if request.method not in ("GET", "HEAD", "OPTIONS") and (
        request.endpoint not in POSTS_FOR_ALL_STAFF
    ) and not current_user.has_global_role(GlobalRole.ADMIN):
        abort(403)
    return None


def staff_context() -> dict:
    """Staff pages have the sign-out button and one-click actions, with their CSRF token."""
    from .admin.forms import ActionForm

    return {"action_form": ActionForm()}


def guard(bp: Blueprint) -> None:
    """Put a blueprint behind the staff guard, with the staff pages' template context."""
    bp.before_request(require_staff)
    bp.context_processor(staff_context)
