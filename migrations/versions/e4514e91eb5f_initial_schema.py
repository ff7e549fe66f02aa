"""Initial schema: LTI registrations, mappings, launch log, tool keys, users, media.

Revision ID: e4514e91eb5f
Revises:
Create Date: 2026-11-25 15:44:38.322790

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "e4514e91eb5f"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "lti_platform",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "name",
            sa.String(length=255),
            nullable=False,
            comment='Display name, e.g. "Moodle Production"',
        ),
        sa.Column(
            "platform_id",
            sa.String(length=255),
            nullable=False,
            comment="Issuer (iss): exactly the platform's iss claim; Moodle: its wwwroot",
        ),
        sa.Column(
            "client_id",
            sa.String(length=255),
            nullable=False,
            comment="Client ID the platform gave this tool (the aud of its id_tokens)",
        ),
        sa.Column(
            "auth_login_url",
            sa.String(length=1024),
            nullable=False,
            comment="Platform OIDC authentication URL (Moodle: /mod/lti/auth.php)",
        ),
        sa.Column(
            "auth_token_url",
            sa.String(length=1024),
            nullable=False,
            comment="Platform OAuth2 access token URL (Moodle: /mod/lti/token.php)",
        ),
        sa.Column(
            "auth_audience",
            sa.String(length=1024),
            nullable=True,
            comment="aud of our client assertions; empty means the token URL",
        ),
        sa.Column(
            "key_set_url",
            sa.String(length=1024),
            nullable=False,
            comment="Platform public keyset (JWKS) URL (Moodle: /mod/lti/certs.php)",
        ),
        sa.Column(
            "key_set", sa.JSON(), nullable=True, comment="Cached copy of the platform's JWKS"
        ),
        sa.Column(
            "key_set_updated",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="When key_set was last fetched",
        ),
        sa.Column(
            "deployment_ids",
            sa.JSON(),
            nullable=False,
            comment="Deployment IDs allowed for this registration; empty refuses every launch",
        ),
        sa.Column(
            "enable_nrps",
            sa.Boolean(),
            server_default=sa.true(),
            nullable=False,
            comment="Sync course rosters through NRPS",
        ),
        sa.Column(
            "enable_deep_linking",
            sa.Boolean(),
            server_default=sa.true(),
            nullable=False,
            comment="Accept deep-linking requests",
        ),
        sa.Column(
            "auto_create_categories",
            sa.Boolean(),
            server_default=sa.true(),
            nullable=False,
            comment="Create a category and group on the first launch from a course",
        ),
        sa.Column(
            "auto_create_users",
            sa.Boolean(),
            server_default=sa.true(),
            nullable=False,
            comment="Create local users on first launch; off: only mapped users get in",
        ),
        sa.Column(
            "auto_sync_roles",
            sa.Boolean(),
            server_default=sa.true(),
            nullable=False,
            comment="Apply role changes from the LMS on every launch, not only the first",
        ),
        sa.Column(
            "remove_from_groups_on_unenroll",
            sa.Boolean(),
            server_default=sa.false(),
            nullable=False,
            comment="Let roster sync remove people who left the course",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "active",
            sa.Boolean(),
            server_default=sa.true(),
            nullable=False,
            comment="Inactive platforms are refused at login and launch",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lti_platform")),
        sa.UniqueConstraint("name", name=op.f("uq_lti_platform_name")),
        sa.UniqueConstraint(
            "platform_id", "client_id", name=op.f("uq_lti_platform_platform_id_client_id")
        ),
    )
    op.create_table(
        "tool_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False, comment="RFC 7638 thumbprint"),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column(
            "private_key",
            sa.LargeBinary(),
            nullable=True,
            comment="PEM encrypted with a key derived from SECRET_KEY; wiped on retire",
        ),
        sa.Column(
            "current",
            sa.Boolean(),
            nullable=True,
            comment="true for the one signing key, null otherwise (unique: at most one is current)",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "retired_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="no longer published or usable",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_key")),
        sa.UniqueConstraint("current", name=op.f("uq_tool_key_current")),
        sa.UniqueConstraint("kid", name=op.f("uq_tool_key_kid")),
    )
    op.create_table(
        "user_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("email", sa.String(length=254), server_default="", nullable=False),
        sa.Column("name", sa.String(length=255), server_default="", nullable=False),
        sa.Column(
            "password_hash",
            sa.String(length=255),
            nullable=True,
            comment="werkzeug hash; empty for users who only arrive by LTI launch",
        ),
        sa.Column(
            "global_role",
            sa.Enum(
                "user",
                "advancedUser",
                "editor",
                "manager",
                "admin",
                name="global_role",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            server_default="user",
            nullable=False,
        ),
        sa.Column(
            "active",
            sa.Boolean(),
            server_default=sa.true(),
            nullable=False,
            comment="inactive users cannot sign in",
        ),
        sa.Column("joined", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_account")),
        sa.UniqueConstraint("username", name=op.f("uq_user_account_username")),
    )
    op.create_table(
        "category",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "title",
            sa.String(length=255),
            nullable=False,
            comment="not unique: courses share names",
        ),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "is_lms_course",
            sa.Boolean(),
            server_default=sa.false(),
            nullable=False,
            comment="created for an LTI context",
        ),
        sa.Column(
            "platform_id",
            sa.Integer(),
            nullable=True,
            comment="platform of the LTI context this category mirrors",
        ),
        sa.Column(
            "lti_context_id",
            sa.String(length=255),
            nullable=True,
            comment="context id (course) on that platform",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["platform_id"],
            ["lti_platform.id"],
            name=op.f("fk_category_platform_id_lti_platform"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_category")),
        sa.UniqueConstraint(
            "platform_id", "lti_context_id", name=op.f("uq_category_platform_id_lti_context_id")
        ),
    )
    op.create_table(
        "lti_role_mapping",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform_id", sa.Integer(), nullable=False),
        sa.Column(
            "lti_role",
            sa.String(length=255),
            nullable=False,
            comment="LTI role URI or short name (Instructor, Learner, ...)",
        ),
        sa.Column(
            "global_role",
            sa.Enum(
                "user",
                "advancedUser",
                "editor",
                "manager",
                "admin",
                name="global_role",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column(
            "group_role",
            sa.Enum(
                "member",
                "contributor",
                "manager",
                name="group_role",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["platform_id"],
            ["lti_platform.id"],
            name=op.f("fk_lti_role_mapping_platform_id_lti_platform"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lti_role_mapping")),
        sa.UniqueConstraint(
            "platform_id", "lti_role", name=op.f("uq_lti_role_mapping_platform_id_lti_role")
        ),
    )
    op.create_table(
        "lti_user_mapping",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform_id", sa.Integer(), nullable=False),
        sa.Column(
            "lti_user_id",
            sa.String(length=255),
            nullable=False,
            comment="the sub claim: the user's id on the platform",
        ),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "email",
            sa.String(length=254),
            server_default="",
            nullable=False,
            comment="last email the platform sent",
        ),
        sa.Column("given_name", sa.String(length=255), server_default="", nullable=False),
        sa.Column("family_name", sa.String(length=255), server_default="", nullable=False),
        sa.Column("name", sa.String(length=255), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login", sa.DateTime(timezone=True), nullable=True, comment="last launch"),
        sa.ForeignKeyConstraint(
            ["platform_id"],
            ["lti_platform.id"],
            name=op.f("fk_lti_user_mapping_platform_id_lti_platform"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_lti_user_mapping_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lti_user_mapping")),
        sa.UniqueConstraint(
            "platform_id", "lti_user_id", name=op.f("uq_lti_user_mapping_platform_id_lti_user_id")
        ),
    )
    op.create_index(
        op.f("ix_lti_user_mapping_lti_user_id"), "lti_user_mapping", ["lti_user_id"], unique=False
    )
    op.create_index(
        op.f("ix_lti_user_mapping_user_id"), "lti_user_mapping", ["user_id"], unique=False
    )

    op.create_table(
        "rbac_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "platform_id",
            sa.Integer(),
            nullable=True,
            comment="platform of the LTI context whose roster this group mirrors",
        ),
        sa.Column("lti_context_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["platform_id"],
            ["lti_platform.id"],
            name=op.f("fk_rbac_group_platform_id_lti_platform"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rbac_group")),
        sa.UniqueConstraint(
            "platform_id", "lti_context_id", name=op.f("uq_rbac_group_platform_id_lti_context_id")
        ),
    )
    op.create_table(
        "media",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "file_path",
            sa.String(length=255),
            nullable=False,
            comment="generated name relative to MEDIA_ROOT",
        ),
        sa.Column(
            "original_filename",
            sa.String(length=255),
            server_default="",
            nullable=False,
            comment="display only, never a path",
        ),
        sa.Column(
            "mime_type", sa.String(length=127), nullable=False, comment="sniffed from the content"
        ),
        sa.Column("size", sa.BigInteger(), nullable=False, comment="bytes"),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("category_id", sa.Integer(), nullable=True),
        sa.Column(
            "visibility",
            sa.Enum(
                "public",
                "members",
                "private",
                name="visibility",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            server_default="members",
            nullable=False,
            comment="public: anyone signed in; members: the category's group; private: owner",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["category.id"],
            name=op.f("fk_media_category_id_category"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["user_account.id"],
            name=op.f("fk_media_owner_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media")),
        sa.UniqueConstraint("file_path", name=op.f("uq_media_file_path")),
    )
    op.create_index(
        op.f("ix_media_category_id_created_at"),
        "media",
        ["category_id", "created_at"],
        unique=False,
    )
    op.create_index(op.f("ix_media_owner_id"), "media", ["owner_id"], unique=False)

    op.create_table(
        "rbac_group_category",
        sa.Column("rbac_group_id", sa.Integer(), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["category.id"],
            name=op.f("fk_rbac_group_category_category_id_category"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rbac_group_id"],
            ["rbac_group.id"],
            name=op.f("fk_rbac_group_category_rbac_group_id_rbac_group"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "rbac_group_id", "category_id", name=op.f("pk_rbac_group_category")
        ),
    )
    op.create_index(
        op.f("ix_rbac_group_category_category_id"),
        "rbac_group_category",
        ["category_id"],
        unique=False,
    )

    op.create_table(
        "rbac_membership",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rbac_group_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "member",
                "contributor",
                "manager",
                name="group_role",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            server_default="member",
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["rbac_group_id"],
            ["rbac_group.id"],
            name=op.f("fk_rbac_membership_rbac_group_id_rbac_group"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_rbac_membership_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rbac_membership")),
        sa.UniqueConstraint(
            "rbac_group_id", "user_id", name=op.f("uq_rbac_membership_rbac_group_id_user_id")
        ),
    )
    op.create_index(
        op.f("ix_rbac_membership_user_id"), "rbac_membership", ["user_id"], unique=False
    )

    op.create_table(
        "lti_resource_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform_id", sa.Integer(), nullable=False),
        sa.Column(
            "context_id",
            sa.String(length=255),
            server_default="",
            nullable=False,
            comment="LTI context (course) id; empty: none",
        ),
        sa.Column("context_title", sa.String(length=255), server_default="", nullable=False),
        sa.Column("context_label", sa.String(length=100), server_default="", nullable=False),
        sa.Column(
            "resource_link_id",
            sa.String(length=255),
            nullable=False,
            comment="LTI resource link id",
        ),
        sa.Column("resource_link_title", sa.String(length=255), server_default="", nullable=False),
        sa.Column(
            "category_id", sa.Integer(), nullable=True, comment="the course's media category"
        ),
        sa.Column(
            "media_id", sa.Integer(), nullable=True, comment="the media item this link opens"
        ),
        sa.Column(
            "rbac_group_id", sa.Integer(), nullable=True, comment="the course's access group"
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_launch", sa.DateTime(timezone=True), nullable=True),
        sa.Column("launch_count", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["category.id"],
            name=op.f("fk_lti_resource_link_category_id_category"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["media_id"],
            ["media.id"],
            name=op.f("fk_lti_resource_link_media_id_media"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["platform_id"],
            ["lti_platform.id"],
            name=op.f("fk_lti_resource_link_platform_id_lti_platform"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rbac_group_id"],
            ["rbac_group.id"],
            name=op.f("fk_lti_resource_link_rbac_group_id_rbac_group"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lti_resource_link")),
        sa.UniqueConstraint(
            "platform_id",
            "context_id",
            "resource_link_id",
            name=op.f("uq_lti_resource_link_platform_id_context_id_resource_link_id"),
        ),
    )
    op.create_index(
        op.f("ix_lti_resource_link_context_id"), "lti_resource_link", ["context_id"], unique=False
    )
    op.create_index(
        op.f("ix_lti_resource_link_platform_id_context_id"),
        "lti_resource_link",
        ["platform_id", "context_id"],
        unique=False,
    )

    op.create_table(
        "lti_launch_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("platform_id", sa.Integer(), nullable=False),
        sa.Column(
            "user_id",
            sa.Integer(),
            nullable=True,
            comment="empty when the launch failed before a user existed",
        ),
        sa.Column("resource_link_id", sa.Integer(), nullable=True),
        sa.Column(
            "launch_type",
            sa.Enum(
                "resource_link",
                "deep_linking",
                name="launch_type",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            server_default="resource_link",
            nullable=False,
        ),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column(
            "error_category",
            sa.String(length=64),
            nullable=True,
            comment="launch doctor category of a failure",
        ),
        sa.Column("error_message", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "claims",
            sa.JSON(),
            nullable=True,
            comment="sanitized claims: no raw id_token, masked personal data",
        ),
        sa.Column("ip_address", sa.String(length=45), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["platform_id"],
            ["lti_platform.id"],
            name=op.f("fk_lti_launch_log_platform_id_lti_platform"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["resource_link_id"],
            ["lti_resource_link.id"],
            name=op.f("fk_lti_launch_log_resource_link_id_lti_resource_link"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_lti_launch_log_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lti_launch_log")),
    )
    op.create_index(
        op.f("ix_lti_launch_log_created_at"), "lti_launch_log", ["created_at"], unique=False
    )
    op.create_index(
        "ix_lti_launch_log_created_at_desc",
        "lti_launch_log",
        [sa.literal_column("created_at DESC")],
        unique=False,
    )
    op.create_index(
        op.f("ix_lti_launch_log_platform_id_user_id"),
        "lti_launch_log",
        ["platform_id", "user_id"],
        unique=False,
    )
    op.create_index(op.f("ix_lti_launch_log_success"), "lti_launch_log", ["success"], unique=False)


def downgrade():
    op.drop_table("lti_launch_log")
    op.drop_table("lti_resource_link")
    op.drop_table("rbac_membership")
    op.drop_table("rbac_group_category")
    op.drop_table("media")
    op.drop_table("rbac_group")
    op.drop_table("lti_user_mapping")
    op.drop_table("lti_role_mapping")
    op.drop_table("category")
    op.drop_table("user_account")
    op.drop_table("tool_key")
    op.drop_table("lti_platform")
