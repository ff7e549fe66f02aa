"""A minimal PyLTI1p3 Flask tool: the baseline that `launch_bench.py` compares the real tool with.

It does what the PyLTI1p3 Flask example does and nothing more: OIDC login with the cookie check
page, a message launch validated by PyLTI1p3 (public keys cached in the launch data storage, as
the example does), and a tiny page that reads the launch back from the cache. No database.

Everything comes from the JSON file named by BASELINE_CONFIG (written by `launch_bench.py`):

    {"issuer": ..., "client_id": ..., "auth_login_url": ..., "auth_token_url": ...,
     "key_set_url": ..., "deployment_ids": [...], "private_key_file": ..., "public_key_file": ...,
     "secret_key": ..., "redis_url": ... or null, "cache_dir": ..., "cache_key_prefix": ...}

Launch data, state and nonces live in a Flask-Caching cache that every worker shares: Redis when
`redis_url` is set, otherwise a FileSystemCache in `cache_dir` (without an entry threshold).
Serve it with `gunicorn -c ../gunicorn.conf.py -w 2 baseline_tool:app` from this folder.
"""

import html
import json
import os
from pathlib import Path

from flask import Flask, redirect, url_for
from flask_caching import Cache
from pylti1p3.contrib.flask import (
    FlaskCacheDataStorage,
    FlaskMessageLaunch,
    FlaskOIDCLogin,
    FlaskRequest,
)
from pylti1p3.exception import LtiException, OIDCException
from pylti1p3.tool_config import ToolConfDict

PUBLIC_KEY_CACHE_SECONDS = 7200


def load_settings() -> dict:
    return json.loads(Path(os.environ["BASELINE_CONFIG"]).read_text())


def make_tool_conf(settings: dict) -> ToolConfDict:
    issuer, client_id = settings["issuer"], settings["client_id"]
    conf = ToolConfDict({
        issuer: [{
            "default": True,
            "client_id": client_id,
            "auth_login_url": settings["auth_login_url"],
            "auth_token_url": settings["auth_token_url"],
            "auth_audience": None,
            "key_set_url": settings["key_set_url"],
            "key_set": None,
            "deployment_ids": settings["deployment_ids"],
        }]
    })
    conf.set_private_key(issuer, Path(settings["private_key_file"]).read_text(), client_id)
    conf.set_public_key(issuer, Path(settings["public_key_file"]).read_text(), client_id)
    return conf


def make_cache(app: Flask, settings: dict) -> Cache:
    if settings.get("redis_url"):
        config = {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": settings["redis_url"]}
    else:
        # No threshold: past it cachelib scans every file on each write and evicts entries
        # (the cached platform keys first), which would measure cachelib, not PyLTI1p3.
        config = {"CACHE_TYPE": "FileSystemCache", "CACHE_DIR": settings["cache_dir"],
                  "CACHE_THRESHOLD": 0}
    config |= {"CACHE_DEFAULT_TIMEOUT": 300, "CACHE_KEY_PREFIX": settings["cache_key_prefix"]}
    return Cache(app, config=config)


def create_app() -> Flask:
    settings = load_settings()
    app = Flask(__name__)
    app.secret_key = settings["secret_key"]
    tool_conf = make_tool_conf(settings)
    cache = make_cache(app, settings)

    def storage() -> FlaskCacheDataStorage:
        return FlaskCacheDataStorage(cache)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.route("/lti/login", methods=["GET", "POST"])
    def login():
        oidc = FlaskOIDCLogin(FlaskRequest(), tool_conf, launch_data_storage=storage())
        try:
            return oidc.enable_check_cookies().redirect(url_for("launch", _external=True))
        except (LtiException, OIDCException) as e:
            return f"Login refused: {html.escape(str(e))}", 400

    @app.post("/lti/launch")
    def launch():
        launch_storage = storage()
        message = FlaskMessageLaunch(FlaskRequest(), tool_conf, launch_data_storage=launch_storage)
        message.set_public_key_caching(launch_storage, cache_lifetime=PUBLIC_KEY_CACHE_SECONDS)
        try:
            message.validate()
        except LtiException as e:
            return f"Launch refused: {html.escape(str(e))}", 400
        return redirect(url_for("landing", launch_id=message.get_launch_id()), 303)

    @app.get("/landing/<launch_id>")
    def landing(launch_id: str):
        try:
            message = FlaskMessageLaunch.from_cache(
                launch_id, FlaskRequest(), tool_conf, launch_data_storage=storage()
            )
        except LtiException as e:
            return f"Unknown launch: {html.escape(str(e))}", 404
        name = message.get_launch_data().get("name", "")
        return f"<!doctype html><title>Baseline</title><p>Hello {html.escape(name)}</p>"

    return app


app = create_app() if os.environ.get("BASELINE_CONFIG") else None
