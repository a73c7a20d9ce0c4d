"""auth failures shared by every worker; credentials epoch of users

Revision ID: 0006
Revises: 0002
Create Date: 2026-12-02 00:30:00

`auth_failures` counts failed authentications per client address and per (address,
user) pair when no Redis is configured, so every gunicorn worker (and every API
instance on the same database) sees the same counts. `users.credentials_epoch` is bumped
whenever a key of the user is revoked or the user is deleted: a worker's short cache of
verified keys checks it in the one query it makes per call.
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('auth_failures',
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('window_start', sa.Float(), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('subject')
    )
    with op.batch_alter_table('auth_failures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_failures_window_start'), ['window_start'], unique=False)

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credentials_epoch', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('credentials_epoch')

    with op.batch_alter_table('auth_failures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_failures_window_start'))

    op.drop_table('auth_failures')
