"""The study database: participants, responses (one per participant and trial), study metadata,
admin sign-in attempts.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "study_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "participants",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("joined_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_participants_slot", "participants", ["slot"])
    op.create_table(
        "responses",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("participant", sa.String(64), sa.ForeignKey("participants.id"), nullable=False),
        sa.Column("trial_id", sa.String(32), nullable=False),
        sa.Column("trial_number", sa.Integer(), nullable=False),
        sa.Column("trial_kind", sa.String(16), nullable=False),
        sa.Column("video", sa.Text(), nullable=False),
        sa.Column("slot_mapping", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("shown_at", sa.DateTime(), nullable=True),
        sa.Column("submitted_at", sa.DateTime(), nullable=False),
        sa.Column("stored_at", sa.DateTime(), nullable=False),
        sa.Column("plays", sa.Integer(), nullable=False),
        sa.Column("replays", sa.Integer(), nullable=False),
        sa.Column("viewport", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(512), nullable=True),
        sa.Column("device", sa.String(32), nullable=True),
        sa.Column("app_commit", sa.String(64), nullable=True),
        sa.UniqueConstraint("participant", "trial_id", name="uq_responses_participant_trial"),
    )
    op.create_index("ix_responses_video", "responses", ["video"])
    op.create_table(
        "admin_attempts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("client_key", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_admin_attempts_client_at", "admin_attempts", ["client_key", "at"])


def downgrade() -> None:
    op.drop_table("admin_attempts")
    op.drop_index("ix_responses_video", "responses")
    op.drop_table("responses")
    op.drop_index("ix_participants_slot", "participants")
    op.drop_table("participants")
    op.drop_table("study_meta")
