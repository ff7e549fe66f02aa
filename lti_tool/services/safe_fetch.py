"""Fetching JSON from URLs an outsider names, without letting them reach the tool's own network.

Dynamic registration makes the tool GET and POST URLs that anyone who opens /lti/register can
choose. Every request here:

- is https (http only on loopback addresses, and only with `allow_loopback`), with no user name
  or password in the URL, on port 443 or 8443 (any port on loopback with `allow_loopback`);
- resolves the host name once, refuses it if ANY address it resolves to is not a public unicast
  address (private, loopback, link-local, multicast, reserved, shared, documentation; IPv6
  forms that carry an IPv4 address inside — mapped, 6to4, Teredo, NAT64 — are unwrapped first),
  then connects to that vetted address while the TLS SNI, the certificate check and the Host
  header keep the name. There is no second lookup, so DNS rebinding cannot swap the address
  between the check and the connection. (urllib3 with a pool per request on the vetted IP does
  this directly; a custom requests adapter would do the same with more layers in between.)
- follows at most MAX_REDIRECTS redirects, for GET only, and only on the same scheme, host and
  port, re-vetting each hop; a POST that answers with a redirect is refused;
- ignores proxy settings from the environment, takes at most `timeout` seconds to connect and
  per read and `deadline` seconds in all, reads at most `max_bytes` (after decompression),
  and accepts only a JSON answer.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3
from urllib3.exceptions import HTTPError, SSLError
from urllib3.exceptions import TimeoutError as UrllibTimeout

ALLOWED_PORTS = frozenset({443, 8443})
MAX_REDIRECTS = 3
MAX_BYTES = 1024 * 1024
CONNECT_TIMEOUT = 5.0  # seconds to connect, and for each read
DEADLINE = 10.0  # seconds for the whole exchange, redirects included
REDIRECTS = frozenset({301, 302, 303, 307, 308})
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchError(Exception):
    """A URL the guards refused, or an exchange that failed.

    `message` is for people (no token in it); `reason` is a short code for the logs; `status`
    and `body` (the first characters of a non-JSON or refusing answer) are set when the server
    answered.
    """

    def __init__(self, reason: str, message: str, status: int | None = None, body: str = ""):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status
        self.body = body


@dataclass
class Answer:
    status: int
    data: Any  # the parsed JSON
    url: str  # the URL that answered, after redirects


def embedded_ipv4(ip: IPAddress) -> list[IPAddress]:
    """The IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo, NAT64), if any."""
    if ip.version != 6:
        return []
    found: list[IPAddress] = []
    if ip.ipv4_mapped:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour:
        found.append(ip.sixtofour)
    if ip.teredo:
        found.extend(ip.teredo)
    if any(ip in net for net in NAT64):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def is_public(ip: IPAddress) -> bool:
    """A global unicast address, and so is every IPv4 address it carries inside."""
    return all(
        a.is_global and not (a.is_multicast or a.is_reserved or a.is_link_local
                             or a.is_loopback or a.is_private or a.is_unspecified)
        for a in [ip, *embedded_ipv4(ip)]
    )


def is_loopback(ip: IPAddress) -> bool:
    return ip.is_loopback or any(a.is_loopback for a in embedded_ipv4(ip))


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the name resolves to (an address literal resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise FetchError("dns", f"The name {host} could not be resolved ({e}).") from None
    addresses: dict[IPAddress, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        addresses.setdefault(ipaddress.ip_address(sockaddr[0].split("%")[0]), None)
    if not addresses:
        raise FetchError("dns", f"The name {host} has no address.")
    return list(addresses)


@dataclass
class Target:
    """A URL that passed the guards, with the vetted address to connect to."""

    url: str
    scheme: str
    host: str
    port: int
    netloc: str
    path: str
    address: IPAddress


def vet(url: str, allow_loopback: bool = False) -> Target:
    """The URL's target if every guard passes, else FetchError."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchError("bad_url", "The address is not a valid URL.") from None
    if parts.scheme not in ("https", "http") or not host:
        raise FetchError("bad_url", "The address must be an absolute https URL.")
    if parts.username is not None or parts.password is not None:
        raise FetchError("bad_url", "The address must not carry a user name or password.")
    if any(c.isspace() for c in url):
        raise FetchError("bad_url", "The address contains spaces.")
    try:  # an internationalised name goes out (DNS, SNI, Host) in its ASCII form
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise FetchError("bad_url", "The address's host name is not valid.") from None
    addresses = resolve(host, port)
    loopback = allow_loopback and all(is_loopback(a) for a in addresses)
    if not loopback:
        refused = [a for a in addresses if not is_public(a)]
        if refused:
            raise FetchError(
                "private_address",
                f"{host} is a private, loopback or reserved address ({refused[0]}): "
                "the tool only contacts public servers.",
            )
        if parts.scheme != "https":
            raise FetchError("not_https", "The address must use https.")
        if port not in ALLOWED_PORTS:
            allowed = " or ".join(str(p) for p in sorted(ALLOWED_PORTS))
            raise FetchError("port", f"The address must use port {allowed}, not {port}.")
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return Target(url, parts.scheme, host, port, netloc, path, addresses[0])


def fetch_json(
    url: str,
    *,
    method: str = "GET",
    body: Any = None,
    token: str | None = None,
    allow_loopback: bool = False,
    timeout: float = CONNECT_TIMEOUT,
    deadline: float = DEADLINE,
    max_bytes: int = MAX_BYTES,
) -> Answer:
    """GET (or POST `body` as JSON to) `url` under the guards above; the answer's JSON.

    `token` goes out as `Authorization: Bearer`, to this URL's host only. A 4xx or 5xx answer
    raises FetchError with its status and the start of its body.
    """
    stop = time.monotonic() + deadline
    headers = {"Accept": "application/json", "User-Agent": "lti-tool-registration"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    target = vet(url, allow_loopback)
    for _hop in range(MAX_REDIRECTS + 1):
        status, response_headers, raw = _exchange(target, method, headers, payload, timeout,
                                                  stop, max_bytes)
        if status not in REDIRECTS:
            return _json_answer(target.url, status, response_headers, raw)
        location = response_headers.get("location")
        if method != "GET" or not location:
            raise FetchError("redirect", "The server answered with a redirect the tool does not "
                             "follow.", status)
        following = vet(urljoin(target.url, location), allow_loopback)
        if (following.scheme, following.host.lower(), following.port) != (
            target.scheme, target.host.lower(), target.port
        ):
            raise FetchError("redirect", "The server redirected to another site; the tool "
                             "does not follow it there.", status)
        target = following
    raise FetchError("redirect", f"The server redirected more than {MAX_REDIRECTS} times.")


def _exchange(target: Target, method: str, headers: dict[str, str], payload: bytes | None,
              timeout: float, stop: float, max_bytes: int) -> tuple[int, Any, bytes]:
    """One request to the vetted address; the status, headers and at most `max_bytes`."""
    remaining = stop - time.monotonic()
    if remaining <= 0:
        raise FetchError("timeout", "The server took too long to answer.")
    limits = urllib3.Timeout(connect=min(timeout, remaining), read=min(timeout, remaining))
    if target.scheme == "https":
        pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
            str(target.address), target.port, timeout=limits, retries=False, maxsize=1,
            server_hostname=target.host, assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED", ca_certs=certifi.where(),
        )
    else:
        pool = urllib3.HTTPConnectionPool(
            str(target.address), target.port, timeout=limits, retries=False, maxsize=1
        )
    try:
        response = pool.urlopen(
            method, target.path, body=payload, headers={"Host": target.netloc, **headers},
            redirect=False, retries=False, preload_content=False, assert_same_host=False,
        )
        try:
            length = response.headers.get("content-length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise _too_large(max_bytes)
            raw = bytearray()
            # read1 returns what has arrived, so a server trickling bytes meets the deadline.
            while chunk := response.read1(64 * 1024, decode_content=True):
                raw += chunk
                if len(raw) > max_bytes:
                    raise _too_large(max_bytes)
                if time.monotonic() > stop:
                    raise FetchError("timeout", "The server took too long to answer.")
            return response.status, response.headers, bytes(raw)
        finally:
            response.close()
    except (UrllibTimeout, TimeoutError):
        raise FetchError("timeout", "The server took too long to answer.") from None
    except SSLError as e:
        why = ("its certificate could not be verified" if "CERTIFICATE_VERIFY_FAILED" in str(e)
               else "the secure connection failed")
        raise FetchError("tls", f"The server could not be reached: {why}.") from None
    except HTTPError as e:
        raise FetchError("connection", f"The server could not be reached ({_why(e)}).") from None
    except OSError as e:
        raise FetchError("connection", f"The server could not be reached ({e}).") from None
    finally:
        pool.close()


def _json_answer(url: str, status: int, headers, raw: bytes) -> Answer:
    text = raw.decode("utf-8", "replace")
    if status >= 400:
        raise FetchError("status", f"The server answered with error {status}.", status,
                         text[:300])
    content_type = (headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise FetchError("not_json", "The server's answer is not JSON.", status, text[:300])
    try:
        data = json.loads(raw)
    except ValueError:
        raise FetchError("not_json", "The server's answer is not valid JSON.", status) from None
    return Answer(status, data, url)


def _too_large(max_bytes: int) -> FetchError:
    return FetchError("too_large", f"The server's answer is larger than {max_bytes // 1024} KB.")


def _why(error: HTTPError) -> str:
    reason = getattr(error, "reason", None)
    return str(reason or error.__class__.__name__)
