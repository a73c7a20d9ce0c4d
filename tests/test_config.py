"""Every SOCA_* variable that config.py reads is documented in the README's configuration table."""
from __future__ import annotations

import re

from tests.conftest import PROJECT_DIR


def _read_by_config() -> set[str]:
    source = (PROJECT_DIR / "config.py").read_text()
    names = {f"SOCA_{name}" for name in re.findall(r'_env(?:_int|_float|_bool)?\("([A-Z0-9_]+)"', source)}
    names |= set(re.findall(r'environ\.get\("(SOCA_[A-Z0-9_]+)"', source))
    return names


def _documented() -> set[str]:
    names = set()
    for line in (PROJECT_DIR / "README.md").read_text().splitlines():
        if line.startswith("| `SOCA_"):
            names |= set(re.findall(r"`(SOCA_[A-Z0-9_]+)`", line.split("|")[1]))
    return names


def test_readme_table_covers_every_setting_of_config_py():
    read = _read_by_config()
    assert {"SOCA_WORKER_CLASS", "SOCA_ACCESS_LOG", "SOCA_AUTH_CACHE_SECONDS"} <= read  # the scan works
    missing = sorted(read - _documented())
    assert missing == [], f"in config.py but not in the README table: {missing}"


def test_a_pooled_connection_per_worker_thread(monkeypatch):
    import config

    monkeypatch.setenv("SOCA_THREADS", "24")
    assert config.engine_options("sqlite:////var/lib/soca/soca.db") == {"pool_size": 24}
    assert config.engine_options("postgresql+psycopg2://soca@db/soca") == {"pool_size": 24}
    assert config.engine_options("sqlite:///:memory:") == {}  # Flask-SQLAlchemy's static pool
    assert config.engine_options("sqlite://") == {}


def test_the_app_pools_as_configured(app):
    from soca_api.extensions import db

    with app.app_context():
        assert db.engine.pool.size() == app.config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_size"]
