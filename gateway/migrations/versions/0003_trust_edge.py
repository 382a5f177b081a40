"""trust edge: client approval and end-user permission, pending agreement widening, token failure windows

Revision ID: 0003_trust_edge
Revises: 0002_trust_core
Create Date: 2026-12-02 14:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_trust_edge"
down_revision: str | None = "0002_trust_core"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("client", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pending_approval", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("registered_by", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
        batch_op.add_column(sa.Column("may_assert_end_user", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("organisation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pending_allowed_fields", _JSON, nullable=True))
        batch_op.add_column(
            sa.Column("pending_requested_by", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True)
        )
    op.create_table(
        "tokenfailurewindow",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=140), nullable=False),
        sa.Column("window_start", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("audited", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("tokenfailurewindow")
    with op.batch_alter_table("organisation", schema=None) as batch_op:
        batch_op.drop_column("pending_requested_by")
        batch_op.drop_column("pending_allowed_fields")
    with op.batch_alter_table("client", schema=None) as batch_op:
        batch_op.drop_column("may_assert_end_user")
        batch_op.drop_column("registered_by")
        batch_op.drop_column("pending_approval")
