"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi ...`, `celery -A wsgi.celery ...`."""

from lti_tool import create_app

app = create_app()
celery = app.extensions["celery"]
