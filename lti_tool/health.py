"""GET /healthz for load balancers and monitoring."""

import logging

from flask import Blueprint, jsonify
from sqlalchemy import text

from .extensions import cache, db

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 while the database answers, 503 otherwise; the shared cache is reported too.

    Redis down is "degraded" with 200, not 503: every host shares the one Redis, so a 503 would
    take them all out of the load balancer, while signed-in viewers (cookie sessions, access
    checked in the database) still play their media; logins and launches answer their own 503.
    A Redis that hangs costs this check at most two attempts of REDIS_TIMEOUT seconds.
    """
    body = {"status": "ok", "database": "ok", "cache": _cache_status()}
    status = 200
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as e:  # any driver error means "not healthy", never a 500
        db.session.rollback()
        log.warning("Health check: database unreachable: %s", type(e).__name__)
        body |= {"status": "unavailable", "database": "unreachable"}
        status = 503
    else:
        if body["cache"] != "ok":
            body["status"] = "degraded"
    response = jsonify(body)
    response.cache_control.no_store = True
    return response, status


def _cache_status() -> str:
    try:
        cache.set("healthz", 1, timeout=10)
        return "ok" if cache.get("healthz") == 1 else "unavailable"
    except Exception as e:
        log.warning("Health check: cache unreachable: %s", type(e).__name__)
        return "unavailable"
