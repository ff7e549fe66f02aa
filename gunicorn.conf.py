"""gunicorn settings for `make run` and production: `gunicorn -c gunicorn.conf.py wsgi:app`."""

import os
import re

from gunicorn.glogging import Logger
from gunicorn.workers.gthread import ThreadWorker

bind = os.environ.get("BIND", "127.0.0.1:5000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = 60
# One line per request on stdout; ACCESS_LOG=0 leaves it to the proxy in front (nginx logs
# the same requests), which saves the workers a formatted write per request.
accesslog = None if os.environ.get("ACCESS_LOG", "1").strip().lower() in (
    "0", "false", "no", "off") else "-"


class AccessLogger(Logger):
    """The access log hides the values that carry an LMS's one-time registration token
    (`registration_token`, and Brightspace's `openid_configuration` URL with the token inside)
    and a player's media pass (`/media/<id>/pass/<token>/...`)."""

    SECRETS = re.compile(r"((?:registration_token|openid_configuration)=)[^&\s]*"
                         r"|(/media/\d+/pass/)[^/\s?]+")

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for atom in ("r", "U", "q", "f"):
            if isinstance(atoms.get(atom), str):
                atoms[atom] = self.SECRETS.sub(self._hide, atoms[atom])
        return atoms

    @staticmethod
    def _hide(match: re.Match) -> str:
        return (match.group(1) or match.group(2)) + "[hidden]"


logger_class = AccessLogger
# Forwarded headers are trusted by the app (werkzeug ProxyFix, TRUSTED_PROXIES) and nowhere
# else: gunicorn would otherwise take X-Forwarded-Proto from any client on 127.0.0.1.
secure_scheme_headers: dict[str, str] = {}
# No control socket: a second instance (tests, a second site) must not collide on its path.
control_socket_disable = True
# Threads let a worker serve another request while one waits on the database, Redis or a
# platform's keyset.
threads = int(os.environ.get("GUNICORN_THREADS", "4"))


class StopRefusingWorker(ThreadWorker):
    """gunicorn's threaded worker, which refuses new connections as soon as it stops.

    On SIGTERM (`systemctl stop`) gunicorn's own stops accepting but keeps its copy of the
    listening socket open while it finishes the requests it holds (up to graceful_timeout): the
    kernel still queues new connections there, nobody takes them, and nginx waits on this host
    instead of trying the next. This one closes its copy when it stops accepting; the master
    closed its own first, so the kernel refuses at once and nginx's `proxy_next_upstream error`
    sends the request to another host. (A reload or a restart after max_requests closes one
    worker's copy only: the master and the other workers keep the socket.)
    """

    def set_accept_enabled(self, enabled):
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            for listener in self.sockets:
                listener.close()


if threads > 1:  # one thread is gunicorn's sync worker, whose socket closes with its request
    worker_class = StopRefusingWorker
