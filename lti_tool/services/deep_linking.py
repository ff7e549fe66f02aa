"""Deep linking: the media an instructor may pick, and the signed response to the platform."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from sqlalchemy import func, literal_column, or_, select, table, text
from sqlalchemy.orm import selectinload

from ..errors import ValidationError
from ..extensions import db
from ..models import Category, GlobalRole, LTIPlatform, Media, User, Visibility
from . import claims as c
from . import keys
from .access import category_role
from .paging import newest_first
from .platforms import is_safe_return_url
from .tool_conf import find_platform, load_launch_data, lti_context

DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"
PAGE_SIZE = 20
SCOPES = ("all", "course", "own", "public")
RESPONSE_LIFETIME = 300  # seconds
BACKDATE = 5  # seconds: Moodle checks iat with no leeway
ITEM_TEXT = 1000  # characters of the description an item carries
IFRAME_SIZE = (960, 540)  # the player's 16:9 frame in the course page
WINDOW_SIZE = (1024, 640)  # the player opened in a new window


@dataclass(frozen=True)
class Request:
    """What the platform asked for, read from a deep-linking launch's claims."""

    platform_id: int
    issuer: str
    deployment_id: str
    return_url: str
    accept_types: tuple[str, ...]
    accept_multiple: bool
    targets: tuple[str, ...]
    data: Any
    has_data: bool
    context_id: str | None

    @classmethod
    def from_launch(cls, launch: dict[str, Any], platform: LTIPlatform) -> Request:
        settings = launch.get(c.DL_SETTINGS) or {}
        context = launch.get(c.CONTEXT) if isinstance(launch.get(c.CONTEXT), dict) else {}
        return cls(
            platform_id=platform.id,
            issuer=launch["iss"],
            deployment_id=launch[c.DEPLOYMENT_ID],
            return_url=settings["deep_link_return_url"],
            accept_types=tuple(settings.get("accept_types") or ()),
            accept_multiple=bool(settings.get("accept_multiple")),
            targets=tuple(settings.get("accept_presentation_document_targets") or ()),
            data=settings.get("data"),
            has_data="data" in settings,
            context_id=str(context["id"]) if context.get("id") else None,
        )

    @property
    def accepts_links(self) -> bool:
        return "ltiResourceLink" in self.accept_types


def pending_request(launch_id: str) -> tuple[Request, LTIPlatform] | None:
    """The deep-linking request a launch stored under `launch_id`, with its platform; None when
    it expired or was not a deep-linking launch. (Whose launch it is, the caller checks.)"""
    launch = load_launch_data(lti_context(), launch_id)
    if not launch or launch.get(c.MESSAGE_TYPE) != c.DEEP_LINKING_REQUEST:
        return None
    platform = find_platform(launch["iss"], c.client_id(launch))
    return Request.from_launch(launch, platform), platform


def course_category(request: Request) -> Category | None:
    if request.context_id is None:
        return None
    return db.session.scalar(
        select(Category).where(
            Category.platform_id == request.platform_id,
            Category.lti_context_id == request.context_id,
        )
    )


def _usable(user: User, category: Category | None):
    """The condition for media this instructor may link: this course's, their own, public."""
    if user.has_global_role(GlobalRole.EDITOR):
        return Media.id.is_not(None)
    usable = [Media.owner_id == user.id, Media.visibility == Visibility.PUBLIC]
    if category is not None and category_role(user, category) is not None:
        usable.append(
            (Media.category_id == category.id) & (Media.visibility != Visibility.PRIVATE)
        )
    return or_(*usable)


def pickable_media(
    user: User, category: Category | None, scope: str = "all", q: str = "",
    after: int | None = None,
) -> tuple[list[Media], int | None]:
    """One page of the media the picker offers, newest first, and the cursor of the next page.

    Pages by key (`after` = the last item's id), so a deep page costs what the first does.
    """
    query = select(Media).where(_usable(user, category)).options(selectinload(Media.owner))
    if scope == "course":
        query = query.where(Media.category_id == (category.id if category else -1))
    elif scope == "own":
        query = query.where(Media.owner_id == user.id)
    elif scope == "public":
        query = query.where(Media.visibility == Visibility.PUBLIC)
    if (condition := search_condition(q)) is not None:
        query = query.where(condition)
    return newest_first(query, Media, after, PAGE_SIZE)


def usable_media(user: User, category: Category | None, id: int | None) -> Media | None:
    """The item `id` if this instructor may link it (the picker's pre-chosen upload), else None."""
    if id is None:
        return None
    return db.session.scalar(select(Media).where(Media.id == id, _usable(user, category)))


def search_condition(q: str):
    """Media whose title or description has words starting with each word of `q`.

    Uses the database's full-text index (migration b3c1f0a9d2e4): FTS5 on SQLite, a tsvector
    with a GIN index on PostgreSQL. None when `q` has no words.
    """
    words = re.findall(r"\w+", (q or "").lower())[:10]
    if not words:
        return None
    dialect = db.session.get_bind().dialect.name
    if dialect == "sqlite":
        match = " ".join(f'"{word}"*' for word in words)
        return Media.id.in_(
            select(literal_column("rowid"))
            .select_from(table("media_fts"))
            .where(text("media_fts MATCH :match").bindparams(match=match))
        )
    if dialect == "postgresql":
        query = " & ".join(f"{word}:*" for word in words)
        return literal_column("media.search").op("@@")(func.to_tsquery("simple", query))
    pattern = f"%{' '.join(words)}%"
    return or_(func.lower(Media.title).like(pattern), func.lower(Media.description).like(pattern))


def chosen_media(user: User, category: Category | None, ids: list[int], request: Request):
    """The picked items, each checked again against what this instructor may use."""
    if not request.accepts_links:
        raise ValidationError("media_ids", "this LMS does not accept links to media here")
    multiple = request.accept_multiple
    if not ids:
        raise ValidationError("media_ids", "choose at least one item")
    if len(ids) > 1 and not multiple:
        raise ValidationError("media_ids", "this course takes one item at a time")
    found = db.session.scalars(
        select(Media).where(Media.id.in_(ids), _usable(user, category))
    ).all()
    by_id = {m.id: m for m in found}
    if missing := [i for i in ids if i not in by_id]:
        raise ValidationError("media_ids", f"you may not use media {missing}")
    return [by_id[i] for i in ids]


def content_item(media: Media, request: Request, launch_url: str, thumbnail_url: str | None):
    """One ltiResourceLink, with the fields PyLTI1p3's DeepLinkResource lacks."""
    item: dict[str, Any] = {
        "type": "ltiResourceLink",
        "title": media.title,
        "url": launch_url,
        "custom": {"media_id": str(media.id)},
    }
    if media.description:
        item["text"] = media.description[:ITEM_TEXT]
    if thumbnail_url and media.visibility is not Visibility.PRIVATE:
        item["thumbnail"] = {"url": thumbnail_url}
    if "iframe" in request.targets:
        item["iframe"] = {"width": IFRAME_SIZE[0], "height": IFRAME_SIZE[1]}
    if "window" in request.targets:
        item["window"] = {"targetName": f"media-{media.id}", "width": WINDOW_SIZE[0],
                          "height": WINDOW_SIZE[1]}
    return item


def response_jwt(request: Request, platform: LTIPlatform, items: list[dict]) -> str:
    """The LtiDeepLinkingResponse, signed with the tool's current key (kid in the header)."""
    key = keys.ensure_current_key()
    now = int(time.time()) - BACKDATE
    claims = {
        "iss": platform.client_id,
        "aud": request.issuer,
        "iat": now,
        "exp": now + RESPONSE_LIFETIME,
        "nonce": secrets.token_urlsafe(24),
        c.MESSAGE_TYPE: "LtiDeepLinkingResponse",
        c.VERSION: "1.3.0",
        c.DEPLOYMENT_ID: request.deployment_id,
        DL + "content_items": items,
    }
    if request.has_data:
        claims[DL + "data"] = request.data
    if items:
        claims[DL + "msg"] = f"{len(items)} item{'s' if len(items) != 1 else ''} added."
    return jwt.encode(claims, keys.private_key_pem(key), algorithm="RS256",
                      headers={"kid": key.kid})


def check_return_url(request: Request, platform: LTIPlatform) -> str:
    """The return URL exactly as given, if it is https (or loopback) on the platform's host."""
    if not is_safe_return_url(request.return_url, platform):
        raise ValidationError("deep_link_return_url",
                              "it is not on the platform's host, or not https")
    return request.return_url


@dataclass(frozen=True)
class Answer:
    """The signed LtiDeepLinkingResponse and where the browser posts it."""

    return_url: str
    jwt: str
    count: int


MAX_CHOSEN = 100  # items one answer may carry


def chosen_ids(here: list[int] | None, elsewhere: list[int] | None, multiple: bool) -> list[int]:
    """The ids chosen on this page and kept from other pages, in order, once each; where the
    platform takes one item, this page's choice, else the kept one."""
    if not multiple:
        return list(here) if here else list(elsewhere or [])[:1]
    return list(dict.fromkeys([*(here or []), *(elsewhere or [])]))[:MAX_CHOSEN]


def answer(
    user: User, category: Category | None, request: Request, platform: LTIPlatform,
    media_ids: list[int], *, cancel: bool, launch_url: str,
    preview_url: Callable[[Media], str],
) -> Answer:
    """The response to a deep-linking request: the chosen items (each checked again), or an
    empty list for a cancel, signed with the tool's current key.

    Raises ValidationError for a choice the instructor may not make or a return URL off the
    platform, and KeyUnavailableError when the tool's key cannot sign.
    """
    chosen = [] if cancel else chosen_media(user, category, media_ids, request)
    return_url = check_return_url(request, platform)
    items = [content_item(m, request, launch_url, preview_url(m)) for m in chosen]
    return Answer(return_url, response_jwt(request, platform, items), len(items))
