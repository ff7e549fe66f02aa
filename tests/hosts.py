"""Two app hosts behind nginx, for the multi-host tests (tests/test_hosts.py).

Each host is a network namespace (`ip netns`) joined to this one by a veth pair, running the
tool with gunicorn as production does. nginx, in this namespace, terminates TLS with a test
certificate and balances between the hosts. Both hosts share one PostgreSQL database, one Redis
(with a key prefix of the run) and one media folder.

PostgreSQL, Redis and the test LMS's keyset listen on 127.0.0.1 of this namespace, which a host
cannot reach: each host gets relays (tests/netns.py, threads of this process) listening on ITS
127.0.0.1 at the same ports and forwarding to the real services. The tool's settings are then
the same on both hosts as on one machine. nginx and the certificates: tests/proxy.py.

Everything made here (processes, namespaces, veth pairs, the database, Redis keys, files) is
removed on exit, also when the run fails. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests
from sqlalchemy.engine import make_url

from .databases import fresh_database
from .lms import TestPlatform
from .netns import Namespace, Relay, free_subnet, wait_for
from .proxy import Nginx, write_certificates

ROOT = Path(__file__).resolve().parent.parent
APP_PORT = 8000
START_TIMEOUT = 45  # seconds for a host's gunicorn or nginx to answer
# Settings of the tool a developer's shell may hold that must not leak into the hosts.
TOOL_ENV = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "INSTANCE_PATH", "MEDIA_ROOT",
            "TRUSTED_PROXIES", "TRUSTED_HOSTS", "PUBLIC_BASE_URL", "CACHE_KEY_PREFIX", "BIND",
            "WEB_CONCURRENCY", "CELERY_BROKER_URL", "MEDIA_ACCEL_REDIRECT",
            "LTI_TOOL_DEVELOPMENT")
CLIENT_ID = "hosts-client"
DEPLOYMENT_ID = "5"


def missing_requirements(database_server: str | None, redis_url: str | None) -> str | None:
    """Why the hosts cannot be built here, or None."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "needs root on Linux (network namespaces)"
    for tool in ("ip", "nginx"):
        if not shutil.which(tool):
            return f"needs `{tool}` (Debian's iproute2 and nginx)"
    if not database_server or make_url(database_server).get_backend_name() != "postgresql":
        return "needs TEST_DATABASE_URL on PostgreSQL: several hosts share one database"
    if not redis_url:
        return "needs REDIS_URL: several hosts share one cache"
    for name, url, default in (("PostgreSQL", database_server, 5432), ("Redis", redis_url, 6379)):
        parts = urlsplit(url)
        try:
            socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default),
                                     timeout=3).close()
        except OSError as e:
            return f"{name} unreachable at {parts.hostname}:{parts.port}: {e}"
    return None


# The app hosts


@dataclass
class Host:
    """One app host: a namespace, its relays and gunicorn (two workers) on port 8000."""

    name: str
    namespace: Namespace
    env: dict[str, str]
    log_path: Path
    relays: list[Relay] = field(default_factory=list)
    process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{self.namespace.inside}:{APP_PORT}"

    def start(self) -> None:
        command = ["ip", "netns", "exec", self.namespace.name, sys.executable, "-m", "gunicorn",
                   "-c", "gunicorn.conf.py", "-w", "2", "-b", f"0.0.0.0:{APP_PORT}", "wsgi:app"]
        with open(self.log_path, "a") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT)

        def healthy() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn on {self.name} exited:\n{self.log()}")
            try:
                answer = requests.get(f"http://{self.address}/healthz", timeout=2,
                                      headers={"Host": "127.0.0.1"})
                return answer.status_code == 200
            except requests.RequestException:
                return False

        wait_for(f"gunicorn on host {self.name}", healthy, timeout=START_TIMEOUT)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def crash(self) -> None:
        """Every process of the host killed at once, as when the machine dies."""
        self.namespace.kill_all(signal.SIGKILL)
        self._gone(10)

    def shut_down(self) -> None:
        """gunicorn's graceful stop (SIGTERM, what `systemctl stop` sends): the workers finish
        the requests they hold, then exit."""
        self.process.send_signal(signal.SIGTERM)
        self._gone(45)

    def _gone(self, timeout: float) -> None:
        if self.process is not None:
            self.process.wait(timeout=timeout)
        wait_for(f"host {self.name} to stop", lambda: not self.namespace.pids(), timeout=10)
        # A killed process leaves the namespace a moment before the kernel closes its
        # listening socket: the host is down once it refuses connections.
        wait_for(f"host {self.name} to refuse connections", self.refuses, timeout=10)

    def refuses(self) -> bool:
        try:
            socket.create_connection((self.namespace.inside, APP_PORT), timeout=1).close()
        except ConnectionRefusedError:
            return True
        except OSError:
            pass
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # quick shutdown
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.namespace.kill_all(signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        for relay in self.relays:
            relay.close()
        self.relays.clear()

    def log(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Cluster:
    """What the tests see: the public URL (nginx balancing), one URL per host, the LMS."""

    nginx: Nginx
    hosts: dict[str, Host]
    platform: TestPlatform
    ca: Path
    database_url: str
    media_root: Path

    @property
    def public(self) -> str:
        return self.nginx.url("tool")

    def pinned(self, host: str) -> str:
        """nginx's https address that always reaches `host` ("a" or "b")."""
        return self.nginx.url(f"host_{host}")

    def session(self) -> requests.Session:
        session = requests.Session()
        session.verify = str(self.ca)
        # Otherwise REQUESTS_CA_BUNDLE in the environment would replace the test CA.
        session.trust_env = False
        return session

    def logs(self) -> str:
        parts = [f"== host {name} ==\n{host.log()}" for name, host in self.hosts.items()]
        parts += [f"== nginx access ==\n{self.nginx.log()}",
                  f"== nginx errors ==\n{self.nginx.log('error.log', 60)}"]
        return "\n".join(parts)


def tool_cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args[:2])} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def _on_loopback(url: str, default_port: int) -> tuple[str, tuple[str, int]]:
    """`url` with its host made 127.0.0.1 (as a host reaches it through its relay), and the
    real (host, port) the relay forwards to."""
    parts = urlsplit(url)
    port = parts.port or default_port
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = f"{netloc[0]}@" if len(netloc) == 2 else ""
    local = parts._replace(netloc=f"{userinfo}127.0.0.1:{port}").geturl()
    return local, (parts.hostname or "127.0.0.1", port)


def delete_redis_keys(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])
    finally:
        client.close()


@contextlib.contextmanager
def cluster(database_server: str, redis_url: str) -> Iterator[Cluster]:
    """Build the two hosts, nginx and the test LMS; tear every part down afterwards."""
    run_id = secrets.token_hex(3)
    prefix = f"lti_hosts_{run_id}:"
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lti-hosts-")))
        media = tmp / "media"
        media.mkdir()
        database = stack.enter_context(fresh_database(database_server, "lti_hosts"))
        stack.callback(delete_redis_keys, redis_url, prefix)
        platform = TestPlatform(issuer="https://lms.example.edu", client_id=CLIENT_ID,
                                deployment_id=DEPLOYMENT_ID)
        stack.callback(platform.server.close)

        base_env = {k: v for k, v in os.environ.items() if k not in TOOL_ENV}
        root_env = base_env | {"DATABASE_URL": database, "REDIS_URL": redis_url,
                               "CACHE_KEY_PREFIX": prefix, "INSTANCE_PATH": str(tmp / "cli"),
                               "MEDIA_ROOT": str(media)}
        tool_cli(root_env, "db", "upgrade")
        tool_cli(root_env, "keys", "ensure")
        keyset = f"http://127.0.0.1:{platform.server.port}/mod/lti/certs.php"
        tool_cli(root_env, "platform", "add", "--name", "Hosts LMS", "--issuer", platform.issuer,
                 "--client-id", CLIENT_ID,
                 "--auth-login-url", f"{platform.issuer}/mod/lti/auth.php",
                 "--auth-token-url", f"{platform.issuer}/mod/lti/token.php",
                 "--key-set-url", keyset, "--deployment-id", DEPLOYMENT_ID)

        local_db, db_target = _on_loopback(database, 5432)
        local_redis, redis_target = _on_loopback(redis_url, 6379)
        forwards = {db_target[1]: db_target, redis_target[1]: redis_target,
                    platform.server.port: ("127.0.0.1", platform.server.port)}

        network = free_subnet()
        namespaces = {}
        for i, name in enumerate(("a", "b")):
            subnet = list(network.subnets(new_prefix=30))[i]
            ns = Namespace(f"lti-{name}-{run_id}", f"vlti{name}{run_id}", subnet)
            stack.callback(ns.delete)  # registered first: runs even if create() fails half-way
            ns.create()
            namespaces[name] = ns

        cert_dir = tmp / "tls"
        cert_dir.mkdir()
        ca, cert, key = write_certificates(cert_dir)
        nginx = Nginx(tmp / "nginx", tuple(f"{ns.inside}:{APP_PORT}" for ns in namespaces.values()),
                      cert, key, media)
        secret = secrets.token_hex(32)
        hosts = {}
        for name, ns in namespaces.items():
            env = base_env | {
                "SECRET_KEY": secret, "DATABASE_URL": local_db, "REDIS_URL": local_redis,
                "CACHE_KEY_PREFIX": prefix, "MEDIA_ROOT": str(media), "TRUSTED_PROXIES": "1",
                "PUBLIC_BASE_URL": nginx.url("tool"), "INSTANCE_PATH": str(tmp / f"host-{name}"),
                "MEDIA_ACCEL_REDIRECT": "/internal-media/",
            }
            host = Host(name, ns, env, tmp / f"host-{name}.log")
            stack.callback(host.stop)
            host.relays = [Relay(ns.name, port, target) for port, target in forwards.items()]
            hosts[name] = host
        errors: list[BaseException] = []
        threads = [threading.Thread(target=_start, args=(h, errors)) for h in hosts.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=START_TIMEOUT + 10)
        if errors:
            raise errors[0]
        stack.callback(nginx.stop)
        nginx.start()
        yield Cluster(nginx, hosts, platform, ca, database, media)


def _start(host: Host, errors: list[BaseException]) -> None:
    try:
        host.start()
    except BaseException as e:  # reported by the caller
        errors.append(e)
