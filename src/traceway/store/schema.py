"""The tables, as SQLAlchemy Core objects shared by the write and read paths.

The migrations in ``migrations/versions`` create exactly these; a test checks the
two agree.  Times are integers (span times in ns, trace times in ms since the
epoch); JSON values are stored as text so both dialects treat them alike.

Traces have a surrogate key, ``trace_pk``, handed out in arrival order; spans,
tags and metadata hang off it rather than off the random 32-hex ``trace_id``.
New rows then land at the end of those indexes instead of all over them: on
SQLite that cuts the pages one ingest transaction dirties (and writes to the WAL)
by about three quarters, and it keeps PostgreSQL's B-trees just as compact.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "experiments",
    "gateway_keys",
    "metadata",
    "spans",
    "trace_metadata",
    "trace_tags",
    "traces",
    "virtual_keys",
]

#: Longest tag/metadata key and value kept; longer ones are cut on write.  Values
#: are indexed, and PostgreSQL refuses B-tree entries over ~2,700 bytes.
MAX_KEY_CHARS = 250
MAX_VALUE_CHARS = 500
MAX_EXPERIMENT_NAME_CHARS = 256
MAX_KEY_NAME_CHARS = 256
MAX_SLUG_CHARS = 100
MAX_PROVIDER_CHARS = 64

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

experiments = Table(
    "experiments",
    metadata,
    Column("experiment_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(MAX_EXPERIMENT_NAME_CHARS), nullable=False, unique=True),
    Column("created_at_ms", BigInteger, nullable=False),
)

#: BIGINT on PostgreSQL; SQLite needs exactly INTEGER for the key to be the rowid.
SurrogateKey = BigInteger().with_variant(Integer(), "sqlite")

traces = Table(
    "traces",
    metadata,
    Column("trace_pk", SurrogateKey, primary_key=True, autoincrement=True),
    Column("trace_id", String(32), nullable=False),
    Column(
        "experiment_id",
        Integer,
        ForeignKey("experiments.experiment_id"),
        nullable=False,
    ),
    Column("name", Text, nullable=False),
    Column("start_time_ms", BigInteger, nullable=False),
    Column("end_time_ms", BigInteger, nullable=False),
    Column("duration_ms", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("span_count", Integer, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("total_tokens", BigInteger, nullable=False),
    Column("cost_usd", Double),
    Column("request_preview", Text),
    Column("response_preview", Text),
    UniqueConstraint("trace_id"),
    # Keyset pages of one experiment, newest first: the list view.
    Index(None, "experiment_id", "start_time_ms", "trace_id"),
    Index(None, "experiment_id", "duration_ms", "trace_id"),
    # trace_id too, so a status filter also pages in keyset order off this index.
    Index(None, "experiment_id", "status", "start_time_ms", "trace_id"),
    # Searches across every experiment.
    Index(None, "start_time_ms", "trace_id"),
)

# Small columns first: SQLite reads a row's columns in order, so filters and
# aggregates over these never touch the overflow pages of large inputs/outputs.
spans = Table(
    "spans",
    metadata,
    Column(
        "trace_pk",
        SurrogateKey,
        ForeignKey("traces.trace_pk", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("span_id", String(16), primary_key=True),
    Column("parent_span_id", String(16)),
    Column("span_type", String(32), nullable=False),
    Column("start_time_ns", BigInteger, nullable=False),
    Column("end_time_ns", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("input_tokens", BigInteger),
    Column("output_tokens", BigInteger),
    Column("total_tokens", BigInteger),
    Column("cost_usd", Double),
    Column("name", Text, nullable=False),
    Column("model", Text),
    Column("provider", Text),
    Column("status_message", Text, nullable=False),
    # Previews this span sets on its trace explicitly; they beat derived ones.
    Column("trace_request_preview", Text),
    Column("trace_response_preview", Text),
    Column("attributes", Text, nullable=False),
    Column("events", Text, nullable=False),
    Column("inputs", Text),
    Column("outputs", Text),
    # The span_type / span.name filters probe a trace's spans without reading rows.
    Index(None, "trace_pk", "span_type"),
    # Usage is counted once per call: a span's children are probed by parent id.
    Index(None, "trace_pk", "parent_span_id"),
)


def _key_value_table(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column(
            "trace_pk",
            SurrogateKey,
            ForeignKey("traces.trace_pk", ondelete="CASCADE"),
            primary_key=True,
        ),
        Column("key", String(MAX_KEY_CHARS), primary_key=True),
        Column("value", String(MAX_VALUE_CHARS), nullable=False),
        Index(None, "key", "value", "trace_pk"),
    )


trace_tags = _key_value_table("trace_tags")
trace_metadata = _key_value_table("trace_metadata")

# Gateway API keys: only the SHA-256 of a key is kept (the key itself is shown
# once, when it is created).  Revoked keys stay, so listings show their history.
gateway_keys = Table(
    "gateway_keys",
    metadata,
    Column("key_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(MAX_KEY_NAME_CHARS), nullable=False),
    # The request path finds a key by its hash alone.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    # JSON lists of allowed model / config names; NULL allows every one.
    Column("models", Text),
    Column("configs", Text),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("last_used_at_ms", BigInteger),
    Column("revoked_at_ms", BigInteger),
)

# Provider credentials named by a slug.  The API key is AES-GCM ciphertext under
# a key derived from TRACEWAY_SECRET_KEY; the plaintext never reaches the database.
virtual_keys = Table(
    "virtual_keys",
    metadata,
    Column("slug", String(MAX_SLUG_CHARS), primary_key=True),
    Column("name", String(MAX_KEY_NAME_CHARS), nullable=False),
    Column("provider", String(MAX_PROVIDER_CHARS), nullable=False),
    Column("custom_host", Text),
    Column("options", Text),  # JSON object of provider settings (scalars)
    Column("api_key_ciphertext", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)
