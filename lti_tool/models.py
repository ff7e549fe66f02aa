"""Every model of the tool: the LTI registrations and logs, and the media domain they point at."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import Mapped, WriteOnlyMapped, mapped_column, relationship, validates
from sqlalchemy.types import TypeDecorator
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db


def utcnow() -> datetime:
    return datetime.now(UTC)


class GlobalRole(enum.StrEnum):
    """Site-wide role of a user; each includes the rights of the ones before it."""

    USER = "user"
    ADVANCED_USER = "advancedUser"
    EDITOR = "editor"
    MANAGER = "manager"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(GlobalRole).index(self)


class GroupRole(enum.StrEnum):
    """Role in an RBAC group: member views, contributor also adds and edits, manager controls."""

    MEMBER = "member"
    CONTRIBUTOR = "contributor"
    MANAGER = "manager"

    @property
    def rank(self) -> int:
        return list(GroupRole).index(self)


class LaunchType(enum.StrEnum):
    RESOURCE_LINK = "resource_link"
    DEEP_LINKING = "deep_linking"


class MembershipSource(enum.StrEnum):
    """How someone came into a course group; a roster sync only ever removes the first two."""

    LAUNCH = "launch"
    ROSTER = "roster"
    MANUAL = "manual"


class RosterStatus(enum.StrEnum):
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"


class RosterChangeKind(enum.StrEnum):
    ADDED = "added"
    UPDATED = "updated"
    REMOVED = "removed"


class MediaStatus(enum.StrEnum):
    """Where an item is on its way to playing everywhere."""

    QUEUED = "queued"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class JobState(enum.StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


ACTIVE_JOB_STATES = (JobState.WAITING.value, JobState.RUNNING.value)


class RegisteredBy(enum.StrEnum):
    """How a platform came in: entered by an admin, or through LTI Dynamic Registration."""

    ADMIN = "admin"
    DYNAMIC = "dynamic"


class Visibility(enum.StrEnum):
    """Who may see a media item besides its owner and admins."""

    PUBLIC = "public"
    MEMBERS = "members"
    PRIVATE = "private"


def _enum(enum_class: type[enum.StrEnum], name: str) -> Enum:
    # Stored as VARCHAR plus a CHECK constraint holding the values (not the Python names),
    # so adding a value later is a plain migration on SQLite and PostgreSQL alike.
    return Enum(
        enum_class,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Timestamp(TypeDecorator):
    """A timezone-aware UTC datetime on every database.

    SQLite has no time zones: values are stored as naive UTC and read back as aware UTC, so code
    never compares naive with aware datetimes. Naive values written by callers count as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


# BIGINT on PostgreSQL; SQLite only auto-increments an INTEGER primary key.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# Ids that leave the tool (in LMS links, preview URLs, bookmarks) must never point at a later row.
# PostgreSQL sequences never hand out an id twice; SQLite reuses the highest deleted id unless
# the table is declared AUTOINCREMENT.
NEVER_REUSED_IDS = {"sqlite_autoincrement": True}


class User(UserMixin, db.Model):
    """A person known to the tool: a local account (password) or one provisioned by LTI launches."""

    __tablename__ = "user_account"
    __table_args__ = (NEVER_REUSED_IDS,)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    email: Mapped[str] = mapped_column(String(254), default="", server_default="")
    name: Mapped[str] = mapped_column(String(255), default="", server_default="")
    password_hash: Mapped[str | None] = mapped_column(
        String(255), comment="werkzeug hash; empty for users who only arrive by LTI launch"
    )
    global_role: Mapped[GlobalRole] = mapped_column(
        _enum(GlobalRole, "global_role"),
        default=GlobalRole.USER,
        server_default=GlobalRole.USER.value,
    )
    active: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=true(), comment="inactive users cannot sign in"
    )
    joined: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    session_version: Mapped[int] = mapped_column(
        default=0,
        server_default="0",
        comment="raised to end every existing session: sign-out, password or role change",
    )

    memberships: Mapped[list[RBACMembership]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def is_active(self) -> bool:
        return self.active

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)

    @validates("global_role")
    def _coerce_global_role(self, key: str, value: GlobalRole | str) -> GlobalRole:
        return GlobalRole(value)

    def has_global_role(self, role: GlobalRole | str) -> bool:
        return self.global_role.rank >= GlobalRole(role).rank

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username!r} {self.global_role}>"

    def __str__(self) -> str:
        return self.username


rbac_group_category = db.Table(
    "rbac_group_category",
    db.Column(
        "rbac_group_id", ForeignKey("rbac_group.id", ondelete="CASCADE"), primary_key=True
    ),
    db.Column("category_id", ForeignKey("category.id", ondelete="CASCADE"), primary_key=True),
    Index(None, "category_id"),
)


class Category(db.Model):
    """A space of media: a course (mapped from an LTI context) or a topic."""

    __tablename__ = "category"
    __table_args__ = (UniqueConstraint("platform_id", "lti_context_id"), NEVER_REUSED_IDS)

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(255), comment="not unique: courses share names")
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    is_lms_course: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), comment="created for an LTI context"
    )
    platform_id: Mapped[int | None] = mapped_column(
        ForeignKey("lti_platform.id", ondelete="SET NULL"),
        comment="platform of the LTI context this category mirrors",
    )
    lti_context_id: Mapped[str | None] = mapped_column(
        String(255), comment="context id (course) on that platform"
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)

    groups: Mapped[list[RBACGroup]] = relationship(
        secondary=rbac_group_category, back_populates="categories", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<Category {self.id} {self.title!r}>"

    def __str__(self) -> str:
        return self.title


class RBACGroup(db.Model):
    """A group whose members get access to its categories, by their group role."""

    __tablename__ = "rbac_group"
    __table_args__ = (UniqueConstraint("platform_id", "lti_context_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    platform_id: Mapped[int | None] = mapped_column(
        ForeignKey("lti_platform.id", ondelete="SET NULL"),
        comment="platform of the LTI context whose roster this group mirrors",
    )
    lti_context_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    memberships_url: Mapped[str | None] = mapped_column(
        String(2048), comment="NRPS context_memberships_url from the latest launch carrying it"
    )
    roster_synced_at: Mapped[datetime | None] = mapped_column(
        Timestamp(), comment="when the last roster sync finished, complete or not"
    )
    roster_status: Mapped[RosterStatus | None] = mapped_column(_enum(RosterStatus, "roster_status"))
    roster_error: Mapped[str] = mapped_column(
        Text, default="", server_default="", comment="why the last sync failed, for managers"
    )
    roster_counts: Mapped[dict[str, int] | None] = mapped_column(
        JSON, comment="members, added, updated, removed, skipped of the last sync"
    )

    categories: Mapped[list[Category]] = relationship(
        secondary=rbac_group_category, back_populates="groups", passive_deletes=True
    )
    memberships: Mapped[list[RBACMembership]] = relationship(
        back_populates="group", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<RBACGroup {self.id} {self.name!r}>"

    def __str__(self) -> str:
        return self.name


class RBACMembership(db.Model):
    """One user's role in one group."""

    __tablename__ = "rbac_membership"
    __table_args__ = (UniqueConstraint("rbac_group_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rbac_group_id: Mapped[int] = mapped_column(ForeignKey("rbac_group.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[GroupRole] = mapped_column(
        _enum(GroupRole, "group_role"),
        default=GroupRole.MEMBER,
        server_default=GroupRole.MEMBER.value,
    )
    source: Mapped[MembershipSource] = mapped_column(
        _enum(MembershipSource, "membership_source"),
        default=MembershipSource.MANUAL,
        server_default=MembershipSource.LAUNCH.value,
        comment="launch or roster: a sync may remove it; manual: never",
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)

    group: Mapped[RBACGroup] = relationship(back_populates="memberships")
    user: Mapped[User] = relationship(back_populates="memberships")

    def __repr__(self) -> str:
        return f"<RBACMembership group={self.rbac_group_id} user={self.user_id} {self.role}>"

    def __str__(self) -> str:
        return f"{self.user} in {self.group} as {self.role}"


class Media(db.Model):
    """An uploaded file (video, audio, image, PDF) with its description and visibility."""

    __tablename__ = "media"
    __table_args__ = (
        Index(None, "category_id", "created_at"),
        # The picker lists newest first over everything an instructor may use.
        Index(None, "created_at", "id"),
        NEVER_REUSED_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    file_path: Mapped[str] = mapped_column(
        String(255), unique=True, comment="generated name relative to MEDIA_ROOT"
    )
    original_filename: Mapped[str] = mapped_column(
        String(255), default="", server_default="", comment="display only, never a path"
    )
    mime_type: Mapped[str] = mapped_column(String(127), comment="sniffed from the content")
    size: Mapped[int] = mapped_column(BigInteger, comment="bytes")
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), index=True
    )
    category_id: Mapped[int | None] = mapped_column(
        ForeignKey("category.id", ondelete="SET NULL")
    )
    visibility: Mapped[Visibility] = mapped_column(
        _enum(Visibility, "visibility"),
        default=Visibility.MEMBERS,
        server_default=Visibility.MEMBERS.value,
        comment="public: anyone signed in; members: the category's group; private: owner",
    )
    thumbnail_path: Mapped[str | None] = mapped_column(
        String(255), comment="generated preview image relative to MEDIA_ROOT; empty: placeholder"
    )
    captions_path: Mapped[str | None] = mapped_column(
        String(255), comment="WebVTT captions relative to MEDIA_ROOT"
    )
    status: Mapped[MediaStatus] = mapped_column(
        _enum(MediaStatus, "media_status"),
        default=MediaStatus.QUEUED,
        server_default=MediaStatus.READY.value,
        comment="processing into web-playable files; items older than processing are ready",
    )
    progress: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0", comment="percent, while processing"
    )
    status_reason: Mapped[str] = mapped_column(
        Text, default="", server_default="", comment="why processing failed, for the teacher"
    )
    duration: Mapped[float | None] = mapped_column(Float, comment="seconds, from ffprobe")
    width: Mapped[int | None] = mapped_column(Integer, comment="displayed width (rotation applied)")
    height: Mapped[int | None] = mapped_column(Integer)
    playback_path: Mapped[str | None] = mapped_column(
        String(255), comment="H.264/AAC MP4 (or AAC .m4a) rendition relative to MEDIA_ROOT"
    )
    hls_path: Mapped[str | None] = mapped_column(
        String(255), comment="HLS master playlist; its renditions and segments sit beside it"
    )
    poster_path: Mapped[str | None] = mapped_column(
        String(255), comment="full-size poster frame relative to MEDIA_ROOT"
    )
    renditions_path: Mapped[str | None] = mapped_column(
        String(255), comment="folder of every processed file, removed with the item"
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow, onupdate=utcnow)

    owner: Mapped[User | None] = relationship()
    category: Mapped[Category | None] = relationship()

    @property
    def kind(self) -> str:
        """video, audio, image or document."""
        kind = self.mime_type.split("/")[0]
        return kind if kind in ("video", "audio", "image") else "document"

    @property
    def is_ready(self) -> bool:
        return self.status is MediaStatus.READY

    def __repr__(self) -> str:
        return f"<Media {self.id} {self.title!r} {self.mime_type}>"

    def __str__(self) -> str:
        return self.title


class LTIPlatform(db.Model):
    """One registration of an LMS (issuer + client ID) with this tool."""

    __tablename__ = "lti_platform"
    __table_args__ = (UniqueConstraint("platform_id", "client_id"), NEVER_REUSED_IDS)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(
        String(255), unique=True, comment='Display name, e.g. "Moodle Production"'
    )
    platform_id: Mapped[str] = mapped_column(
        String(255), comment="Issuer (iss): exactly the platform's iss claim; Moodle: its wwwroot"
    )
    client_id: Mapped[str] = mapped_column(
        String(255), comment="Client ID the platform gave this tool (the aud of its id_tokens)"
    )
    auth_login_url: Mapped[str] = mapped_column(
        String(1024), comment="Platform OIDC authentication URL (Moodle: /mod/lti/auth.php)"
    )
    auth_token_url: Mapped[str] = mapped_column(
        String(1024), comment="Platform OAuth2 access token URL (Moodle: /mod/lti/token.php)"
    )
    auth_audience: Mapped[str | None] = mapped_column(
        String(1024), comment="aud of our client assertions; empty means the token URL"
    )
    key_set_url: Mapped[str] = mapped_column(
        String(1024), comment="Platform public keyset (JWKS) URL (Moodle: /mod/lti/certs.php)"
    )
    key_set: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, comment="Cached copy of the platform's JWKS"
    )
    key_set_updated: Mapped[datetime | None] = mapped_column(
        Timestamp(), comment="When key_set was last fetched"
    )
    deployment_ids: Mapped[list[str]] = mapped_column(
        JSON,
        default=list,
        comment="Deployment IDs allowed for this registration; empty refuses every launch",
    )
    enable_nrps: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=true(), comment="Sync course rosters through NRPS"
    )
    enable_deep_linking: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=true(), comment="Accept deep-linking requests"
    )
    auto_create_categories: Mapped[bool] = mapped_column(
        Boolean,
        default=True,
        server_default=true(),
        comment="Create a category and group on the first launch from a course",
    )
    auto_create_users: Mapped[bool] = mapped_column(
        Boolean,
        default=True,
        server_default=true(),
        comment="Create local users on first launch; off: only mapped users get in",
    )
    auto_sync_roles: Mapped[bool] = mapped_column(
        Boolean,
        default=True,
        server_default=true(),
        comment="Apply role changes from the LMS on every launch, not only the first",
    )
    remove_from_groups_on_unenroll: Mapped[bool] = mapped_column(
        Boolean,
        default=False,
        server_default=false(),
        comment="Let roster sync remove people who left the course",
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow, onupdate=utcnow)
    roster_answered_at: Mapped[datetime | None] = mapped_column(
        Timestamp(), comment="last time the platform answered a roster (NRPS) request"
    )
    active: Mapped[bool] = mapped_column(
        Boolean,
        default=True,
        server_default=true(),
        comment="Inactive platforms are refused at login and launch",
    )
    registered_by: Mapped[RegisteredBy] = mapped_column(
        _enum(RegisteredBy, "registered_by"),
        default=RegisteredBy.ADMIN,
        server_default=RegisteredBy.ADMIN.value,
        comment="admin: entered by hand; dynamic: through LTI Dynamic Registration",
    )
    registration_pending: Mapped[bool] = mapped_column(
        Boolean,
        default=False,
        server_default=false(),
        comment="A dynamic registration waiting for an admin's approval (inactive until then)",
    )
    product_family_code: Mapped[str | None] = mapped_column(
        String(64), comment="The LMS product as it names itself: moodle, canvas, desire2learn"
    )
    product_version: Mapped[str | None] = mapped_column(
        String(64), comment="The LMS version it reported when it registered"
    )

    resource_links: Mapped[list[LTIResourceLink]] = relationship(
        back_populates="platform", cascade="all, delete-orphan", passive_deletes=True
    )
    user_mappings: Mapped[list[LTIUserMapping]] = relationship(
        back_populates="platform", cascade="all, delete-orphan", passive_deletes=True
    )
    role_mappings: Mapped[list[LTIRoleMapping]] = relationship(
        back_populates="platform", cascade="all, delete-orphan", passive_deletes=True
    )
    launch_logs: WriteOnlyMapped[LTILaunchLog] = relationship(
        back_populates="platform",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by=lambda: LTILaunchLog.created_at.desc(),
    )

    def __repr__(self) -> str:
        return f"<LTIPlatform {self.id} {self.name!r} iss={self.platform_id!r}>"

    def __str__(self) -> str:
        return f"{self.name} ({self.platform_id})"


class LTIResourceLink(db.Model):
    """One placement of the tool in a course of a platform."""

    __tablename__ = "lti_resource_link"
    __table_args__ = (
        UniqueConstraint("platform_id", "context_id", "resource_link_id"),
        Index(None, "platform_id", "context_id"),
        Index(None, "context_id"),
        NEVER_REUSED_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("lti_platform.id", ondelete="CASCADE"))
    context_id: Mapped[str] = mapped_column(
        String(255), default="", server_default="", comment="LTI context (course) id; empty: none"
    )
    context_title: Mapped[str] = mapped_column(String(255), default="", server_default="")
    context_label: Mapped[str] = mapped_column(String(100), default="", server_default="")
    resource_link_id: Mapped[str] = mapped_column(String(255), comment="LTI resource link id")
    resource_link_title: Mapped[str] = mapped_column(String(255), default="", server_default="")
    category_id: Mapped[int | None] = mapped_column(
        ForeignKey("category.id", ondelete="SET NULL"), comment="the course's media category"
    )
    media_id: Mapped[int | None] = mapped_column(
        ForeignKey("media.id", ondelete="SET NULL"), comment="the media item this link opens"
    )
    rbac_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("rbac_group.id", ondelete="SET NULL"), comment="the course's access group"
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    last_launch: Mapped[datetime | None] = mapped_column(Timestamp())
    launch_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    platform: Mapped[LTIPlatform] = relationship(back_populates="resource_links")
    category: Mapped[Category | None] = relationship()
    media: Mapped[Media | None] = relationship()
    rbac_group: Mapped[RBACGroup | None] = relationship()

    def __repr__(self) -> str:
        return (
            f"<LTIResourceLink {self.id} platform={self.platform_id} "
            f"context={self.context_id!r} link={self.resource_link_id!r}>"
        )

    def __str__(self) -> str:
        return f"{self.context_title} - {self.resource_link_title}"


class LTIUserMapping(db.Model):
    """Links a platform's user (the sub claim) to a local user."""

    __tablename__ = "lti_user_mapping"
    __table_args__ = (UniqueConstraint("platform_id", "lti_user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("lti_platform.id", ondelete="CASCADE"))
    lti_user_id: Mapped[str] = mapped_column(
        String(255), index=True, comment="the sub claim: the user's id on the platform"
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(
        String(254), default="", server_default="", comment="last email the platform sent"
    )
    given_name: Mapped[str] = mapped_column(String(255), default="", server_default="")
    family_name: Mapped[str] = mapped_column(String(255), default="", server_default="")
    name: Mapped[str] = mapped_column(String(255), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    last_login: Mapped[datetime | None] = mapped_column(Timestamp(), comment="last launch")

    platform: Mapped[LTIPlatform] = relationship(back_populates="user_mappings")
    user: Mapped[User] = relationship()

    def __repr__(self) -> str:
        return (
            f"<LTIUserMapping {self.id} platform={self.platform_id} "
            f"sub={self.lti_user_id!r} user={self.user_id}>"
        )

    def __str__(self) -> str:
        return f"{self.lti_user_id} -> user {self.user_id}"


class LTIRoleMapping(db.Model):
    """Per-platform override of the default LTI role table; empty means the role adds nothing."""

    __tablename__ = "lti_role_mapping"
    __table_args__ = (UniqueConstraint("platform_id", "lti_role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("lti_platform.id", ondelete="CASCADE"))
    lti_role: Mapped[str] = mapped_column(
        String(255), comment="LTI role URI or short name (Instructor, Learner, ...)"
    )
    global_role: Mapped[GlobalRole | None] = mapped_column(_enum(GlobalRole, "global_role"))
    group_role: Mapped[GroupRole | None] = mapped_column(_enum(GroupRole, "group_role"))

    platform: Mapped[LTIPlatform] = relationship(back_populates="role_mappings")

    def __repr__(self) -> str:
        return f"<LTIRoleMapping {self.id} platform={self.platform_id} {self.lti_role!r}>"

    def __str__(self) -> str:
        return f"{self.lti_role} -> {self.global_role or '-'}/{self.group_role or '-'}"


class LTILaunchLog(db.Model):
    """One launch attempt, successful or not; list newest first."""

    __tablename__ = "lti_launch_log"
    __table_args__ = (
        Index(None, "platform_id", "user_id"),
        # The audit viewer pages by key on (created_at, id), newest first, also for one user.
        Index(None, "created_at", "id"),
        Index(None, "user_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("lti_platform.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"),
        comment="empty when the launch failed before a user existed",
    )
    resource_link_id: Mapped[int | None] = mapped_column(
        ForeignKey("lti_resource_link.id", ondelete="SET NULL")
    )
    launch_type: Mapped[LaunchType] = mapped_column(
        _enum(LaunchType, "launch_type"),
        default=LaunchType.RESOURCE_LINK,
        server_default=LaunchType.RESOURCE_LINK.value,
    )
    success: Mapped[bool] = mapped_column(Boolean, default=False)
    error_category: Mapped[str | None] = mapped_column(
        String(64), comment="launch doctor category of a failure"
    )
    error_message: Mapped[str] = mapped_column(Text, default="", server_default="")
    claims: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, comment="sanitized claims: no raw id_token, masked personal data"
    )
    ip_address: Mapped[str | None] = mapped_column(String(45))
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)

    platform: Mapped[LTIPlatform] = relationship(back_populates="launch_logs")
    user: Mapped[User | None] = relationship()
    resource_link: Mapped[LTIResourceLink | None] = relationship()

    def __repr__(self) -> str:
        outcome = "ok" if self.success else f"failed:{self.error_category or '?'}"
        return f"<LTILaunchLog {self.id} {self.launch_type} {outcome} at {self.created_at}>"

    def __str__(self) -> str:
        return f"{self.launch_type} by user {self.user_id or '-'} at {self.created_at}"


class ToolKey(db.Model):
    """An RSA key pair of the tool. The private half is encrypted and never leaves the server."""

    __tablename__ = "tool_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True, comment="RFC 7638 thumbprint")
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    private_key: Mapped[bytes | None] = mapped_column(
        LargeBinary, comment="PEM encrypted with a key derived from SECRET_KEY; wiped on retire"
    )
    current: Mapped[bool | None] = mapped_column(
        Boolean,
        unique=True,
        comment="true for the one signing key, null otherwise (unique: at most one is current)",
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(
        Timestamp(), comment="no longer published or usable"
    )

    @property
    def status(self) -> str:
        if self.current:
            return "current"
        return "retired" if self.retired_at else "published"

    def __repr__(self) -> str:
        return f"<ToolKey {self.kid} {self.status}>"


class Job(db.Model):
    """One piece of background work, as the tool sees it: the source of truth for what is
    waiting, running, done or failed (the broker only carries a job's id to a worker).

    A running job writes `heartbeat_at`; a sweep puts a job whose heartbeat stopped back to
    waiting. At most one job per `subject` (e.g. ``media:42``) is waiting or running.
    """

    __tablename__ = "job"
    __table_args__ = (
        Index(
            "uq_job_active_subject", "subject", unique=True,
            sqlite_where=text("state IN ('waiting', 'running')"),
            postgresql_where=text("state IN ('waiting', 'running')"),
        ),
        Index(None, "state", "created_at"),
        Index(None, "finished_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), comment="what runs, e.g. media.process")
    queue: Mapped[str] = mapped_column(String(16), comment="short or long")
    subject: Mapped[str | None] = mapped_column(
        String(255), comment="what it works on, e.g. media:42: one active job per subject"
    )
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[JobState] = mapped_column(
        _enum(JobState, "job_state"), default=JobState.WAITING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    progress: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str] = mapped_column(Text, default="", server_default="")
    worker: Mapped[str] = mapped_column(
        String(255), default="", server_default="", comment="host and process running it"
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    run_after: Mapped[datetime | None] = mapped_column(
        Timestamp(), comment="not before (retry backoff)"
    )
    dispatched_at: Mapped[datetime | None] = mapped_column(
        Timestamp(), comment="last handed to the broker"
    )
    started_at: Mapped[datetime | None] = mapped_column(Timestamp())
    heartbeat_at: Mapped[datetime | None] = mapped_column(Timestamp())
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp())

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.kind} {self.subject} {self.state}>"


class Upload(db.Model):
    """A resumable (tus) upload in progress: bytes so far sit in a part file until complete."""

    __tablename__ = "upload"
    __table_args__ = (Index(None, "updated_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, comment="random, in the URL")
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    category_id: Mapped[int | None] = mapped_column(
        ForeignKey("category.id", ondelete="CASCADE")
    )
    length: Mapped[int] = mapped_column(BigInteger, comment="bytes announced")
    offset: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    mime_type: Mapped[str | None] = mapped_column(String(127), comment="sniffed from the start")
    details: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict, comment="title, file name, description, visibility"
    )
    media_id: Mapped[int | None] = mapped_column(
        ForeignKey("media.id", ondelete="SET NULL"), comment="the item, once complete"
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship()
    category: Mapped[Category | None] = relationship()

    def __repr__(self) -> str:
        return f"<Upload {self.id} {self.offset}/{self.length}>"


class RosterSync(db.Model):
    """One roster sync of a course group (or its dry run): who asked, how it went, the counts."""

    __tablename__ = "roster_sync"
    __table_args__ = (Index(None, "rbac_group_id", "started_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    rbac_group_id: Mapped[int] = mapped_column(ForeignKey("rbac_group.id", ondelete="CASCADE"))
    trigger: Mapped[str] = mapped_column(String(16), comment="manager, command or launch")
    triggered_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    status: Mapped[RosterStatus] = mapped_column(
        _enum(RosterStatus, "roster_status"), default=RosterStatus.RUNNING
    )
    members: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    added: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    removed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    skipped: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str] = mapped_column(Text, default="", server_default="")
    started_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp())

    group: Mapped[RBACGroup] = relationship()
    triggered_by: Mapped[User | None] = relationship()
    changes: WriteOnlyMapped[RosterChange] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<RosterSync {self.id} group={self.rbac_group_id} {self.status}>"


class RosterChange(db.Model):
    """One person added, changed or removed by a roster sync."""

    __tablename__ = "roster_change"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    roster_sync_id: Mapped[int] = mapped_column(
        ForeignKey("roster_sync.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(
        String(255), default="", server_default="", comment="who, as shown at the time"
    )
    kind: Mapped[RosterChangeKind] = mapped_column(_enum(RosterChangeKind, "roster_change_kind"))
    old_role: Mapped[GroupRole | None] = mapped_column(_enum(GroupRole, "old_group_role"))
    new_role: Mapped[GroupRole | None] = mapped_column(_enum(GroupRole, "new_group_role"))

    user: Mapped[User | None] = relationship()

    def __repr__(self) -> str:
        return f"<RosterChange {self.kind} user={self.user_id}>"


class InboxStatus(enum.StrEnum):
    """Where an inbox entry stands: waiting for an admin, dismissed, or made into a setup."""

    OPEN = "open"
    DISMISSED = "dismissed"
    RESOLVED = "resolved"


class PlatformInboxEntry(db.Model):
    """A refused login or launch from an unknown platform or deployment, kept for an admin.

    One row per (issuer, client ID, deployment ID); an empty string stands for a value the
    request did not send. Repeats only bump `attempts` and `last_seen`.
    """

    __tablename__ = "platform_inbox"
    __table_args__ = (
        UniqueConstraint("issuer", "client_id", "deployment_id"),
        Index(None, "status", "last_seen"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(String(255), comment="iss as the request sent it")
    client_id: Mapped[str] = mapped_column(
        String(255), default="", server_default="", comment="empty: the login named none"
    )
    deployment_id: Mapped[str] = mapped_column(
        String(255), default="", server_default="", comment="empty: the request named none"
    )
    platform_id: Mapped[int | None] = mapped_column(
        ForeignKey("lti_platform.id", ondelete="SET NULL"),
        comment="the known platform, when only the deployment was unknown",
    )
    category: Mapped[str] = mapped_column(
        String(64), comment="unknown_platform or unknown_deployment, as last refused"
    )
    claims: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, comment="sanitized claims of the latest launch (no personal data)"
    )
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    first_seen: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    status: Mapped[InboxStatus] = mapped_column(
        _enum(InboxStatus, "inbox_status"),
        default=InboxStatus.OPEN,
        server_default=InboxStatus.OPEN.value,
    )

    platform: Mapped[LTIPlatform | None] = relationship()

    def __repr__(self) -> str:
        return (f"<PlatformInboxEntry {self.id} {self.issuer!r} client={self.client_id!r} "
                f"deployment={self.deployment_id!r} {self.status} x{self.attempts}>")
