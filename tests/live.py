"""Starting the real service under gunicorn for tests (with its runner, as `make run` does)."""
from __future__ import annotations

import datetime
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import PROJECT_DIR, make_data_dir, service_env

FLASK = [sys.executable, "-m", "flask", "--app", "wsgi"]
GUNICORN = os.path.join(os.path.dirname(sys.executable), "gunicorn")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def flask_cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(FLASK + list(args), cwd=PROJECT_DIR, env=env, input=stdin, check=True,
                          capture_output=True, text=True, timeout=120)
    return done.stdout


def start_gunicorn(env: dict[str, str], base: str, verify: str | bool = True) -> subprocess.Popen:
    """gunicorn with gunicorn.conf.py, ready once /api/health answers 200 (runner beating)."""
    log = open(os.path.join(env["SOCA_DATA_DIR"], "gunicorn.log"), "ab")  # noqa: SIM115 - lives with the server
    server = subprocess.Popen([GUNICORN, "-c", "gunicorn.conf.py", "wsgi:app"], cwd=PROJECT_DIR, env=env,
                              stdout=log, stderr=log)
    log.close()
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if requests.get(f"{base}/api/health", verify=verify, timeout=2).status_code == 200:
                return server
        except requests.RequestException:
            pass
        if server.poll() is not None:
            break
        time.sleep(0.1)
    server.terminate()
    with open(os.path.join(env["SOCA_DATA_DIR"], "gunicorn.log")) as handle:
        pytest.fail("gunicorn did not become healthy: " + handle.read()[-2000:])


def prepared_service(**settings: str) -> tuple[dict[str, str], str]:
    """A fresh data folder and migrated SQLite database for a live gunicorn, no access log
    unless asked: (env, base URL)."""
    data_dir = make_data_dir()
    port = free_port()
    env = service_env(data_dir, f"sqlite:///{data_dir}/soca.db", SOCA_PORT=str(port),
                      **{"SOCA_ACCESS_LOG": "", **settings})
    flask_cli(env, "db", "upgrade")
    return env, f"http://127.0.0.1:{port}"


def create_user(env: dict[str, str], name: str) -> str:
    """`flask user create`; returns the new user's API key."""
    return flask_cli(env, "user", "create", name).strip().splitlines()[-1]


def kill_service(server: subprocess.Popen) -> None:
    """kill -9 of gunicorn's master and every child (workers and runner) at once."""
    children = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True,
                              timeout=10).stdout.split()
    for pid in [server.pid, *map(int, children)]:
        os.kill(pid, signal.SIGKILL)
    server.wait(timeout=10)


def self_signed_pair(folder: str) -> tuple[str, str]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    with open(cert_path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return cert_path, key_path
