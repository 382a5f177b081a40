"""VCSE change feed: packet.seq (per-recipient feed number), disclosed_sha256, acknowledged_at; feed_counter

Revision ID: 0005_vcse_api
Revises: 0004_console
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005_vcse_api"
down_revision: str | None = "0004_console"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feed_counter",
        sa.Column("recipient", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("recipient"),
    )
    with op.batch_alter_table("packet", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("disclosed_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column("acknowledged_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.create_index("ix_packet_feed", ["recipient", "seq"], unique=False)
    # Packets stored before the feed existed get feed numbers in the order they were made, per recipient,
    # and each recipient's counter starts after them (window functions: PostgreSQL, SQLite >= 3.25).
    op.execute(
        "UPDATE packet SET seq = numbered.rn FROM (SELECT packet_id, ROW_NUMBER() OVER "
        "(PARTITION BY recipient ORDER BY created, packet_id) AS rn FROM packet) AS numbered "
        "WHERE packet.packet_id = numbered.packet_id"
    )
    op.execute("INSERT INTO feed_counter (recipient, value) SELECT recipient, MAX(seq) FROM packet GROUP BY recipient")


def downgrade() -> None:
    with op.batch_alter_table("packet", schema=None) as batch_op:
        batch_op.drop_index("ix_packet_feed")
        batch_op.drop_column("acknowledged_at")
        batch_op.drop_column("disclosed_sha256")
        batch_op.drop_column("seq")
    op.drop_table("feed_counter")
