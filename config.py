"""Every setting of soca-api, read from `SOCA_*` environment variables with safe defaults.

`Config.from_env()` is called by the app factory; tests pass overrides on top of it.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TypedDict

PROJECT_DIR = Path(__file__).resolve().parent
# As root, jobs of users without a POSIX account run as an unprivileged account, which
# must be able to reach its job folder: a project checked out under /root would hide it.
DEFAULT_DATA_DIR = Path("/var/lib/soca-api") if os.geteuid() == 0 else PROJECT_DIR / "data"


def _env(name: str, default: str) -> str:
    return os.environ.get(f"SOCA_{name}", default)


def _env_int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def _env_float(name: str, default: float) -> float:
    return float(_env(name, str(default)))


def _env_bool(name: str, default: bool) -> bool:
    return _env(name, "1" if default else "0").strip().lower() in ("1", "true", "yes", "on")


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = _env(name, default).strip().lower()
    if value not in allowed:
        raise ValueError(f"SOCA_{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def login_defs_uid_min(path: str = "/etc/login.defs") -> int:
    """UID_MIN of /etc/login.defs: the first uid of an ordinary (non-system) account."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "UID_MIN" and fields[1].isdigit():
                    return int(fields[1])
    except OSError:
        pass
    return 1000


def uid_range(text: str) -> tuple[int, int]:
    """"START-END" (inclusive) -> (START, END); never uid 0, never past 2**31 - 1."""
    try:
        start, end = (int(part) for part in text.split("-", 1))
    except ValueError:
        raise ValueError(f"SOCA_JOB_UID_RANGE must look like 1900000000-1900999999, not {text!r}") from None
    if not 0 < start <= end < 2**31:
        raise ValueError(f"SOCA_JOB_UID_RANGE {text!r} must be an ascending range of uids above 0")
    return start, end


def load_secret_key(data_dir: Path) -> str:
    """SOCA_SECRET_KEY, or a random one kept in the data folder (mode 0600).

    The secret keys the API-key digests and encrypts the keys the page shows again, so it
    must never live in the database: a copy of the database alone authenticates nobody.
    """
    from_env = os.environ.get("SOCA_SECRET_KEY")
    if from_env:
        return from_env
    path = data_dir / "secret_key"
    if not data_dir.exists():
        data_dir.mkdir(parents=True)
        data_dir.chmod(0o711)  # traversable to reach job folders, not listable
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def normalise_database_url(url: str) -> str:
    """Plain postgresql:// URLs use the driver the project depends on (psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


# gunicorn threads per worker (README, "Serving settings": chosen by measurement).
DEFAULT_THREADS = 8


class ServerSettings(TypedDict):
    host: str
    port: int
    tls_cert: str
    tls_key: str
    workers: int
    threads: int
    worker_class: str
    worker_timeout: int
    keepalive: int
    access_log: str
    start_runner: bool
    hsts_seconds: int


def server_settings() -> ServerSettings:
    """What gunicorn.conf.py serves with: address, HTTPS pair, workers (no side effects)."""
    return {
        "host": _env("HOST", "127.0.0.1"),
        "port": _env_int("PORT", 8080),
        "tls_cert": _env("TLS_CERT", ""),
        "tls_key": _env("TLS_KEY", ""),
        "workers": _env_int("WORKERS", 2),
        "threads": _env_int("THREADS", DEFAULT_THREADS),
        "worker_class": _env("WORKER_CLASS", "gthread"),
        "worker_timeout": _env_int("WORKER_TIMEOUT", 60),
        "keepalive": _env_int("KEEPALIVE", 5),
        "access_log": _env("ACCESS_LOG", "-"),
        # The local runner, or the PBS/Slurm reconciler (`flask scheduler run`).
        "start_runner": _env_bool("START_RUNNER", True),
        # Strict-Transport-Security max-age on every answer served over HTTPS (0: none).
        "hsts_seconds": _env_int("HSTS_SECONDS", 365 * 24 * 3600),
    }


def engine_options(database_url: str) -> dict[str, object]:
    """A pooled connection for each of a worker's threads (SOCA_THREADS). SQLAlchemy's
    default pool keeps 5: every thread past them opened and closed a connection per query
    (for SQLite, with its pragmas), 1-2% of a worker's time under a GET storm."""
    if database_url.startswith("sqlite") and (":memory:" in database_url or database_url.rstrip("/") == "sqlite:"):
        return {}  # one shared in-memory database: Flask-SQLAlchemy's static pool
    return {"pool_size": _env_int("THREADS", DEFAULT_THREADS)}


def from_env() -> dict[str, object]:
    """The Flask config mapping built from the environment."""
    data_dir = Path(_env("DATA_DIR", str(DEFAULT_DATA_DIR))).resolve()
    database_url = normalise_database_url(_env("DATABASE_URL", f"sqlite:///{data_dir / 'soca.db'}"))
    redis_url = _env("REDIS_URL", "")
    return {
        "SOCA_DATA_DIR": str(data_dir),
        "SECRET_KEY": load_secret_key(data_dir),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_TRACK_MODIFICATIONS": False,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(database_url),
        # Largest accepted request; the script limit below is checked after decoding.
        "MAX_CONTENT_LENGTH": _env_int("MAX_REQUEST_BYTES", 4 * 1024 * 1024),
        "SOCA_MAX_SCRIPT_BYTES": _env_int("MAX_SCRIPT_BYTES", 1024 * 1024),
        "SOCA_REDIS_URL": redis_url,
        # Failed authentications are counted in Redis when set, else in the database:
        # never per process, so the limit holds whatever the number of workers.
        "SOCA_AUTH_FAILURE_LIMIT": _env("AUTH_FAILURE_LIMIT", "10 per minute"),
        # Seconds a worker trusts a key it verified (0: never); revocation still acts at once.
        "SOCA_AUTH_CACHE_SECONDS": _env_float("AUTH_CACHE_SECONDS", 5.0),
        "SOCA_LOGIN_LIMIT": _env("LOGIN_LIMIT", "10 per minute"),
        "SOCA_SCHEDULER": _env("SCHEDULER", "local"),
        "SOCA_SCHEDULER_TIMEOUT": _env_float("SCHEDULER_TIMEOUT", 10.0),
        # PBS / Slurm: one snapshot of all jobs per this many seconds (the reconciler's
        # pass; a worker's own fallback snapshot when no reconciler runs).
        "SOCA_SCHEDULER_CACHE_SECONDS": _env_float("SCHEDULER_CACHE_SECONDS", 2.0),
        # How long a reconciler's lease lasts unrenewed before a standby takes over.
        "SOCA_RECONCILER_LEASE_SECONDS": _env_float("RECONCILER_LEASE_SECONDS", 15.0),
        "SOCA_PBS_BIN": _env("PBS_BIN", ""),
        "SOCA_PBS_DIALECT": _env("PBS_DIALECT", "auto"),
        "SOCA_PBS_MANAGE_QUEUES": _env_bool("PBS_MANAGE_QUEUES", False),
        "SOCA_SLURM_BIN": _env("SLURM_BIN", ""),
        "SOCA_SLURM_INSTANCE_TYPE": _env("SLURM_INSTANCE_TYPE", "constraint"),
        "SOCA_JOB_HISTORY_SECONDS": _env_int("JOB_HISTORY_SECONDS", 300),
        # Local scheduler: cpus it may hand out (default: this host's), and its poll period.
        "SOCA_LOCAL_CPUS": _env_int("LOCAL_CPUS", os.cpu_count() or 1),
        "SOCA_LOCAL_POLL_SECONDS": _env_float("LOCAL_POLL_SECONDS", 0.05),
        # Seconds between SIGTERM and SIGKILL when a job is deleted or over its walltime.
        "SOCA_LOCAL_KILL_DELAY": _env_float("LOCAL_KILL_DELAY", 5.0),
        # Who a job runs as (soca_api.schedulers.job_accounts): a POSIX account is used only from
        # this uid up and never when listed as denied; API users without one get a
        # dedicated uid from the range (root service) or are refused.
        "SOCA_MIN_JOB_UID": _env_int("MIN_JOB_UID", login_defs_uid_min()),
        "SOCA_DENIED_JOB_USERS": [n.strip() for n in _env("DENIED_JOB_USERS", "").split(",") if n.strip()],
        "SOCA_UNMAPPED_JOB_USERS": _choice("UNMAPPED_JOB_USERS", "dedicated", ("dedicated", "refuse")),
        "SOCA_JOB_UID_RANGE": uid_range(_env("JOB_UID_RANGE", "1900000000-1900999999")),
        # A service that is not root runs each local job in a bubblewrap sandbox; "off" is
        # for a single-user host only (every job then sees what the service sees).
        "SOCA_LOCAL_SANDBOX": _choice("LOCAL_SANDBOX", "on", ("on", "off")),
        "SOCA_DEFAULT_QUEUES": [q for q in _env("DEFAULT_QUEUES", "normal,high").split(",") if q],
        # Web sign-in: a session ends after this long; a form's CSRF token lives as long
        # as the session (Flask-WTF's default one hour would expire long-open forms).
        "SOCA_WEB_SESSION_SECONDS": _env_int("WEB_SESSION_SECONDS", 12 * 3600),
        "WTF_CSRF_TIME_LIMIT": None,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": bool(server_settings()["tls_cert"]) or _env_bool("SECURE_COOKIES", False),
        "SOCA_HSTS_SECONDS": server_settings()["hsts_seconds"],
    }
