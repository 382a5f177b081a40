"""Uniqueness kept by the database, and HL7 v2 de-duplication bound to the caller.

- referral_identifier: a tenant's referral business identifiers, unique per tenant (filled from the
  ServiceRequests already stored).
- uq_patient_per_tenant: one Patient per NHS number per tenant (a partial unique index).
- v2_message gains client_id in its key: the client (HTTP) or configured MLLP source that sent it.
  Rows from before carry client_id '' (who sent them was not recorded); they no longer match
  anyone's resend, so a resend after the upgrade is stored again at most once more.

Revision ID: 0002_trust_core
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002_trust_core"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PATIENT_ONLY = "resource_type = 'Patient'"


def upgrade() -> None:
    op.create_table(
        "referral_identifier",
        sa.Column("tenant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("system", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("value", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("service_request_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "system", "value"),
    )
    # The identifiers of referrals already stored (the oldest ServiceRequest keeps an identifier sent twice).
    op.execute(
        "INSERT INTO referral_identifier (tenant, system, value, service_request_id) "
        "SELECT r.tenant, t.system, t.value, MIN(r.id) FROM fhir_resource r "
        "JOIN fhir_search_token t ON t.resource_pk = r.pk "
        "WHERE r.resource_type = 'ServiceRequest' AND t.param = 'identifier' "
        "GROUP BY r.tenant, t.system, t.value"
    )
    duplicates = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT COUNT(*) FROM (SELECT tenant, patient_nhs FROM fhir_resource WHERE resource_type = 'Patient' "
                "GROUP BY tenant, patient_nhs HAVING COUNT(*) > 1) d"
            )
        )
        .scalar()
    )
    if duplicates:
        raise RuntimeError(
            f"{duplicates} NHS numbers have more than one Patient in one tenant (stored by concurrent requests "
            "before this version): merge them before upgrading; the upgrade adds a unique index on them"
        )
    with op.batch_alter_table("fhir_resource", schema=None) as batch_op:
        batch_op.create_index(
            "uq_patient_per_tenant",
            ["tenant", "patient_nhs"],
            unique=True,
            sqlite_where=sa.text(PATIENT_ONLY),
            postgresql_where=sa.text(PATIENT_ONLY),
        )

    op.rename_table("v2_message", "v2_message_0001")
    op.create_table(
        "v2_message",
        sa.Column("client_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("sender", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("control_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("ack_code", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
        sa.Column("service_request_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("created", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "sender", "control_id"),
    )
    op.execute(
        "INSERT INTO v2_message (client_id, sender, control_id, ack_code, service_request_id, created) "
        "SELECT '', sender, control_id, ack_code, service_request_id, created FROM v2_message_0001"
    )
    op.drop_table("v2_message_0001")


def downgrade() -> None:
    op.rename_table("v2_message", "v2_message_0002")
    op.create_table(
        "v2_message",
        sa.Column("sender", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("control_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("ack_code", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
        sa.Column("service_request_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("created", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sender", "control_id"),
    )
    op.execute(
        "INSERT INTO v2_message (sender, control_id, ack_code, service_request_id, created) "
        "SELECT sender, control_id, MIN(ack_code), MIN(service_request_id), MIN(created) FROM v2_message_0002 "
        "GROUP BY sender, control_id"
    )
    op.drop_table("v2_message_0002")
    with op.batch_alter_table("fhir_resource", schema=None) as batch_op:
        batch_op.drop_index("uq_patient_per_tenant")
    op.drop_table("referral_identifier")
