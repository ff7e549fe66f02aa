"""The SSRF guards of the registration fetcher: refused addresses (as literals and as names that
resolve to them), the vetted address pinned, redirects, size and time limits, JSON only."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lti_tool.services.safe_fetch import FetchError, fetch_json, vet


class Server:
    """A loopback server whose answer per path is a function of the handler."""

    def __init__(self):
        self.routes = {}
        self.seen = []  # (method, path, headers)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one(self):
                server.seen.append((self.command, self.path, dict(self.headers)))
                route = server.routes.get(self.path.partition("?")[0])
                if route is None:
                    return self.reply(404, b"{}")
                route(self)

            do_GET = do_POST = handle_one

            def reply(self, status, body: bytes, content_type="application/json", **headers):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in headers.items():
                        self.send_header(name.replace("_", "-"), value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    s.routes["/config"] = lambda h: h.reply(200, b'{"issuer": "x"}')
    yield s
    s.close()


def fake_dns(monkeypatch, answers: dict[str, list[str]]):
    """Names resolve to these addresses (the resolver, not the fetcher, is stubbed)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                     (a, port)) for a in answers[host]]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("url", [
    "https://10.0.0.1/config",
    "https://172.16.5.4/config",
    "https://192.168.1.1/config",
    "https://169.254.169.254/latest/meta-data",  # cloud metadata: link-local
    "https://127.0.0.1/config",
    "https://127.8.9.10/config",
    "https://2130706433/config",  # 127.0.0.1 written as one number
    "https://0.0.0.0/config",
    "https://100.64.0.1/config",  # shared address space (carrier NAT)
    "https://224.0.0.1/config",  # multicast
    "https://240.0.0.1/config",  # reserved
    "https://192.0.2.10/config",  # documentation
    "https://[::1]/config",
    "https://[fe80::1]/config",
    "https://[fc00::1]/config",
    "https://[::ffff:127.0.0.1]/config",  # IPv4-mapped loopback
    "https://[::ffff:10.0.0.1]/config",
    "https://[64:ff9b::a00:1]/config",  # NAT64 of 10.0.0.1
    "https://[2002:7f00:1::]/config",  # 6to4 of 127.0.0.1
    "https://[ff02::1]/config",
    "https://localhost/config",  # a name resolving to loopback
])
def test_private_loopback_and_reserved_addresses_are_refused(url):
    with pytest.raises(FetchError) as refused:
        fetch_json(url)
    assert refused.value.reason == "private_address"


def test_a_name_resolving_to_a_private_address_is_refused(monkeypatch):
    fake_dns(monkeypatch, {"lms.example.edu": ["10.1.2.3"]})
    with pytest.raises(FetchError) as refused:
        vet("https://lms.example.edu/config")
    assert refused.value.reason == "private_address"


def test_a_name_with_any_private_address_is_refused(monkeypatch):
    fake_dns(monkeypatch, {"lms.example.edu": ["93.184.215.14", "127.0.0.1"]})
    with pytest.raises(FetchError) as refused:
        vet("https://lms.example.edu/config")
    assert refused.value.reason == "private_address"


def test_a_public_name_is_vetted_and_its_address_kept(monkeypatch):
    fake_dns(monkeypatch, {"lms.example.edu": ["93.184.215.14"]})
    target = vet("https://lms.example.edu/moodle/config?x=1")
    assert str(target.address) == "93.184.215.14"
    assert (target.host, target.port, target.path) == ("lms.example.edu", 443,
                                                      "/moodle/config?x=1")


@pytest.mark.parametrize("url, reason", [
    ("http://93.184.215.14/config", "not_https"),
    ("https://93.184.215.14:8080/config", "port"),
    ("https://user:secret@93.184.215.14/config", "bad_url"),
    ("ftp://93.184.215.14/config", "bad_url"),
    ("file:///etc/passwd", "bad_url"),
    ("https:///config", "bad_url"),
    ("https://93.184.215.14:99999/config", "bad_url"),
    ("https://no-such-host.invalid/config", "dns"),
])
def test_other_urls_are_refused(url, reason):
    with pytest.raises(FetchError) as refused:
        vet(url)
    assert refused.value.reason == reason


def test_loopback_is_refused_unless_allowed(server):
    with pytest.raises(FetchError) as refused:
        fetch_json(f"{server.base}/config")
    assert refused.value.reason == "private_address"
    assert server.seen == []
    assert fetch_json(f"{server.base}/config", allow_loopback=True).data == {"issuer": "x"}


def test_allowing_loopback_admits_no_private_address():
    with pytest.raises(FetchError) as refused:
        vet("http://10.0.0.1/config", allow_loopback=True)
    assert refused.value.reason == "private_address"


def test_the_vetted_address_is_used_and_the_name_kept(server, monkeypatch):
    """The connection goes to the address that was checked; the Host header keeps the name."""
    fake_dns(monkeypatch, {"lms.test": ["127.0.0.1"]})
    answer = fetch_json(f"http://lms.test:{server.port}/config", allow_loopback=True,
                        token="t0ken")
    assert answer.data == {"issuer": "x"}
    _method, _path, headers = server.seen[0]
    assert headers["Host"] == f"lms.test:{server.port}"
    assert headers["Authorization"] == "Bearer t0ken"


def test_a_redirect_on_the_same_site_is_followed(server):
    server.routes["/old"] = lambda h: h.reply(302, b"", Location="/config")
    answer = fetch_json(f"{server.base}/old", allow_loopback=True)
    assert answer.data == {"issuer": "x"}
    assert answer.url == f"{server.base}/config"


@pytest.mark.parametrize("location", [
    "http://localhost:{port}/config",  # another host name, the same machine
    "http://127.0.0.1:1/config",  # another port
    "https://93.184.215.14/config",
])
def test_a_redirect_to_another_site_is_refused(server, location):
    server.routes["/old"] = lambda h: h.reply(
        302, b"", Location=location.format(port=server.port))
    with pytest.raises(FetchError) as refused:
        fetch_json(f"{server.base}/old", allow_loopback=True, token="t0ken")
    assert refused.value.reason == "redirect"
    assert len(server.seen) == 1  # the token went nowhere else


def test_a_redirect_to_a_private_address_is_refused(server):
    server.routes["/old"] = lambda h: h.reply(302, b"", Location="https://10.0.0.1/config")
    with pytest.raises(FetchError) as refused:
        fetch_json(f"{server.base}/old", allow_loopback=True)
    assert refused.value.reason == "private_address"


def test_redirect_loops_end(server):
    server.routes["/loop"] = lambda h: h.reply(302, b"", Location="/loop")
    with pytest.raises(FetchError) as refused:
        fetch_json(f"{server.base}/loop", allow_loopback=True)
    assert refused.value.reason == "redirect"
    assert len(server.seen) == 4


def test_a_post_is_never_redirected(server):
    server.routes["/register"] = lambda h: h.reply(307, b"", Location="/config")
    with pytest.raises(FetchError) as refused:
        fetch_json(f"{server.base}/register", method="POST", body={"a": 1}, allow_loopback=True)
    assert refused.value.reason == "redirect"
    assert len(server.seen) == 1


def test_an_oversized_answer_is_refused(server):
    big = json.dumps({"padding": "x" * 2_000_000}).encode()
    server.routes["/big"] = lambda h: h.reply(200, big)
    with pytest.raises(FetchError) as refused:
        fetch_json(f"{server.base}/big", allow_loopback=True)
    assert refused.value.reason == "too_large"


def test_an_oversized_answer_without_a_length_is_cut_off(server):
    def endless(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.end_headers()  # no Content-Length: the body runs until the connection closes
        try:
            for _ in range(100):
                handler.wfile.write(b" " * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        handler.close_connection = True

    server.routes["/endless"] = endless
    with pytest.raises(FetchError) as refused:
        fetch_json(f"{server.base}/endless", allow_loopback=True, max_bytes=200_000)
    assert refused.value.reason == "too_large"


def test_a_slow_answer_times_out(server):
    def slow(handler):
        time.sleep(3)
        handler.reply(200, b"{}")

    server.routes["/slow"] = slow
    started = time.monotonic()
    with pytest.raises(FetchError) as refused:
        fetch_json(f"{server.base}/slow", allow_loopback=True, timeout=0.5)
    assert refused.value.reason == "timeout"
    assert time.monotonic() - started < 2


def test_a_trickling_answer_meets_the_deadline(server):
    def trickle(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "100")
        handler.end_headers()
        try:
            for _ in range(100):
                handler.wfile.write(b" ")
                handler.wfile.flush()
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass

    server.routes["/trickle"] = trickle
    started = time.monotonic()
    with pytest.raises(FetchError) as refused:
        fetch_json(f"{server.base}/trickle", allow_loopback=True, timeout=1, deadline=1.5)
    assert refused.value.reason == "timeout"
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("content_type, body", [
    ("text/html", b"<html>hello</html>"),
    ("text/plain", b'{"looks": "like json"}'),
    ("application/json", b"<html>not json</html>"),
])
def test_only_json_is_accepted(server, content_type, body):
    server.routes["/page"] = lambda h: h.reply(200, body, content_type)
    with pytest.raises(FetchError) as refused:
        fetch_json(f"{server.base}/page", allow_loopback=True)
    assert refused.value.reason == "not_json"


def test_an_error_status_keeps_the_start_of_the_answer(server):
    server.routes["/register"] = lambda h: h.reply(401, b"token_already_used", "text/plain")
    with pytest.raises(FetchError) as refused:
        fetch_json(f"{server.base}/register", method="POST", body={}, allow_loopback=True)
    assert (refused.value.reason, refused.value.status) == ("status", 401)
    assert refused.value.body == "token_already_used"


def test_a_post_sends_json(server):
    server.routes["/register"] = lambda h: h.reply(200, b'{"client_id": "1"}')
    answer = fetch_json(f"{server.base}/register", method="POST", body={"a": 1},
                        allow_loopback=True)
    assert answer.data == {"client_id": "1"}
    method, _path, headers = server.seen[0]
    assert (method, headers["Content-Type"]) == ("POST", "application/json")


def test_proxy_settings_are_ignored(server, monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://10.0.0.1:3128")
    assert fetch_json(f"{server.base}/config", allow_loopback=True).data == {"issuer": "x"}


def test_an_international_name_goes_out_in_ascii(server, monkeypatch):
    fake_dns(monkeypatch, {"xn--lms-dma.test": ["127.0.0.1"]})
    fetch_json(f"http://lmsé.test:{server.port}/config", allow_loopback=True)
    assert server.seen[0][2]["Host"] == f"xn--lms-dma.test:{server.port}"


def test_https_names_the_host_to_tls_and_checks_its_certificate(server, monkeypatch, tmp_path):
    """The connection goes to the vetted address, TLS is told the name (SNI) and the
    certificate is checked: this self-signed one is refused."""
    import ssl

    from .server import self_signed_certificate

    certificate, key = self_signed_certificate(tmp_path)
    names = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
    fake_dns(monkeypatch, {"lms.test": ["127.0.0.1"]})

    with pytest.raises(FetchError) as refused:
        fetch_json(f"https://lms.test:{server.port}/config", allow_loopback=True)
    assert refused.value.reason == "tls"
    assert "certificate could not be verified" in refused.value.message
    assert names == ["lms.test"]
