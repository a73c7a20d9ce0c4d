"""dedicated job accounts

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-02 00:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'job_accounts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_name', sa.String(length=32), nullable=False),
        sa.Column('uid', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('uid'),
        sa.UniqueConstraint('user_name'),
    )


def downgrade():
    op.drop_table('job_accounts')
