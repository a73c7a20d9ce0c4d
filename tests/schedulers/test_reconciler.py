"""The reconciler's lease: one per deployment, on SQLite and PostgreSQL alike."""
from __future__ import annotations

from datetime import timedelta

from soca_api.extensions import db
from soca_api.models import SchedulerLease, utcnow
from soca_api.schedulers.reconciler import Reconciler, snapshot_is_current


def test_one_reconciler_holds_the_lease_a_standby_takes_over(app):
    with app.app_context():
        db.session.execute(db.delete(SchedulerLease))
        db.session.commit()
        first = Reconciler(app, interval=1, lease_seconds=5, grace_seconds=1)
        second = Reconciler(app, interval=1, lease_seconds=5, grace_seconds=1)
        assert first.acquire_lease() is True
        assert second.acquire_lease() is False
        assert first.acquire_lease() is True  # renewal
        # The holder dies without releasing: once the lease expires the standby takes it.
        lease = db.session.get(SchedulerLease, app.config["SOCA_SCHEDULER"])
        lease.expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
        assert second.acquire_lease() is True
        assert first.acquire_lease() is False
        second.release_lease()
        assert first.acquire_lease() is True
        first.release_lease()


def test_rows_are_trusted_only_while_a_reconciler_refreshes_them(app):
    with app.app_context():
        db.session.execute(db.delete(SchedulerLease))
        db.session.add(SchedulerLease(name="pbs", holder="h", expires_at=utcnow(),
                                      refreshed_at=utcnow() - timedelta(minutes=5)))
        db.session.commit()
        assert snapshot_is_current("pbs", 1.0) is False
        from soca_api.schedulers import reconciler

        reconciler._fresh_cache.clear()
        db.session.get(SchedulerLease, "pbs").refreshed_at = utcnow()
        db.session.commit()
        assert snapshot_is_current("pbs", 1.0) is True
        db.session.execute(db.delete(SchedulerLease))
        db.session.commit()
        reconciler._fresh_cache.clear()
