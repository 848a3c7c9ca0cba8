"""Experiments, traces, spans, trace tags and trace metadata.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


# BIGINT on PostgreSQL; SQLite needs exactly INTEGER for the key to be the rowid.
SURROGATE_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _key_value_table(name: str) -> None:
    op.create_table(
        name,
        sa.Column("trace_pk", SURROGATE_KEY, nullable=False),
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("value", sa.String(500), nullable=False),
        sa.ForeignKeyConstraint(
            ["trace_pk"],
            ["traces.trace_pk"],
            name=f"fk_{name}_trace_pk_traces",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trace_pk", "key", name=f"pk_{name}"),
    )
    op.create_index(f"ix_{name}_key_value_trace_pk", name, ["key", "value", "trace_pk"])


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("experiment_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("experiment_id", name="pk_experiments"),
        sa.UniqueConstraint("name", name="uq_experiments_name"),
    )
    op.create_table(
        "traces",
        sa.Column("trace_pk", SURROGATE_KEY, autoincrement=True, nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("start_time_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_time_ms", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("span_count", sa.Integer(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("total_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Double(), nullable=True),
        sa.Column("request_preview", sa.Text(), nullable=True),
        sa.Column("response_preview", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.experiment_id"],
            name="fk_traces_experiment_id_experiments",
        ),
        sa.PrimaryKeyConstraint("trace_pk", name="pk_traces"),
        sa.UniqueConstraint("trace_id", name="uq_traces_trace_id"),
    )
    op.create_index(
        "ix_traces_experiment_id_start_time_ms_trace_id",
        "traces",
        ["experiment_id", "start_time_ms", "trace_id"],
    )
    op.create_index(
        "ix_traces_experiment_id_duration_ms_trace_id",
        "traces",
        ["experiment_id", "duration_ms", "trace_id"],
    )
    op.create_index(
        "ix_traces_experiment_id_status_start_time_ms_trace_id",
        "traces",
        ["experiment_id", "status", "start_time_ms", "trace_id"],
    )
    op.create_index("ix_traces_start_time_ms_trace_id", "traces", ["start_time_ms", "trace_id"])
    op.create_table(
        "spans",
        sa.Column("trace_pk", SURROGATE_KEY, nullable=False),
        sa.Column("span_id", sa.String(16), nullable=False),
        sa.Column("parent_span_id", sa.String(16), nullable=True),
        sa.Column("span_type", sa.String(32), nullable=False),
        sa.Column("start_time_ns", sa.BigInteger(), nullable=False),
        sa.Column("end_time_ns", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("output_tokens", sa.BigInteger(), nullable=True),
        sa.Column("total_tokens", sa.BigInteger(), nullable=True),
        sa.Column("cost_usd", sa.Double(), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("provider", sa.Text(), nullable=True),
        sa.Column("status_message", sa.Text(), nullable=False),
        sa.Column("trace_request_preview", sa.Text(), nullable=True),
        sa.Column("trace_response_preview", sa.Text(), nullable=True),
        sa.Column("attributes", sa.Text(), nullable=False),
        sa.Column("events", sa.Text(), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=True),
        sa.Column("outputs", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["trace_pk"],
            ["traces.trace_pk"],
            name="fk_spans_trace_pk_traces",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trace_pk", "span_id", name="pk_spans"),
    )
    op.create_index("ix_spans_trace_pk_span_type", "spans", ["trace_pk", "span_type"])
    op.create_index("ix_spans_trace_pk_parent_span_id", "spans", ["trace_pk", "parent_span_id"])
    _key_value_table("trace_tags")
    _key_value_table("trace_metadata")


def downgrade() -> None:
    op.drop_table("trace_metadata")
    op.drop_table("trace_tags")
    op.drop_table("spans")
    op.drop_table("traces")
    op.drop_table("experiments")
