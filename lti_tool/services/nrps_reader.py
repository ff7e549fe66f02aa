"""Reading a course roster from its platform (NRPS 2.0): paged requests, Link headers, the
membership container, and where a roster may be fetched from (an SSRF guard)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..models import LTIPlatform
from . import platform_tokens, platforms
from .accounts import Profile
from .platform_tokens import NRPS_SCOPE

log = logging.getLogger(__name__)

ACCEPT = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
PAGE_SIZE = 100  # members asked for per page (`limit`); Moodle pages only when it is given
MAX_PAGES = 1000  # a roster longer than this is treated as a paging loop: incomplete
TIMEOUT = (5, 30)  # seconds: connect, read, per page
MAX_PAGE_BYTES = 4 * 1024 * 1024
GONE = {"inactive", "deleted"}  # statuses of people no longer in the course


class RosterError(Exception):
    """The roster could not be read completely (a malformed answer, a paging loop)."""

    transient = False
    status = None

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class Member:
    """One roster entry, cut to size."""

    sub: str
    active: bool
    roles: tuple[str, ...]
    profile: Profile


def with_limit(url: str, limit: int) -> str:
    """`url` with `limit=<limit>` in its query, replacing any limit there; every other parameter
    is kept exactly as written."""
    base, hash_, fragment = url.partition("#")
    path, _, query = base.partition("?")
    params = [p for p in query.split("&") if p and p.split("=", 1)[0] != "limit"]
    params.append(f"limit={limit}")
    return f"{path}?{'&'.join(params)}" + (hash_ + fragment if hash_ else "")


_LINK = re.compile(r"<([^>]*)>([^<]*)")
_REL = re.compile(r"""(?:^|;)\s*rel\s*=\s*(?:"([^"]*)"|([^\s;,]+))""", re.IGNORECASE)


def next_link(header: str | None) -> str | None:
    """The `rel="next"` URL of a Link header, exactly as sent (Canvas's page tokens are
    case-sensitive); every comma-separated link is read, `rel` compared case-insensitively."""
    for match in _LINK.finditer(header or ""):
        rel = _REL.search(match.group(2))
        if rel and "next" in (rel.group(1) or rel.group(2) or "").lower().split():
            return match.group(1).strip()
    return None


def _text(value: Any, limit: int = 255) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def parse_page(body: Any) -> list[Member]:
    """The members of one membership container; RosterError if it is not one."""
    if not isinstance(body, dict) or not isinstance(body.get("members"), list):
        raise RosterError("The platform's answer is not a roster (no list of members).")
    members = []
    for entry in body["members"]:
        if not isinstance(entry, dict):
            continue
        sub = entry.get("user_id")
        sub = str(sub)[:255] if isinstance(sub, str | int) and str(sub) else ""
        status = entry.get("status")
        roles = entry.get("roles")
        members.append(Member(
            sub=sub,
            active=not (isinstance(status, str) and status.strip().lower() in GONE),
            roles=tuple(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else (),
            profile=Profile(email=_text(entry.get("email"), 254),
                            given_name=_text(entry.get("given_name")),
                            family_name=_text(entry.get("family_name")),
                            name=_text(entry.get("name"))),
        ))
    return members


def _same_origin(a: str, b: str) -> bool:
    x, y = urlsplit(a), urlsplit(b)
    return (x.scheme, x.hostname, x.port) == (y.scheme, y.hostname, y.port)


def read_roster(platform: LTIPlatform, url: str, *, limit: int | None = None,
                max_pages: int = MAX_PAGES) -> Iterator[list[Member]]:
    """The roster at `url`, a page of members at a time, following `rel="next"` links.

    Raises ServiceError (the platform refused or did not answer) or RosterError (malformed
    answer, a next link to another host, a paging loop) on the page that failed. Writes
    nothing (the caller records `platform.roster_answered_at`: a write here would hold
    SQLite's write lock for the rest of the read).
    """
    page_url: str | None = with_limit(url, limit or PAGE_SIZE)
    seen: set[str] = set()
    while page_url is not None:
        if page_url in seen or len(seen) >= max_pages:
            raise RosterError(
                f"The platform's roster pages do not end (page {len(seen) + 1} repeats an "
                f"earlier one or passes {max_pages} pages): the read is incomplete.")
        seen.add(page_url)
        response = platform_tokens.service_get(platform, page_url, (NRPS_SCOPE,), ACCEPT,
                                               timeout=TIMEOUT, max_bytes=MAX_PAGE_BYTES)
        try:
            body = response.json()
        except ValueError:
            log.warning("Platform %r: roster page is not JSON (%s, %d bytes)", platform.name,
                        response.headers.get("Content-Type", "no content type"),
                        len(response.content or b""))
            raise RosterError("The platform's answer is not JSON: it is not a roster.") from None
        yield parse_page(body)
        page_url = next_link(response.headers.get("Link"))
        if page_url and not _same_origin(page_url, url):
            raise RosterError("The platform's next roster page is on another host "
                              f"({urlsplit(page_url).hostname}): the read is incomplete.")


def platform_hosts(platform: LTIPlatform) -> set[str]:
    """Hosts that may serve the platform's services: its issuer's and its URLs' hosts."""
    hosts = set()
    for url in (platform.platform_id, platform.auth_login_url, platform.auth_token_url,
                platform.key_set_url, platform.auth_audience):
        host = urlsplit(url or "").hostname
        if host:
            hosts.add(host)
    return hosts


def check_memberships_url(platform: LTIPlatform, url: Any) -> str:
    """`url` if the tool may fetch it (an SSRF guard on a launch claim): https (http only on
    loopback hosts) on one of the platform's hosts; else ValueError."""
    if not isinstance(url, str) or len(url) > 2048:
        raise ValueError("the memberships URL is not a string of at most 2048 characters")
    url = platforms.check_url(url)
    if urlsplit(url).hostname not in platform_hosts(platform):
        raise ValueError(f"{urlsplit(url).hostname} is not one of the platform's hosts")
    return url
