"""the feedback loop: acknowledgements (叫应), escalations, door-knock lists, kept reports

- recipients: address, household, vulnerable, superior (for the door-knock list and the superior rung);
- deliveries: purpose (warning | notice:<escalation> | doorknock:<village>:<n>) joins the unique key, so a
  superior can get a notice about an alert they also received; deliver_deadline (the escalation trigger);
- acknowledgements, escalations, escalation_events, doorknocks, alert_reports, channel_preferences.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import warnd.schema

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UTC = warnd.schema.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("recipients") as batch:
        batch.add_column(sa.Column("address", sa.Text(), nullable=True))
        batch.add_column(sa.Column("household", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("vulnerable", sa.JSON(none_as_null=True), nullable=True))
        batch.add_column(sa.Column("superior", sa.String(length=20), nullable=True))
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("purpose", sa.String(length=40), nullable=False, server_default="warning"))
        batch.add_column(sa.Column("deliver_deadline", UTC(), nullable=True))
        batch.drop_constraint("uq_deliveries_alert_id_recipient_id_channel", type_="unique")
        batch.create_unique_constraint(
            "uq_deliveries_alert_id_recipient_id_channel_purpose",
            ["alert_id", "recipient_id", "channel", "purpose"],
        )
    op.create_table(
        "acknowledgements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("root_id", sa.Integer(), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("at", UTC(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("recorded_by", sa.String(length=100), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_acknowledgements_alert_id_alerts")
        ),
        sa.ForeignKeyConstraint(
            ["recipient_id"], ["recipients.id"], name=op.f("fk_acknowledgements_recipient_id_recipients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acknowledgements")),
        sa.UniqueConstraint(
            "alert_id", "recipient_id", name=op.f("uq_acknowledgements_alert_id_recipient_id")
        ),
    )
    op.create_index("ix_acknowledgements_root", "acknowledgements", ["root_id"])
    op.create_table(
        "escalations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("root_id", sa.Integer(), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("step", sa.SmallInteger(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("due_at", UTC(), nullable=False),
        sa.Column("lease_token", sa.String(length=36), nullable=True),
        sa.Column("leased_until", UTC(), nullable=True),
        sa.Column("created_at", UTC(), nullable=False),
        sa.Column("updated_at", UTC(), nullable=False),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_escalations_alert_id_alerts")),
        sa.ForeignKeyConstraint(
            ["recipient_id"], ["recipients.id"], name=op.f("fk_escalations_recipient_id_recipients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalations")),
        sa.UniqueConstraint("alert_id", "recipient_id", name=op.f("uq_escalations_alert_id_recipient_id")),
    )
    op.create_index("ix_escalations_due", "escalations", ["state", "due_at"])
    op.create_index("ix_escalations_root", "escalations", ["root_id"])
    op.create_table(
        "escalation_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("escalation_id", sa.Integer(), nullable=False),
        sa.Column("at", UTC(), nullable=False),
        sa.Column("step", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["escalation_id"], ["escalations.id"], name=op.f("fk_escalation_events_escalation_id_escalations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_events")),
    )
    op.create_index("ix_escalation_events_escalation", "escalation_events", ["escalation_id"])
    op.create_table(
        "doorknocks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("root_id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("area_code", sa.String(length=12), nullable=False),
        sa.Column("household", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("added_at", UTC(), nullable=False),
        sa.Column("result", sa.String(length=12), nullable=True),
        sa.Column("result_at", UTC(), nullable=True),
        sa.Column("result_by", sa.String(length=100), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_doorknocks_alert_id_alerts")),
        sa.ForeignKeyConstraint(
            ["recipient_id"], ["recipients.id"], name=op.f("fk_doorknocks_recipient_id_recipients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_doorknocks")),
        sa.UniqueConstraint("root_id", "recipient_id", name=op.f("uq_doorknocks_root_id_recipient_id")),
    )
    op.create_index("ix_doorknocks_root_area", "doorknocks", ["root_id", "area_code"])
    op.create_table(
        "alert_reports",
        sa.Column("root_id", sa.Integer(), nullable=False),
        sa.Column("drill", sa.Boolean(), nullable=False),
        sa.Column("computed_at", UTC(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("recommendations", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("root_id", name=op.f("pk_alert_reports")),
    )
    op.create_index("ix_alert_reports_drill", "alert_reports", ["drill", "computed_at"])
    op.create_table(
        "channel_preferences",
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=True),
        sa.Column("computed_at", UTC(), nullable=False),
        sa.ForeignKeyConstraint(
            ["recipient_id"],
            ["recipients.id"],
            name=op.f("fk_channel_preferences_recipient_id_recipients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("recipient_id", name=op.f("pk_channel_preferences")),
    )


def downgrade() -> None:
    op.drop_table("channel_preferences")
    op.drop_index("ix_alert_reports_drill", table_name="alert_reports")
    op.drop_table("alert_reports")
    op.drop_index("ix_doorknocks_root_area", table_name="doorknocks")
    op.drop_table("doorknocks")
    op.drop_index("ix_escalation_events_escalation", table_name="escalation_events")
    op.drop_table("escalation_events")
    op.drop_index("ix_escalations_root", table_name="escalations")
    op.drop_index("ix_escalations_due", table_name="escalations")
    op.drop_table("escalations")
    op.drop_index("ix_acknowledgements_root", table_name="acknowledgements")
    op.drop_table("acknowledgements")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_constraint("uq_deliveries_alert_id_recipient_id_channel_purpose", type_="unique")
        batch.create_unique_constraint(
            "uq_deliveries_alert_id_recipient_id_channel", ["alert_id", "recipient_id", "channel"]
        )
        batch.drop_column("deliver_deadline")
        batch.drop_column("purpose")
    with op.batch_alter_table("recipients") as batch:
        batch.drop_column("superior")
        batch.drop_column("vulnerable")
        batch.drop_column("household")
        batch.drop_column("address")
