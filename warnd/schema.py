"""Database schema: one definition for SQLite and PostgreSQL. Alembic migrations mirror it
(``tests/integration/test_migrations.py`` checks that they do)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator


def naive_utc(value: datetime) -> datetime:
    """How UTCDateTime stores an aware datetime (also for statements run past SQLAlchemy's type processing)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the database; use timezone-aware datetimes")
    return value.astimezone(UTC).replace(tzinfo=None)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; stored as naive UTC so both engines agree."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else naive_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)


# Row ids and the columns that hold them: 64-bit on PostgreSQL (a province's 1.1亿 deliveries of one event, and
# their events, outgrow a 32-bit serial within a few such events); SQLite's INTEGER is 64-bit already, and an
# INTEGER PRIMARY KEY there must stay the rowid. Migration 0009 widens the PostgreSQL columns.
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Every payload that reached ingest, kept as received. outcome: accepted | duplicate | rejected (= quarantine)
# | held (an Update/Cancel before its original) → applied | released (treated as new after lifecycle.hold_for).
payloads = Table(
    "payloads",
    metadata,
    Column("id", Id, primary_key=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("source", String(500), nullable=False),  # file path, http:<peer>, feed:<name>, broadcast:<actor>
    Column("content_type", String(100)),
    Column("sha256", String(64), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("errors", JSON),  # list of "path: reason" for rejected payloads, warnings for accepted ones
    Column("alert_id", Id),
    Index("ix_payloads_outcome_received", "outcome", "received_at"),
)

# One row per alert revision (an Update or Cancel is a new row linked to the one it references).
alerts = Table(
    "alerts",
    metadata,
    Column("id", Id, primary_key=True),
    Column("sender", String(255), nullable=False),
    Column("identifier", String(255), nullable=False),
    Column("sent", UTCDateTime, nullable=False),
    Column("msg_type", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("profile", String(16), nullable=False),
    Column("event", String(255), nullable=False),
    Column("hazard_code", String(16)),
    Column("colour", String(8)),
    Column("level", SmallInteger),  # response level from the matched rules, 1 = Ⅰ (highest)
    Column("rank", SmallInteger),  # what inhibition compares: level, else colour rank (1 = most severe)
    Column("headline", Text),
    Column("area_desc", Text),
    Column("effective", UTCDateTime),
    Column("expires", UTCDateTime),
    Column("root_id", Id, ForeignKey("alerts.id")),  # first revision of the chain (itself for originals)
    Column("previous_id", Id, ForeignKey("alerts.id")),  # the revision this one updates or cancels
    Column("payload_id", Id, ForeignKey("payloads.id")),
    Column("parsed", JSON, nullable=False),  # the Alert, as JSON
    Column("state", String(16), nullable=False),  # active | updated | cancelled | expired | inactive
    Column("fanout", String(16), nullable=False),  # pending | done
    Column("fanout_stats", JSON),
    Column("rules", JSON),  # names of the rules that matched
    Column("source", String(500)),
    Column("received_at", UTCDateTime, nullable=False),
    UniqueConstraint("sender", "identifier", "sent"),
    Index("ix_alerts_hazard_state", "hazard_code", "state"),
    Index("ix_alerts_root", "root_id"),
    Index("ix_alerts_identifier", "identifier"),
)

# People and loudspeaker terminals. key: phone for people, terminal id for terminals.
recipients = Table(
    "recipients",
    metadata,
    Column("id", Id, primary_key=True),
    Column("key", String(64), nullable=False, unique=True),
    Column("kind", String(10), nullable=False),  # person | terminal
    Column("name", String(100), nullable=False),
    Column("phone", String(20)),
    Column("role", String(32), nullable=False),
    Column("area_code", String(12), nullable=False),
    Column("lat", Float),
    Column("lon", Float),
    Column("language", String(16), nullable=False),
    Column("push_tokens", JSON(none_as_null=True)),
    Column("terminal_id", String(64)),
    Column("source", String(10), nullable=False),  # config | import
    Column("active", Boolean, nullable=False),
    # for the door-knock list (敲门行动): where the household lives, which household (people sharing one are
    # knocked once), who is vulnerable (elderly_alone, disabled, child ...), and an explicit superior's phone
    Column("address", Text),
    Column("household", String(64)),
    Column("vulnerable", JSON(none_as_null=True)),
    Column("superior", String(20)),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_recipients_area", "area_code"),
)

group_members = Table(
    "group_members",
    metadata,
    Column("group_name", String(64), nullable=False),
    Column("recipient_id", Id, ForeignKey("recipients.id", ondelete="CASCADE"), nullable=False),
    PrimaryKeyConstraint("group_name", "recipient_id"),
    Index("ix_group_members_recipient", "recipient_id"),
)

# Rendered content: once per alert revision x channel x language (x recipient when the template needs one).
messages = Table(
    "messages",
    metadata,
    Column("id", Id, primary_key=True),
    Column("alert_id", Id, ForeignKey("alerts.id"), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("language", String(16), nullable=False),
    Column("recipient_id", Id),
    Column("body", Text, nullable=False),
    Column("title", Text),
    Column("data", JSON),
    Column("segments", SmallInteger, nullable=False),
    Column("truncated", Boolean, nullable=False),
    Index("ix_messages_alert", "alert_id"),
)

# The outbox: one row per recipient x channel x alert revision, written before anything is sent.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Id, primary_key=True),
    Column("alert_id", Id, ForeignKey("alerts.id"), nullable=False),
    Column("recipient_id", Id, ForeignKey("recipients.id"), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("message_id", Id, ForeignKey("messages.id"), nullable=False),
    # queued | sent | delivered | failed | failed_over | suppressed | superseded | expired
    # (delivered / failed after sent: from delivery receipts and play reports, docs/feedback.md)
    Column("status", String(12), nullable=False),
    Column("priority", SmallInteger, nullable=False),  # lower first
    Column(
        "visible_at", UTCDateTime, nullable=False
    ),  # claimable from; moved forward by a lease or a backoff
    Column("lease_token", String(36)),  # the claim that holds it; results only land if it still matches
    Column("attempts", SmallInteger, nullable=False, default=0),
    Column("idempotency_key", String(80), nullable=False, unique=True),
    Column("provider_message_id", String(128)),
    Column("error", Text),
    Column("reason", Text),  # why it was suppressed / superseded / sent this way
    # suppressed: the root of the alert chain that covered the recipient (re-queued when it stops covering)
    Column("suppressed_by", Id),
    Column("segments", SmallInteger, nullable=False),
    Column("repeat", SmallInteger, nullable=False),
    Column("level", SmallInteger),
    Column("ack_required", Boolean, nullable=False),
    Column("ack_deadline", UTCDateTime),
    Column("rules", String(500)),
    Column("area_code", String(12), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime),  # when the last part's success report made it delivered
    # warning: the alert itself; notice:<escalation id> a superior told that someone did not answer;
    # doorknock:<village>:<households> a grid worker's door-knock task (docs/escalation.md)
    Column("purpose", String(40), nullable=False, server_default="warning"),
    # a person not confirmed reached by then enters the rule's escalation ladder
    Column("deliver_deadline", UTCDateTime),
    UniqueConstraint("alert_id", "recipient_id", "channel", "purpose"),
    Index("ix_deliveries_ready", "status", "channel", "priority", "visible_at"),
    Index("ix_deliveries_recipient", "recipient_id"),
    Index("ix_deliveries_created", "created_at"),
    Index("ix_deliveries_suppressed_by", "suppressed_by"),
)

# Every attempt and provider answer; kept for the delivery log and the feedback loop.
delivery_events = Table(
    "delivery_events",
    metadata,
    Column("id", Id, primary_key=True),
    Column("delivery_id", Id, ForeignKey("deliveries.id"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    # accepted | retry | failed | failed_over | failover | deferred | superseded | expired | released | feedback
    Column("kind", String(16), nullable=False),
    Column("detail", JSON),
    Index("ix_delivery_events_delivery", "delivery_id"),
)

# The parts of a sent delivery (SMS segments; one part elsewhere) and what their receipts said, written in the
# transaction that marks the delivery sent. ``provider_id``: the part's provider message id (SMPP: one per part;
# SMS gateways: the message's id on every part; may be shared by a gateway's whole batch, hence not unique).
delivery_parts = Table(
    "delivery_parts",
    metadata,
    Column("delivery_id", Id, ForeignKey("deliveries.id"), nullable=False),
    Column("part", SmallInteger, nullable=False),  # 0-based
    Column("channel", String(32), nullable=False),
    Column("provider_id", String(128)),
    Column("state", String(12), nullable=False),  # sent | delivered | failed (only ever gets worse)
    Column("report", String(32)),  # the last reported state, as the provider wrote it (duplicate check)
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("delivery_id", "part"),
    Index("ix_delivery_parts_provider", "channel", "provider_id"),
)


# 叫应: a person's acknowledgement of one alert revision, by reply SMS, one-tap link or a call an operator
# recorded. The first one counts; later ones are audit entries.
acknowledgements = Table(
    "acknowledgements",
    metadata,
    Column("id", Id, primary_key=True),
    Column("alert_id", Id, ForeignKey("alerts.id"), nullable=False),
    Column("root_id", Id, nullable=False),
    Column("recipient_id", Id, ForeignKey("recipients.id"), nullable=False),
    Column("delivery_id", Id),  # the delivery it answers, when known
    Column("at", UTCDateTime, nullable=False),
    Column("channel", String(16), nullable=False),  # reply | link | call
    Column(
        "recorded_by", String(100), nullable=False
    ),  # who: the recipient, or the operator who took the call
    Column("detail", JSON),
    UniqueConstraint("alert_id", "recipient_id"),
    Index("ix_acknowledgements_root", "root_id"),
)

# The escalation ladder of one person for one alert revision (docs/escalation.md): opened by the sweep when the
# person was not confirmed reached (undelivered) or did not acknowledge (unacknowledged) by the deadline; each
# sweep claims the rows that are due (lease + token, like the outbox) and climbs one rung.
escalations = Table(
    "escalations",
    metadata,
    Column("id", Id, primary_key=True),
    Column("alert_id", Id, ForeignKey("alerts.id"), nullable=False),
    Column("root_id", Id, nullable=False),
    Column("recipient_id", Id, ForeignKey("recipients.id"), nullable=False),
    Column("reason", String(16), nullable=False),  # undelivered | unacknowledged
    Column("step", SmallInteger, nullable=False),  # rungs climbed so far
    Column("state", String(12), nullable=False),  # open | resolved | exhausted | closed
    Column("due_at", UTCDateTime, nullable=False),
    Column("lease_token", String(36)),
    Column("leased_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("resolution", Text),  # why it ended: acknowledged, delivered, alert cancelled ...
    UniqueConstraint("alert_id", "recipient_id"),
    Index("ix_escalations_due", "state", "due_at"),
    Index("ix_escalations_root", "root_id"),
)

# Each rung climbed and why (the "有叫有应有记录" record).
escalation_events = Table(
    "escalation_events",
    metadata,
    Column("id", Id, primary_key=True),
    Column("escalation_id", Id, ForeignKey("escalations.id"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("step", String(16), nullable=False),  # opened | resend | superior | doorknock | resolved | closed
    Column("reason", Text, nullable=False),
    Column("detail", JSON),
    Index("ix_escalation_events_escalation", "escalation_id"),
)

# 敲门行动: a person the messages did not reach (or who did not answer), for the grid workers of their village.
# One row per person; the list groups them by household, and a check-off applies to the whole household.
doorknocks = Table(
    "doorknocks",
    metadata,
    Column("id", Id, primary_key=True),
    Column("root_id", Id, nullable=False),  # the alert chain
    Column("alert_id", Id, ForeignKey("alerts.id"), nullable=False),  # the revision that put them here
    Column("recipient_id", Id, ForeignKey("recipients.id"), nullable=False),
    Column("area_code", String(12), nullable=False),  # the village
    Column("household", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("added_at", UTCDateTime, nullable=False),
    Column("result", String(12)),  # reached | moved | not_home
    Column("result_at", UTCDateTime),
    Column("result_by", String(100)),  # the grid worker (or operator) who checked it off
    Column("note", Text),
    UniqueConstraint("root_id", "recipient_id"),
    Index("ix_doorknocks_root_area", "root_id", "area_code"),
)

# Coverage reports kept when an alert chain ends (drills apart from real alerts), with the recommendations
# computed then; live reports are computed on demand.
alert_reports = Table(
    "alert_reports",
    metadata,
    Column("root_id", Id, primary_key=True),
    Column("drill", Boolean, nullable=False),
    Column("computed_at", UTCDateTime, nullable=False),
    Column("report", JSON, nullable=False),
    Column("recommendations", JSON),
    Index("ix_alert_reports_drill", "drill", "computed_at"),
)

# The channel order learned per person from delivery history (fastest and most reliable first).
channel_preferences = Table(
    "channel_preferences",
    metadata,
    Column("recipient_id", Id, ForeignKey("recipients.id", ondelete="CASCADE"), primary_key=True),
    Column("channels", JSON, nullable=False),
    Column("evidence", JSON),
    Column("computed_at", UTCDateTime, nullable=False),
)

# Append-only record of operator and machine actions.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(100), nullable=False),
    Column("action", String(50), nullable=False),
    Column("target", String(200)),
    Column("detail", JSON),
    Column("remote", String(100)),
    Index("ix_audit_log_at", "at"),
)

feed_state = Table(
    "feed_state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("url", String(1000), nullable=False),
    Column("etag", String(500)),
    Column("last_modified", String(100)),
    Column("last_poll", UTCDateTime),
    Column("last_success", UTCDateTime),
    Column("last_error", Text),
    Column("last_error_at", UTCDateTime),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("items", Integer, nullable=False, default=0),
    Column("latency_ms", Float),
)

# Thin-feed entries already fetched, so a poll fetches only new or changed entries.
feed_entries = Table(
    "feed_entries",
    metadata,
    Column("feed", String(64), nullable=False),
    Column("entry_key", String(600), nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("feed", "entry_key"),
)

# Gauge readings as received (river levels, rainfall), kept for the record, for rainfall windows and so gaps
# and no-data values stay visible. One row per gauge id and time; a repeat is ignored.
gauge_readings = Table(
    "gauge_readings",
    metadata,
    Column("id", Id, primary_key=True),
    Column("gauge", String(64), nullable=False),  # the id the data uses
    Column("time", UTCDateTime, nullable=False),
    Column("level", Float),
    Column("flow", Float),
    Column("rainfall", Float),
    Column("qualifiers", String(64)),  # "P", "A,e" …
    Column("problem", String(200)),  # why a value is missing or doubtful
    Column("source", String(500), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    UniqueConstraint("gauge", "time", name="uq_gauge_readings_gauge_time"),
)

# The warning state of each river station and danger zone ("station:longxi", "zone:wannian-3"): its current
# colour or step, the ladder's working values, and the CAP reference of the revision it last issued.
hydro_state = Table(
    "hydro_state",
    metadata,
    Column("key", String(80), primary_key=True),
    Column("state", JSON, nullable=False),
    Column("alert_ref", String(600)),  # "sender,identifier,sent" of the latest generated revision
    Column("updated_at", UTCDateTime, nullable=False),
)

# --- accounts and access (warnd/auth.py, docs/security.md) ---------------------------------------------------

# People who log in to the console: argon2id password hashes (never the password), one role of viewer < operator
# < approver < admin. Disabled accounts stay for the audit trail; they cannot log in and their sessions end.
users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("last_login_at", UTCDateTime),
    Column("phone", String(32)),  # where an approver is told of a broadcast waiting for them (SMS)
)

# API tokens for machines (feeds pushing alerts, gateways): only the SHA-256 (hex) of the token is kept; the
# token itself is printed once by `warnd tokens add`. Revoked tokens stay for the audit trail.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime),
    Column("revoked", Boolean, nullable=False, default=False),
)

# Console sessions: id = SHA-256 (hex) of the cookie value, so the table never holds a usable cookie; the CSRF
# token every state-changing request of the session must echo in X-CSRF-Token; expires_at slides.
sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("remote", String(100)),
    Index("ix_sessions_user_id", "user_id"),
    Index("ix_sessions_expires_at", "expires_at"),
)

# Manual broadcasts and operator Updates of alerts (warnd/broadcasts.py): the draft as submitted, the preview it
# was approved on, and the two-person decision. status: pending → sending → sent | failed, or rejected /
# withdrawn. "sending" is claimed by one approver; the alert's identifier is fixed by the row (warnd-bc-<id>),
# so a send interrupted by a crash is finished at start-up without a second alert.
broadcasts = Table(
    "broadcasts",
    metadata,
    Column("id", Id, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("kind", String(16), nullable=False),  # broadcast | update (of alert `update_of`)
    Column("update_of", Id, ForeignKey("alerts.id")),
    Column("draft", JSON, nullable=False),
    Column("needs_approval", Boolean, nullable=False),
    Column("approval_reasons", JSON),
    Column("headline", String(500)),
    Column("colour", String(16)),
    Column("recipients", Integer),
    Column("preview", JSON),
    Column("submitted_by", String(100), nullable=False),
    Column("submitted_at", UTCDateTime, nullable=False),
    Column("decided_by", String(100)),
    Column("decided_at", UTCDateTime),
    Column("note", String(1000)),
    Column("alert_id", Id, ForeignKey("alerts.id")),
    Column("error", String(1000)),
    Index("ix_broadcasts_status", "status", "id"),
)

# Cluster mode (several `warnd run` on one PostgreSQL database, docs/cluster.md; warnd/store/cluster.py).
# A scheduled job runs once per slot of its interval across the nodes: the node whose row lands runs it.
job_runs = Table(
    "job_runs",
    metadata,
    Column("job", String(100), nullable=False),  # the scheduler's job id: expire, held, feed:<name>, …
    Column("slot", UTCDateTime, nullable=False),  # start of the interval this run is for
    Column("node", String(100), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("job", "slot"),
)

# Work one node does for a while (an alert's fan-out: fanout:<alert id>): held until expires_at, renewed while
# the node works; a node that died leaves it to expire, and another takes the work over.
cluster_leases = Table(
    "cluster_leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(100), nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)
