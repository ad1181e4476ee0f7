"""The database schema (SQLAlchemy Core), shared by SQLite and PostgreSQL.

Column names follow the record dataclasses in ``callroom.model.records`` one to one, so rows and
records convert without a hand-written mapping per table. Alembic migrations in ``migrations/`` create
exactly these tables; ``tests/store/test_migrations.py`` checks that the two agree.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    text,
)

from callroom.model.states import CallState

metadata = MetaData()

ID = String(64)
URL = String(2048)

accounts = Table(
    "accounts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, nullable=False, index=True),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(128), nullable=False, unique=True),
    Column("label", String(255), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)

settings = Table(
    "settings",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
)

applications = Table(
    "applications",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, nullable=False, index=True),
    Column("application_name", String(255), nullable=False),
    Column("webhook_event_url", URL, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("webhook_event_failover_url", URL, nullable=True),
    Column("webhook_timeout_secs", Integer, nullable=True),
    Column("webhook_api_version", String(4), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("anchorsite_override", String(64), nullable=False),
    Column("dtmf_type", String(32), nullable=False),
    Column("first_command_timeout", Boolean, nullable=False),
    Column("first_command_timeout_secs", Integer, nullable=False),
    Column("inbound", JSON, nullable=False),
    Column("outbound", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("call_cost_in_webhooks", Boolean, nullable=False),
    Column("redact_dtmf_debug_logging", Boolean, nullable=False),
)

calls = Table(
    "calls",
    metadata,
    Column("call_control_id", ID, primary_key=True),
    Column("call_leg_id", ID, nullable=False, unique=True),
    Column("call_session_id", ID, nullable=False, index=True),
    Column("account_id", ID, nullable=False, index=True),
    Column("connection_id", ID, nullable=False),
    Column("direction", String(16), nullable=False),
    Column("from_", String(512), nullable=False),
    Column("to", String(512), nullable=False),
    # Not indexed: a call's state changes with most commands, and an indexed column changed keeps
    # PostgreSQL from updating the row in place (migration 0004, which also leaves room on each page).
    Column("state", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("node_id", ID, nullable=False, index=True),
    Column("endpoint", String(1024), nullable=False),
    Column("client_state", Text, nullable=True),
    Column("answered_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("hangup_cause", String(32), nullable=True),
    Column("hangup_source", String(16), nullable=True),
    Column("sip_hangup_cause", String(16), nullable=True),
    Column("bridged_with", ID, nullable=True),
    Column("conference_id", ID, nullable=True),
    Column("queue_id", ID, nullable=True),
    Column("park_after_unbridge", String(16), nullable=True),
    Column("hold_after_unbridge", Boolean, nullable=False),
    Column("webhook_url", URL, nullable=True),
    Column("webhook_url_method", String(8), nullable=False),
    Column("timeout_secs", Integer, nullable=False),
    Column("time_limit_secs", Integer, nullable=False),
    Column("conference_config", JSON, nullable=True),
    Column("link_to", ID, nullable=True),
    Column("bridge_on_answer", Boolean, nullable=False),
    Column("plan", JSON, nullable=True),
)

conferences = Table(
    "conferences",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("connection_id", ID, nullable=False),
    Column("creator_call_control_id", ID, nullable=False),
    Column("creator_call_session_id", ID, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("region", String(32), nullable=False),
    Column("beep_enabled", String(16), nullable=False),
    Column("comfort_noise", Boolean, nullable=False),
    Column("max_participants", Integer, nullable=False),
    Column("hold_audio_url", URL, nullable=True),
    Column("hold_media_name", String(255), nullable=True),
    Column("client_state", Text, nullable=True),
    Column("end_reason", String(32), nullable=True),
    Column("ended_by_call_control_id", ID, nullable=True),
    Column("ended_by_call_session_id", ID, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("node_id", ID, nullable=True),  # its home: the node that mixes it (None: a single node's)
    Index("ix_conferences_account_name_status", "account_id", "name", "status"),
    Index("ix_conferences_account_expires", "account_id", "expires_at"),
    # A name is one live conference's at a time, whichever node creates it (two creates racing: one wins).
    Index("uq_conferences_active_name", "account_id", "name", unique=True,
          postgresql_where=text("status != 'completed'"), sqlite_where=text("status != 'completed'")),
)

participants = Table(
    "participants",
    metadata,
    Column("id", ID, primary_key=True),
    Column("conference_id", ID, nullable=False, index=True),
    Column("account_id", ID, nullable=False),
    Column("call_control_id", ID, nullable=False, index=True),
    Column("call_leg_id", ID, nullable=False),
    Column("call_session_id", ID, nullable=False),
    Column("connection_id", ID, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("label", String(255), nullable=True),
    Column("muted", Boolean, nullable=False),
    Column("on_hold", Boolean, nullable=False),
    Column("supervisor_role", String(16), nullable=False),
    Column("whisper_call_control_ids", JSON, nullable=False),
    Column("end_conference_on_exit", Boolean, nullable=False),
    Column("soft_end_conference_on_exit", Boolean, nullable=False),
    Column("start_conference_on_enter", Boolean, nullable=False),
    Column("beep_enabled", String(16), nullable=True),
    Column("hold_audio_url", URL, nullable=True),
    Column("hold_media_name", String(255), nullable=True),
    Column("left_at", Float, nullable=True),
    Column("node_id", ID, nullable=True),  # where the participant's call lives (as its call's node_id)
)

queues = Table(
    "queues",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, nullable=False),
    Column("name", String(255), nullable=False),
    Column("max_size", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("account_id", "name", name="uq_queues_account_name"),
)

queue_entries = Table(
    "queue_entries",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("queue_id", ID, nullable=False, index=True),
    Column("account_id", ID, nullable=False),
    Column("call_control_id", ID, nullable=False, unique=True),
    Column("call_leg_id", ID, nullable=False),
    Column("call_session_id", ID, nullable=False),
    Column("connection_id", ID, nullable=False),
    Column("from_", String(512), nullable=False),
    Column("to", String(512), nullable=False),
    Column("enqueued_at", Float, nullable=False),
    Column("keep_after_hangup", Boolean, nullable=False),
    Column("max_wait_time_secs", Integer, nullable=True),
    Column("is_alive", Boolean, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", ID, nullable=False, unique=True),
    Column("account_id", ID, nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("occurred_at", Float, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("occurred_at_in_payload", Boolean, nullable=False),
    Column("url", URL, nullable=True),
    Column("failover_url", URL, nullable=True),
    Column("method", String(8), nullable=False),
    Column("timeout_secs", Float, nullable=False),
    Column("order_key", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    # The node whose dispatcher delivers the row (the one that committed it, or the node that took over the
    # rows of a dead one); None: rows written before nodes owned them, delivered by any node.
    Column("owner", ID, nullable=True),
    Index("ix_outbox_status_next", "status", "next_attempt_at"),
    Index("ix_outbox_order_key_status", "order_key", "status"),
    Index("ix_outbox_owner_status", "owner", "status"),
)

nodes = Table(
    "nodes",
    metadata,
    Column("node_id", ID, primary_key=True),
    Column("status", String(16), nullable=False),  # up | stopped | dead
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("api_url", String(512), nullable=True),
    Column("sip_host", String(255), nullable=True),
    Column("sip_port", Integer, nullable=True),
    Column("load", JSON, nullable=False),  # calls, legs, tick lateness ... as the node last reported them
    Column("reaped_by", ID, nullable=True),  # the survivor that ended a dead node's calls
    Column("reaped_at", Float, nullable=True),
    Column("draining_since", Float, nullable=True),  # takes no new calls since (set by the node or `callroom drain`)
)

timers = Table(
    "timers",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("account_id", ID, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("ref", ID, nullable=False),
    Column("due_at", Float, nullable=False, index=True),
    Index("ix_timers_kind_ref", "kind", "ref"),
)

command_ids = Table(
    "command_ids",
    metadata,
    Column("account_id", ID, primary_key=True),
    Column("scope", ID, primary_key=True),
    Column("command_id", String(255), primary_key=True),
    Column("created_at", Float, nullable=False, index=True),
    Column("result", String(255), nullable=True),  # what the first execution produced (e.g. a call id)
)

# -- media actions (migration 0002) -------------------------------------------------------------------

media_jobs = Table(
    "media_jobs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, nullable=False),
    Column("kind", String(16), nullable=False),  # playback | speak | record | gather
    Column("scope", String(16), nullable=False),  # call | conference | participants
    Column("call_control_id", ID, nullable=True, index=True),
    Column("conference_id", ID, nullable=True, index=True),
    Column("data", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # pending | active | done
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

recordings = Table(
    "recordings",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, nullable=False, index=True),
    Column("source", String(16), nullable=False),  # call | conference
    Column("call_control_id", ID, nullable=True),
    Column("call_leg_id", ID, nullable=True),
    Column("call_session_id", ID, nullable=True),
    Column("conference_id", ID, nullable=True),
    Column("connection_id", ID, nullable=True),
    Column("channels", String(8), nullable=False),
    Column("format", String(8), nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("path", String(1024), nullable=True),
    Column("size_bytes", Integer, nullable=True),
    Column("duration_millis", Integer, nullable=True),
    Column("status", String(16), nullable=False),  # recording | paused | completed | failed
    Column("recording_started_at", Float, nullable=False),
    Column("recording_ended_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

media_files = Table(
    "media_files",
    metadata,
    Column("account_id", ID, primary_key=True),
    Column("media_name", String(255), primary_key=True),
    Column("path", String(1024), nullable=False),
    Column("content_type", String(128), nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
)

# -- webhook delivery (migration 0003) ----------------------------------------------------------------

# One row per delivery attempt of an outbox row (what ``GET /v2/webhook_deliveries`` shows).
webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("outbox_id", BigInteger().with_variant(Integer, "sqlite"), nullable=False, index=True),
    Column("account_id", ID, nullable=False),
    Column("attempt", Integer, nullable=False),  # 1-based, over the primary and the failover URL
    Column("url", URL, nullable=False),
    Column("method", String(8), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=False),
    Column("status_code", Integer, nullable=True),  # None: no HTTP response (timeout, refused, ...)
    Column("error", Text, nullable=True),  # None: delivered (2xx)
    Column("response_body", Text, nullable=True),  # the first bytes of the response, for diagnosis
)

# The last sequence number given to an order key (``call:<id>`` or ``conference:<id>``); incremented in
# the transaction that writes the event, so two transactions never hand out the same number.
webhook_sequences = Table(
    "webhook_sequences",
    metadata,
    Column("order_key", String(128), primary_key=True),
    Column("last_sequence", BigInteger, nullable=False),
)

# A node's live calls (migration 0012): ``ended_at``, set once when a call ends, rather than ``state``, which
# most commands change (an update that changes no indexed column stays a HOT update).
Index("ix_calls_live_node", calls.c.node_id, postgresql_where=text("ended_at IS NULL"),
      sqlite_where=text("ended_at IS NULL"))
# A call that has not ended, as the queries for live calls say it: ``ended_at IS NULL`` lets that index serve
# them; the state says the same (a call's end sets both).
LIVE_CALL = and_(calls.c.ended_at.is_(None), calls.c.state != CallState.ENDED.value)

# Listing an account's deliveries, newest first.
Index("ix_outbox_account_id", outbox.c.account_id, outbox.c.id)

# -- SIP trunks and phone numbers (migration 0008) -----------------------------------------------------

# A trunk's password is kept as given: a digest answer needs it (the realm that would let us keep only a
# hash is the provider's, told in its challenge). The API never shows it.
trunks = Table(
    "trunks",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("host", String(255), nullable=False),
    Column("port", Integer, nullable=False),
    Column("transport", String(8), nullable=False),
    Column("username", String(255), nullable=True),
    Column("password", String(255), nullable=True),
    Column("register", Boolean, nullable=False),
    Column("register_expires", Integer, nullable=False),
    Column("inbound_networks", JSON, nullable=False),
    Column("allowed_from", JSON, nullable=False),
    Column("caller_id_header", String(8), nullable=False),
    Column("number_format", String(8), nullable=False),
    Column("tech_prefix", String(16), nullable=False),
    Column("codecs", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("srtp", String(8), nullable=False, server_default="off"),  # migration 0010
    UniqueConstraint("account_id", "name", name="uq_trunks_account_name"),
)

phone_numbers = Table(
    "phone_numbers",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, nullable=False, index=True),
    Column("phone_number", String(16), nullable=False, unique=True),
    Column("trunk_id", ID, nullable=True),
    Column("connection_id", ID, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("tags", JSON, nullable=False),
)

# -- stored files (migration 0011) ------------------------------------------------------------------------

# Recordings and uploaded media, kept in the database every node shares (``store/blobs.py``): a file is a
# header row and its content in chunks of at most ``blobs.CHUNK_BYTES``. A header with ``complete`` false is
# a file still being written (or left half-written by a node that died: swept after an hour).
blobs = Table(
    "blobs",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("size_bytes", BigInteger, nullable=False),
    Column("chunks", Integer, nullable=False),
    Column("complete", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
)

blob_chunks = Table(
    "blob_chunks",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
)
