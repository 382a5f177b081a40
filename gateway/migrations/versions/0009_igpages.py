"""console background jobs (audit verification and exports started from the IG pages)

Revision ID: 0009_igpages
Revises: 0008_inbox
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009_igpages"
down_revision: str | None = "0008_inbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_job",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("username", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("started", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("finished", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["username"], ["console_user.username"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("console_job", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_console_job_username"), ["username"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("console_job", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_job_username"))
    op.drop_table("console_job")
