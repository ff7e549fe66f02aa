"""LTI 1.3 media tool: the application factory."""

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, abort, request

from . import admin, audit, cli, health, home, launch, media, security, sessions, templating, worker
from .config import from_env, private_instance_files
from .errors import register_error_handlers
from .extensions import cache, csrf, db, login_manager, migrate
from .registration import bp as registration_bp
from .services import platform_storage


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from the environment; `config` overrides settings (tests use it).

    INSTANCE_PATH (absolute) moves the instance folder: database, secret key, media, cache.
    """
    app = Flask(
        __name__,
        instance_path=os.environ.get("INSTANCE_PATH") or None,
        instance_relative_config=True,
        template_folder="../templates",
        static_folder="../static",
    )
    app.config.from_mapping(from_env(app.instance_path))
    if config:
        app.config.from_mapping(config)
    # The request may carry the form fields around the largest accepted file.
    if app.config.get("MAX_CONTENT_LENGTH") is None:
        app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_UPLOAD_BYTES"] + 1024 * 1024
    configure_logging(app)
    private_instance_files(app.config)
    register_extensions(app)
    security.register_converters(app)
    register_blueprints(app)
    register_error_handlers(app)
    security.init_app(app)
    templating.init_app(app)
    cli.init_app(app)
    worker.celery_init_app(app)
    return app


def configure_logging(app: Flask) -> None:
    logging.basicConfig(
        level=app.config["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def register_extensions(app: Flask) -> None:
    db.init_app(app)
    migrate.init_app(
        app, db, directory=str(Path(app.root_path).parent / "migrations"), render_as_batch=True
    )
    login_manager.init_app(app)
    csrf.init_app(app)
    cache.init_app(app)
    sessions.init_app(app)
    login_manager.unauthorized_handler(_unauthorized)


def _unauthorized():
    if platform_storage.cookieless_frame(request):
        abort(401, description=platform_storage.COOKIELESS_FRAME)
    abort(401, description="Please open the media tool again from your course.")


def register_blueprints(app: Flask) -> None:
    app.register_blueprint(health.bp)
    app.register_blueprint(home.bp)
    app.register_blueprint(launch.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(audit.bp)
    app.register_blueprint(media.bp)
    app.register_blueprint(registration_bp)
    csrf.exempt(launch.bp)
