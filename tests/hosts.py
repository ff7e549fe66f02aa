"""Two app hosts behind nginx, for the multi-host tests (tests/test_hosts.py).

Each host is a network namespace (`ip netns`) joined to this one by a veth pair, running the
tool with gunicorn as production does. nginx, in this namespace, terminates TLS with a test
certificate and balances between the hosts. Both hosts share one PostgreSQL database, one Redis
(with a key prefix of the run) and one media folder.

PostgreSQL, Redis and the test LMS's keyset listen on 127.0.0.1 of this namespace, which a host
cannot reach: each host gets relays listening on ITS 127.0.0.1 at the same ports, forwarding to
the real services. The relays are threads of this process: a socket belongs to the namespace
it was created in, so the listening socket is made by a thread that first enters the host's
namespace (setns), and the forwarded connections are made from this namespace. The tool's
settings are then the same on both hosts as on one machine.

Everything made here (processes, namespaces, veth pairs, the database, Redis keys, files) is
removed on exit, also when the run fails. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests
from sqlalchemy.engine import make_url

from .databases import fresh_database
from .lms import TestPlatform

ROOT = Path(__file__).resolve().parent.parent
CLONE_NEWNET = 0x40000000
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


# Shell commands


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip() or done.stdout}")
    return done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, ready, timeout: float = START_TIMEOUT, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(every)
    raise RuntimeError(f"{what}: not ready within {timeout:g} s")


# Network namespaces


def free_subnet() -> ipaddress.IPv4Network:
    """A 10.213.x.0/29 no interface of this machine uses (two /30 links, one per host)."""
    used = run("ip", "-4", "-o", "addr").stdout
    for _ in range(100):
        third, fourth = secrets.randbelow(256), 8 * secrets.randbelow(32)
        net = ipaddress.ip_network(f"10.213.{third}.{fourth}/29")
        if not any(str(a) + "/" in used for a in net):
            return net
    raise RuntimeError("no free 10.213.x.y/29 subnet")


@dataclass
class Namespace:
    """A network namespace linked to this one by a veth pair: `link` here, eth0 inside."""

    name: str
    link: str  # the veth's name on this side
    network: ipaddress.IPv4Network  # a /30: this side's address, then the namespace's
    made: bool = False

    @property
    def outside(self) -> str:
        return str(list(self.network.hosts())[0])

    @property
    def inside(self) -> str:
        """The namespace's address (on its eth0)."""
        return str(list(self.network.hosts())[1])

    def create(self) -> None:
        bits = self.network.prefixlen
        run("ip", "netns", "add", self.name)
        self.made = True
        run("ip", "link", "add", self.link, "type", "veth", "peer", "name", "eth0",
            "netns", self.name)
        run("ip", "addr", "add", f"{self.outside}/{bits}", "dev", self.link)
        run("ip", "link", "set", self.link, "up")
        run("ip", "-n", self.name, "addr", "add", f"{self.inside}/{bits}", "dev", "eth0")
        run("ip", "-n", self.name, "link", "set", "eth0", "up")
        run("ip", "-n", self.name, "link", "set", "lo", "up")

    def pids(self) -> list[int]:
        done = run("ip", "netns", "pids", self.name, check=False)
        return [int(p) for p in done.stdout.split()]

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def unplug(self) -> None:
        """The host vanishes from the network: its end of the cable goes down."""
        run("ip", "-n", self.name, "link", "set", "eth0", "down")

    def plug(self) -> None:
        run("ip", "-n", self.name, "link", "set", "eth0", "up")

    def delete(self) -> None:
        if not self.made:
            return
        self.kill_all()
        wait_for(f"processes of {self.name} to end", lambda: not self.pids(), timeout=15)
        run("ip", "netns", "del", self.name, check=False)
        # Deleting the namespace deletes eth0 and so its peer; make sure of it.
        if run("ip", "link", "show", self.link, check=False).returncode == 0:
            run("ip", "link", "del", self.link, check=False)
        self.made = False


def listen_in(namespace: str, port: int) -> socket.socket:
    """A socket listening on 127.0.0.1:port inside `namespace` (made by a thread that enters
    the namespace; setns changes only the calling thread's namespace)."""
    made: dict[str, object] = {}

    def enter_and_listen() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                made["error"] = OSError(ctypes.get_errno(), f"setns {namespace}")
                return
        finally:
            os.close(fd)
        try:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(128)
            made["socket"] = s
        except OSError as e:
            made["error"] = e

    thread = threading.Thread(target=enter_and_listen, name=f"setns-{namespace}")
    thread.start()
    thread.join(timeout=10)
    if "socket" not in made:
        raise RuntimeError(f"cannot listen in {namespace}:{port}: {made.get('error')}")
    return made["socket"]  # type: ignore[return-value]


class Relay:
    """Forwards connections to 127.0.0.1:port inside a namespace to `target` here."""

    def __init__(self, namespace: str, port: int, target: tuple[str, int]):
        self.listener = listen_in(namespace, port)
        self.target = target
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        self.thread = threading.Thread(target=self._accept, daemon=True,
                                       name=f"relay-{namespace}-{port}")
        self.thread.start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                if self.closed.is_set():
                    client.close()
                    upstream.close()
                    return
                self.sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # One side ended: end both, as a cable would.
            with self.lock:
                for s in (source, sink):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(timeout=5)
        with self.lock:
            for s in self.sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self.sockets.clear()


# TLS


def write_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate it signed for 127.0.0.1: (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "LTI tool hosts test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "tool.pem", folder / "tool.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


# nginx

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format upstream '$remote_addr "$request" $status upstream=$upstream_addr '
                        'upstream_status=$upstream_status upstream_bytes=$upstream_response_length';
    access_log {dir}/access.log upstream;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    types {{ video/mp4 mp4; }}
    default_type application/octet-stream;

    # A host that fails once is left out for 10 s; a request whose connection failed (never
    # sent, so even a POST) or timed out while connecting goes to the other host.
    upstream tool {{
        server {a}:{app_port} max_fails=1 fail_timeout=10s;
        server {b}:{app_port} max_fails=1 fail_timeout=10s;
    }}
    # One host only, for the tests that need to say which host answers.
    upstream host_a {{ server {a}:{app_port}; }}
    upstream host_b {{ server {b}:{app_port}; }}

    proxy_next_upstream error timeout;
    proxy_next_upstream_tries 2;
    proxy_connect_timeout 1s;
    proxy_read_timeout 60s;
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Forwarded-Host $host;
    proxy_set_header X-Forwarded-Port $server_port;
    client_max_body_size 100m;
    ssl_certificate {cert};
    ssl_certificate_key {key};

{servers}
}}
"""

NGINX_SERVER = """\
    server {{
        listen 127.0.0.1:{port} ssl;
        {extra}
        location / {{
            proxy_pass http://{upstream};
            add_header X-Upstream $upstream_addr always;
        }}
        # The app answers a media request with X-Accel-Redirect: /internal-media/<file>.
        # nginx keeps the app's Content-Type, Content-Disposition and Cache-Control only:
        # the headers every user file carries are set here again, as deploy/nginx does.
        location /internal-media/ {{
            internal;
            alias {media}/;
            add_header Content-Security-Policy "sandbox" always;
            add_header X-Content-Type-Options "nosniff" always;
        }}
    }}
"""


class Nginx:
    """Debian's nginx, in the foreground, with a configuration and files of its own."""

    def __init__(self, folder: Path, hosts: tuple[str, str], cert: Path, key: Path,
                 media: Path):
        self.folder = folder
        (folder / "tmp").mkdir(parents=True)
        self.ports = {name: free_port() for name in ("tool", "host_a", "host_b")}
        # Balanced: a request in flight on a host that vanished fails after 10 s, not 60.
        extra = {"tool": "proxy_read_timeout 10s;"}
        servers = "".join(NGINX_SERVER.format(port=port, upstream=name, media=media,
                                              extra=extra.get(name, ""))
                          for name, port in self.ports.items())
        self.conf = folder / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(
            dir=folder, a=hosts[0], b=hosts[1], app_port=APP_PORT, cert=cert, key=key,
            servers=servers))
        self.process: subprocess.Popen | None = None

    def url(self, name: str = "tool") -> str:
        return f"https://127.0.0.1:{self.ports[name]}"

    def start(self) -> None:
        command = ["nginx", "-p", str(self.folder), "-c", str(self.conf),
                   "-e", str(self.folder / "error.log")]
        run(*command, "-t")
        with open(self.folder / "stderr.log", "w") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)

        def listening() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.log('error.log')}")
            try:
                socket.create_connection(("127.0.0.1", self.ports["host_b"]), 1).close()
                return True
            except OSError:
                return False

        wait_for("nginx", listening)

    def log(self, name: str = "access.log", lines: int = 40) -> str:
        path = self.folder / name
        return "\n".join(path.read_text().splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish the open requests
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


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

        wait_for(f"gunicorn on host {self.name}", healthy)

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
        nginx = Nginx(tmp / "nginx", (namespaces["a"].inside, namespaces["b"].inside), cert,
                      key, media)
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
