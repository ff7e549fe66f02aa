"""nginx in front of the multi-host tests' app hosts: a test CA and certificate for TLS, and a
configuration that balances between two hosts and also reaches each one alone."""

from __future__ import annotations

import datetime
import ipaddress
import signal
import socket
import subprocess
from pathlib import Path

from .netns import run, wait_for
from .server import free_port


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
        server {a} max_fails=1 fail_timeout=10s;
        server {b} max_fails=1 fail_timeout=10s;
    }}
    # One host only, for the tests that need to say which host answers.
    upstream host_a {{ server {a}; }}
    upstream host_b {{ server {b}; }}

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
            dir=folder, a=hosts[0], b=hosts[1], cert=cert, key=key,
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

        wait_for("nginx", listening, timeout=30)

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
