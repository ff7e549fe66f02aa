"""Local accounts of LTI users: what a platform says about a person, creating users (one at a
launch, many at a roster sync) with readable unique usernames, and what a launch or sync changes.

Safe under concurrency without locks: a username or a sub's mapping that two launches could both
create is written with INSERT … ON CONFLICT DO NOTHING, then read back.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from ..extensions import db
from ..models import LTIPlatform, LTIUserMapping, User
from . import claims as c
from .roles import MappedRoles

log = logging.getLogger(__name__)

USERNAME_CHARS = re.compile(r"[^\w.@+-]+")


def text_claim(value: Any, limit: int = 255) -> str:
    """A claim's text cut to `limit`; anything else (a list, a number, nothing) is empty."""
    return value[:limit] if isinstance(value, str) else ""


def dialect_insert(model_or_table):
    """INSERT with ON CONFLICT support for the session's database."""
    dialect = db.session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model_or_table)


@dataclass(frozen=True)
class Profile:
    """What a platform says about a person (a launch's claims or a roster member), cut to size.

    `username_hints` are the LMS usernames a launch may carry, tried first for a new user.
    """

    email: str = ""
    given_name: str = ""
    family_name: str = ""
    name: str = ""
    username_hints: tuple[str, ...] = ()

    @classmethod
    def from_claims(cls, data: dict[str, Any]) -> Profile:
        ext = data.get(c.EXT) if isinstance(data.get(c.EXT), dict) else {}
        return cls(
            email=text_claim(data.get("email"), 254),
            given_name=text_claim(data.get("given_name")),
            family_name=text_claim(data.get("family_name")),
            name=text_claim(data.get("name")),
            # Moodle's `ext.user_username`, else the OpenID `preferred_username` of Open edX
            username_hints=(text_claim(ext.get("user_username")),
                            text_claim(data.get("preferred_username"))),
        )

    def cached(self) -> dict[str, str]:
        """The fields kept on the user mapping."""
        return {"email": self.email, "given_name": self.given_name,
                "family_name": self.family_name, "name": self.name}

    @property
    def full_name(self) -> str:
        """The name, else given and family name joined."""
        return self.name or " ".join(n for n in (self.given_name, self.family_name) if n)


def user_changes(platform: LTIPlatform, user: Any, profile: Profile,
                 roles: MappedRoles) -> dict[str, Any]:
    """What a launch (or a roster sync) changes on a known user: a higher global role with
    auto_sync_roles, the email and name when the platform sent them and they differ.

    `user` is anything with `global_role`, `email` and `name` (a User or a selected row).
    """
    changes: dict[str, Any] = {}
    if platform.auto_sync_roles and roles.global_role.rank > user.global_role.rank:
        changes["global_role"] = roles.global_role
    if profile.email and user.email != profile.email:
        changes["email"] = profile.email
    if profile.full_name and user.name != profile.full_name:
        changes["name"] = profile.full_name
    return changes


def create_user(platform: LTIPlatform, sub: str, profile: Profile, roles: MappedRoles,
                now: datetime, *, last_login: datetime | None) -> tuple[int, bool]:
    """A new local user mapped to `sub` (flushed): (user id, True); or, when a concurrent
    launch or sync mapped the sub first, that user's id and False."""
    user_id = _insert_user(
        _username_base(platform, sub, profile),
        email=profile.email,
        name=profile.full_name,
        global_role=roles.global_role,
        active=True,
        joined=now,
    )
    mapping_id = db.session.execute(
        dialect_insert(LTIUserMapping)
        .values(platform_id=platform.id, lti_user_id=sub, user_id=user_id, created_at=now,
                last_login=last_login, **profile.cached())
        .on_conflict_do_nothing(index_elements=["platform_id", "lti_user_id"])
        .returning(LTIUserMapping.id)
    ).scalar()
    if mapping_id is None:
        # Another launch of the same person made the mapping first: use theirs, drop ours.
        db.session.execute(delete(User).where(User.id == user_id))
        user_id = db.session.scalar(
            select(LTIUserMapping.user_id).where(
                LTIUserMapping.platform_id == platform.id, LTIUserMapping.lti_user_id == sub
            )
        )
        return user_id, False
    log.info("Created user %s for sub %r of platform %r", user_id, sub, platform.name)
    return user_id, True


def create_users(platform: LTIPlatform, people: list[tuple[str, Profile, MappedRoles]],
                 now: datetime) -> dict[str, int]:
    """`create_user` for many people at once (a roster page), in a few statements: their
    user ids by sub (flushed). A sub someone else mapped first keeps that user, as above."""
    if not people:
        return {}
    bases = {sub: _username_base(platform, sub, profile) for sub, profile, _ in people}
    taken = set(db.session.scalars(select(User.username).where(
        User.username.in_(set(bases.values())))))
    for base in {b for b in bases.values() if b in taken}:
        taken.update(db.session.scalars(select(User.username).where(
            User.username.like(f"{base}-%"))))
    rows = []
    for sub, profile, roles in people:
        username, n = bases[sub], 1
        while username in taken:
            n += 1
            username = f"{bases[sub]}-{n}"
        taken.add(username)
        rows.append({"username": username, "email": profile.email, "name": profile.full_name,
                     "global_role": roles.global_role, "active": True, "joined": now})
    # executemany (compiled once, sent in batches), not one statement of many VALUES
    users = User.__table__
    made = dict(db.session.execute(
        dialect_insert(users).on_conflict_do_nothing(index_elements=["username"])
        .returning(users.c.username, users.c.id), rows).all())
    user_ids = {}
    for (sub, _, _), row in zip(people, rows, strict=True):
        user_id = made.get(row["username"])
        if user_id is None:  # a launch took the name meanwhile
            user_id = _insert_user(bases[sub], **{k: v for k, v in row.items()
                                                  if k != "username"})
        user_ids[sub] = user_id
    mappings = LTIUserMapping.__table__
    mapped = dict(db.session.execute(
        dialect_insert(mappings)
        .on_conflict_do_nothing(index_elements=["platform_id", "lti_user_id"])
        .returning(mappings.c.lti_user_id, mappings.c.user_id),
        [{"platform_id": platform.id, "lti_user_id": sub, "user_id": user_ids[sub],
          "created_at": now, "last_login": None, **profile.cached()}
         for sub, profile, _ in people]).all())
    lost = [sub for sub in user_ids if sub not in mapped]
    if lost:
        # Launches of these people made their mappings first: use theirs, drop ours.
        db.session.execute(delete(User).where(User.id.in_([user_ids[s] for s in lost])))
        mapped.update(db.session.execute(
            select(LTIUserMapping.lti_user_id, LTIUserMapping.user_id).where(
                LTIUserMapping.platform_id == platform.id,
                LTIUserMapping.lti_user_id.in_(lost))).all())
    log.info("Created %d users for platform %r", len(people) - len(lost), platform.name)
    return mapped


def _username_base(platform: LTIPlatform, sub: str, profile: Profile) -> str:
    """A readable username: the LMS username, the email's local part, the name, or the sub."""
    email = profile.email
    candidates = [
        *profile.username_hints,
        email.split("@", 1)[0] if "@" in email else "",
        ".".join(n for n in (profile.given_name, profile.family_name) if n),
        profile.name.replace(" ", "."),
    ]
    for candidate in candidates:
        cleaned = USERNAME_CHARS.sub("", candidate.lower()).strip(".-")[:120]
        if cleaned:
            return cleaned
    return f"lti{platform.id}-" + (USERNAME_CHARS.sub("", str(sub)) or "user")[:100]


def _insert_user(base: str, **values) -> int:
    """Insert a user named `base`, or `base-2`, `base-3`, … where taken (even concurrently)."""
    taken = set(
        db.session.scalars(
            select(User.username).where(
                (User.username == base) | User.username.like(f"{base}-%")
            )
        )
    )
    n = 1
    while True:
        username = base if n == 1 else f"{base}-{n}"
        n += 1
        if username in taken:
            continue
        user_id = db.session.execute(
            dialect_insert(User)
            .values(username=username, **values)
            .on_conflict_do_nothing(index_elements=["username"])
            .returning(User.id)
        ).scalar()
        if user_id is not None:
            return user_id
