"""The replicated venue: 3 NATS servers and 3 OpenBell nodes on 127.0.0.1.

A node process (``python -m openbell.node.cluster node ...``) boots as a hot standby
(``openbell.node.replica``), competes for the lease (``openbell.node.lease``), and when it wins:
catches up to the end of the stream, appends an epoch record naming the last seq it applied
(fenced: if another writer got in first it catches up again), and only then serves clients
with the usual sequencer on the NATS journal. It stops (exit 3) when it loses the lease, when
an append is fenced, or when the venue is halted by a checkpoint mismatch; its supervisor
(``Cluster``) starts it again as a standby.

``ClusterClient`` is how a client (gateway, tests, benchmarks) talks to the cluster: it finds
the leader by itself (only the leader serves) and retries an unanswered command on the new
leader with the same request id, so a failover costs a delay, never a lost or doubled command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import hashlib
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from openbell.core.commands import Command
from openbell.core.engine import Engine, EngineConfig
from openbell.core.events import Event
from openbell.journal.errors import FencedError
from openbell.journal.nats import DEFAULT_STREAM, NatsJournal
from openbell.node.client import NodeClient, NodeError
from openbell.node.datadir import DataDir
from openbell.node.dr import DR_DOMAIN, PRIMARY_DOMAIN, create_mirror, promote
from openbell.node.lease import DEFAULT_TTL_S, Lease, LeaseKeeper
from openbell.node.natsd import (
    NatsCluster,
    NatsClusterSpec,
    make_spec,
    pid_alive,
    stop_processes,
)
from openbell.node.protocol import Response
from openbell.node.prune import StreamPruner
from openbell.node.recovery import RecoveryReport, ResultCallback
from openbell.node.replica import Checkpointer, Replica, boot_engine
from openbell.node.sequencer import DurableCallback, Sequencer, reply_each
from openbell.node.service import Node, NodeConfig

log = logging.getLogger("openbell.node")

EXIT_STEPPED_DOWN = 3
DEFAULT_CHECKPOINT_EVERY = 100_000  # a state hash pauses the sequencer: not too often
DEFAULT_SNAPSHOT_EVERY = 1_000_000


class NodeSpec(msgspec.Struct, frozen=True):
    name: str
    data_dir: str
    http_port: int = 0  # its gateway's public port (``openbell.gateway.cluster``); 0: none


class ClusterSpec(msgspec.Struct, frozen=True):
    root: str
    nats: NatsClusterSpec
    nodes: list[NodeSpec]
    stream: str = DEFAULT_STREAM
    ttl_s: float = DEFAULT_TTL_S
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    dr: NatsClusterSpec | None = None  # the second site's NATS cluster (a mirror), if any
    demo_seed: int | None = None  # the leader builds the demo venue and runs its order flow
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY  # commands between object-store snapshots
    prune: bool = True  # purge the stream up to what every node and the mirror still need

    @property
    def gateways(self) -> bool:
        return any(node.http_port for node in self.nodes)

    @property
    def keys_dir(self) -> str:
        """The gateways' API keys (``ROOT/gateway/keys.json``): one set for every node."""
        return self.root

    @property
    def spec_path(self) -> Path:
        return Path(self.root) / "cluster.json"


# -- one node ---------------------------------------------------------------------------------


class _Snapshots:
    """Leader snapshots to the object store, off the sequencer thread, once durable."""

    def __init__(
        self, journal: NatsJournal, sequencer: Sequencer, pruner: StreamPruner | None = None
    ) -> None:
        self._journal = journal
        self._sequencer = sequencer
        self._pruner = pruner
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, seq: int, state: bytes) -> None:
        self._queue.put((seq, state))

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            seq, state = item
            if not self._sequencer.wait_durable(seq, None) or self._sequencer.failure:
                continue
            try:
                self._journal.put_snapshot(seq, hashlib.sha256(state).hexdigest(), state)
            except Exception as error:  # the stream still holds everything
                log.error("snapshot %d not stored: %s", seq, error)
                continue
            if self._pruner is not None:
                try:
                    self._pruner.prune()
                except Exception as error:  # the next snapshot tries again
                    log.error("stream not pruned after snapshot %d: %s", seq, error)


class ClusterNode(Node):
    """A leader's node: the engine the standby kept hot, the sequencer on the NATS journal."""

    serve_status_when_halted = False  # a fenced or failed leader exits: a standby takes over

    def __init__(
        self,
        config: NodeConfig,
        journal: NatsJournal,
        replica: Replica,
        checkpointer: Checkpointer,
        pruner: StreamPruner | None = None,
    ) -> None:
        super().__init__(config)
        self.nats_journal = journal
        self.replica = replica
        self.checkpointer = checkpointer
        self.pruner = pruner
        self._snapshots: _Snapshots | None = None

    def open(
        self, on_durable: DurableCallback = reply_each, on_replayed: ResultCallback | None = None
    ) -> RecoveryReport:
        engine = self.replica.engine
        if on_replayed is not None:  # answers for retried request ids, as after a recovery
            for seq, events in self.replica.recent:
                on_replayed(seq, events)
        self.recovery = RecoveryReport(0, 0, engine.seq, engine.state_hash())
        self.sequencer = self.new_sequencer(engine, self.nats_journal, on_durable)
        self._snapshots = _Snapshots(self.nats_journal, self.sequencer, self.pruner)
        self.sequencer.snapshot_sink = self._snapshots.submit
        self.sequencer.after_batch = self.checkpointer.observe
        sequencer = self.sequencer
        self.checkpointer.lead(
            lambda seq: sequencer.wait_durable(seq, 30) and not sequencer.failure
        )
        return self.recovery

    def start(self) -> None:
        assert self._snapshots is not None
        self._snapshots.start()
        self.sequencer.start()

    def stop(self, snapshot: bool = False) -> None:
        self.sequencer.stop()
        if self._snapshots is not None:
            self._snapshots.stop()


class StreamStorage(msgspec.Struct, frozen=True):
    """Snapshots every ``snapshot_every`` commands (and every 300 s) to the object store, then
    (``prune``) the stream purged of what no node and no mirror needs (``openbell.node.prune``);
    ``dr_servers``: the second site whose mirror must have copied a message first."""

    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY
    prune: bool = True
    dr_servers: list[str] = msgspec.field(default_factory=list)


class LeaderGateway(msgspec.Struct, frozen=True):
    """How a leader serves: its node's local API only, or also the HTTP gateway (on
    127.0.0.1, a free port, written to the node's status as ``http_port``) with the keys of
    ``keys_dir``; ``demo_seed``: it also builds the demo venue (once) and runs its flow."""

    http: bool = False
    keys_dir: str = ""
    demo_seed: int | None = None


def serve_gateway(
    node: ClusterNode,
    data_dir: Path,
    options: LeaderGateway,
    stop: threading.Event,
    on_port: Any,
) -> int:
    """The leader's HTTP gateway on ``node`` until ``stop`` (or a sequencer failure): 0, or 1
    when the sequencer failed (fenced), 2 when it could not start."""
    from openbell.gateway.app import Gateway, GatewayConfig, GatewayServer

    config = GatewayConfig(data_dir=str(data_dir), port=0, keys_dir=options.keys_dir)
    gateway = Gateway(config, node=node)
    try:
        gateway.open_node()
    except Exception as error:
        log.error("gateway could not open the node: %s", error)
        return 2
    server = GatewayServer(gateway, log_level="warning")
    try:
        port = server.start()
    except RuntimeError as error:
        log.error("%s", error)
        server.stop()
        return 2
    on_port(port)
    print(f"openbell cluster node: gateway http://127.0.0.1:{port}", flush=True)
    flow = None
    try:
        if options.demo_seed is not None:
            from openbell.gateway.demo import FlowThread, setup_demo

            setup_demo(gateway)
            flow = FlowThread(gateway, options.demo_seed)
            flow.start()
        while not stop.wait(0.25):
            if node.sequencer.failure is not None:
                break
    finally:
        if flow is not None:
            flow.stop()
        server.stop()
    return 1 if node.sequencer.failure is not None else 0


def run_node(
    name: str,
    data_dir: Path,
    servers: list[str],
    peers: list[str],
    stream: str = DEFAULT_STREAM,
    ttl_s: float = DEFAULT_TTL_S,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    gateway: LeaderGateway | None = None,
    storage: StreamStorage | None = None,
) -> int:
    """Standby, then (on winning the lease) leader until stepping down. Exit code 3 when it
    stepped down, was fenced or halted; 0 on SIGTERM. ``gateway``: how the leader serves
    (by default its node's local API only)."""
    from openbell.node.server import serve

    options = gateway or LeaderGateway()
    dirs = DataDir(data_dir)
    dirs.create(EngineConfig())
    status_path = data_dir / "cluster-node.json"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    journal = NatsJournal(servers, stream, node=name)
    engine, start = boot_engine(journal, dirs.load_config())

    halted: list[str] = []

    def halt(reason: str) -> None:
        log.critical("node %s halts: %s", name, reason)
        halted.append(reason)
        stop.set()
        os.kill(os.getpid(), signal.SIGTERM)

    checkpointer = Checkpointer(journal, name, peers, checkpoint_every, data_dir, halt)
    checkpointer.start()
    replica = Replica(journal, engine, start, checkpointer)
    lease = Lease(journal, name, ttl_s)
    print(f"openbell cluster node {name}: standby from stream seq {start}", flush=True)

    http_port: list[int] = [0]  # the leader's gateway port, once it listens

    def write_status(role: str) -> None:
        status = {
            "node": name,
            "role": role,
            "pid": os.getpid(),
            "seq": replica.engine.seq,
            "stream_seq": replica.stream_seq,
            "epoch": replica.epoch,
            "http_port": http_port[0] if role == "leader" else 0,
            "time_ns": time.time_ns(),
        }
        with contextlib.suppress(OSError):
            tmp = status_path.with_suffix(".tmp")
            tmp.write_bytes(msgspec.json.encode(status))
            tmp.replace(status_path)

    last_status = 0.0
    while not stop.is_set():
        replica.poll(0.1)
        if time.monotonic() - last_status > 0.5:
            write_status("standby")
            last_status = time.monotonic()
        if lease.try_acquire(os.getpid()):
            break
    if stop.is_set():
        checkpointer.stop()
        journal.close()
        return 0
    keeper = LeaseKeeper(lease, halt)
    keeper.start()
    # Take over: reach the end of the stream, then claim the epoch (fenced); a writer that got
    # in first (a zombie's last batch) means catching up once more.
    for _attempt in range(20):
        replica.catch_up()
        journal.adopt(replica.stream_seq, replica.engine.seq, replica.epoch)
        try:
            epoch = journal.append_epoch()
            break
        except FencedError:
            continue
    else:
        keeper.stop()
        checkpointer.stop()
        journal.close()
        return EXIT_STEPPED_DOWN
    replica.close()
    replica.epoch = epoch
    print(
        f"openbell cluster node {name}: leader in epoch {epoch} from seq {replica.engine.seq}",
        flush=True,
    )
    write_status("leader")
    serving = threading.Event()

    def report_status() -> None:  # the engine's seq, read from this thread, is only a report
        while not serving.wait(0.5):
            write_status("leader")

    reporter = threading.Thread(target=report_status, name="status", daemon=True)
    reporter.start()
    kept = storage or StreamStorage()
    pruner = StreamPruner(journal, checkpointer, kept.dr_servers) if kept.prune else None
    config = NodeConfig(data_dir=str(data_dir), snapshot_every_commands=kept.snapshot_every)
    node = ClusterNode(config, journal, replica, checkpointer, pruner)
    if options.http:

        def on_port(port: int) -> None:
            http_port[0] = port
            write_status("leader")

        code = 0 if stop.is_set() else serve_gateway(node, data_dir, options, stop, on_port)
    else:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # serve() installs its own handler
        code = 0 if stop.is_set() else asyncio.run(serve(node))
    serving.set()
    reporter.join(timeout=5)
    keeper.stop()
    checkpointer.stop()
    stepped_down = code != 0 or bool(halted) or node.sequencer.failure is not None
    if not stepped_down:
        lease.release()
    journal.close()
    with contextlib.suppress(OSError):
        status_path.unlink()
    return EXIT_STEPPED_DOWN if stepped_down else 0


# -- the client side --------------------------------------------------------------------------


class NoLeader(ConnectionError):
    pass


class ClusterClient:
    """Finds the leader among the nodes' data directories and retries across failovers.

    Every command must carry a ``request_id``: a retry of the same command on the new leader is
    then either applied once (the old leader never made it durable) or answered as a
    ``DuplicateRequest`` with the original result.
    """

    def __init__(
        self, data_dirs: list[Path], request_timeout_s: float = 3.0, deadline_s: float = 60.0
    ) -> None:
        self.data_dirs = [Path(d) for d in data_dirs]
        self.request_timeout_s = request_timeout_s
        self.deadline_s = deadline_s
        self._client: NodeClient | None = None
        self._leader: Path | None = None
        self._lock = asyncio.Lock()
        self.failovers = 0
        self.retries = 0

    async def _find_leader(self, deadline: float) -> NodeClient:
        async with self._lock:
            if self._client is not None:
                return self._client
            while time.monotonic() < deadline:
                order = sorted(self.data_dirs, key=lambda d: d != self._leader)
                for directory in order:
                    try:
                        client = await asyncio.wait_for(NodeClient.connect_data_dir(directory), 1)
                    except (OSError, TimeoutError, NodeError, ValueError):
                        continue
                    try:
                        await asyncio.wait_for(client.query("status"), 1.0)
                    except (OSError, TimeoutError, NodeError):
                        await client.close()
                        continue
                    if self._leader is not None and directory != self._leader:
                        self.failovers += 1
                    self._leader = directory
                    self._client = client
                    return client
                await asyncio.sleep(0.05)
            raise NoLeader("no leader answered before the deadline")

    async def _drop(self, client: NodeClient) -> None:
        async with self._lock:
            if self._client is client:
                self._client = None
        with contextlib.suppress(Exception):
            await client.close()

    async def submit(self, command: Command) -> Response:
        """The response of a durable, applied command (or a refusal that is not the cluster's:
        a business reject). Raises NoLeader if no leader answered within the deadline."""
        if not command.request_id:
            raise ValueError("cluster commands need a request_id (retries depend on it)")
        deadline = time.monotonic() + self.deadline_s
        attempt = 0
        while True:
            client = await self._find_leader(deadline)
            try:
                response = await asyncio.wait_for(client.submit(command), self.request_timeout_s)
            except (OSError, TimeoutError, NodeError):
                await self._drop(client)
                attempt += 1
                self.retries += 1
                continue
            if response.error.startswith(("NODE_", "BUSY")):
                if response.error.startswith("NODE_"):
                    await self._drop(client)
                attempt += 1
                self.retries += 1
                await asyncio.sleep(0.05)
                if time.monotonic() > deadline:
                    raise NoLeader(f"last answer {response.error}")
                continue
            return response

    async def query(self, what: str, **args: str | int) -> Any:
        deadline = time.monotonic() + self.deadline_s
        while True:
            client = await self._find_leader(deadline)
            try:
                return await asyncio.wait_for(client.query(what, **args), self.request_timeout_s)
            except (OSError, TimeoutError):
                await self._drop(client)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def original_events(response: Response) -> list[Event]:
    """The command's own events, also when it answered a retry as a duplicate."""
    from openbell.core.events import DuplicateRequest

    events = response.events or []
    if events and type(events[0]) is DuplicateRequest and response.original is not None:
        return response.original
    return events


# -- the whole cluster ------------------------------------------------------------------------


def make_cluster_spec(
    root: Path,
    stream: str = DEFAULT_STREAM,
    ttl_s: float = DEFAULT_TTL_S,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    size: int = 3,
    dr: bool = False,
    gateways: bool = False,
    demo_seed: int | None = None,
) -> ClusterSpec:
    """``dr``: also a second site, a NATS cluster of its own mirroring the stream;
    ``gateways``: an HTTP gateway per node (free ports on 127.0.0.1), served by the leader;
    ``demo_seed``: the demo venue and its order flow on the cluster (implies gateways)."""
    from openbell.testing.servers import free_port

    root = Path(root)
    with_http = gateways or demo_seed is not None
    nodes = [
        NodeSpec(f"ob{i + 1}", str(root / f"ob{i + 1}"), free_port() if with_http else 0)
        for i in range(size)
    ]
    if not dr:
        nats = make_spec("openbell", size)
        return ClusterSpec(
            str(root), nats, nodes, stream, ttl_s, checkpoint_every, demo_seed=demo_seed
        )
    nats = make_spec("openbell", size, domain=PRIMARY_DOMAIN, leaf_listen=True)
    second = make_spec(
        "openbell-dr", size, prefix="d", domain=DR_DOMAIN, leaf_remotes=nats.leaf_urls()
    )
    return ClusterSpec(
        str(root), nats, nodes, stream, ttl_s, checkpoint_every, second, demo_seed=demo_seed
    )


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a cluster member in its own session, its output appended to ``log_path`` (the
    child keeps the file open; ours is closed at once)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            args,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


class Cluster:
    """Starts, kills, restarts and stops the NATS servers and the OpenBell node processes.

    ``supervise=True`` restarts a node process that exited (a stepped-down leader comes back
    as a standby); the chaos tests restart processes themselves.
    """

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.root = Path(spec.root)
        self.nats = NatsCluster(self.root / f"nats-{spec.nats.name}", spec.nats)
        self.dr_nats = (
            None if spec.dr is None else NatsCluster(self.root / f"nats-{spec.dr.name}", spec.dr)
        )
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.gateways: dict[str, subprocess.Popen[bytes]] = {}  # each node's HTTP router
        self.starts: dict[str, int] = {}
        self._supervisor: threading.Thread | None = None
        self._supervising = threading.Event()

    @property
    def data_dirs(self) -> list[Path]:
        return [Path(n.data_dir) for n in self.spec.nodes]

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.spec.spec_path.write_bytes(msgspec.json.format(msgspec.json.encode(self.spec)))

    @classmethod
    def load(cls, root: Path) -> Cluster:
        spec = msgspec.json.decode((Path(root) / "cluster.json").read_bytes(), type=ClusterSpec)
        return cls(spec)

    def start(self, supervise: bool = False) -> None:
        self.save()
        self.nats.start()
        if self.dr_nats is not None:
            self.dr_nats.start()
        for node in self.spec.nodes:
            self.start_node(node.name)
            if node.http_port:
                self.start_gateway(node.name)
        if self.dr_nats is not None:
            with NatsJournal(self.nats.urls, self.spec.stream, node="setup", connect_deadline_s=60):
                pass  # the stream exists before its mirror is made
            create_mirror(self.dr_nats.urls, self.spec.stream)
        if supervise:
            self._supervising.set()
            self._supervisor = threading.Thread(target=self._supervise, daemon=True)
            self._supervisor.start()

    @property
    def gateway_urls(self) -> list[str]:
        """Every node's public HTTP gateway (any of them reaches the leader)."""
        return [f"http://127.0.0.1:{n.http_port}" for n in self.spec.nodes if n.http_port]

    def start_gateway(self, name: str) -> None:
        node = next(n for n in self.spec.nodes if n.name == name)
        args = [
            sys.executable,
            "-m",
            "openbell.gateway.cluster",
            "--name",
            name,
            "--port",
            str(node.http_port),
            "--data-dirs",
            ",".join(n.data_dir for n in self.spec.nodes),
        ]
        self.gateways[name] = _spawn(args, Path(node.data_dir) / "gateway.log")

    def wait_gateways(self, timeout_s: float = 60.0) -> None:
        """Until every gateway answers ``/_cluster/leader`` with a leader."""
        import httpx

        deadline = time.monotonic() + timeout_s
        for url in self.gateway_urls:
            while True:
                try:
                    if httpx.get(url + "/_cluster/leader", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"gateway {url} found no leader in {timeout_s} s")
                time.sleep(0.1)

    def start_node(self, name: str) -> None:
        node = next(n for n in self.spec.nodes if n.name == name)
        args = [
            sys.executable,
            "-m",
            "openbell.node.cluster",
            "node",
            "--name",
            name,
            "--data",
            node.data_dir,
            "--nats",
            ",".join(self.nats.urls),
            "--peers",
            ",".join(n.name for n in self.spec.nodes),
            "--stream",
            self.spec.stream,
            "--ttl",
            str(self.spec.ttl_s),
            "--checkpoint-every",
            str(self.spec.checkpoint_every),
        ]
        if self.spec.gateways:
            args += ["--http", "--keys-dir", self.spec.keys_dir]
        if self.spec.demo_seed is not None:
            args += ["--demo-seed", str(self.spec.demo_seed)]
        args += ["--snapshot-every", str(self.spec.snapshot_every)]
        if not self.spec.prune:
            args.append("--no-prune")
        if self.spec.dr is not None:
            args += ["--dr-nats", ",".join(self.spec.dr.urls)]
        self.nodes[name] = _spawn(args, Path(node.data_dir) / "node.log")
        self.starts[name] = self.starts.get(name, 0) + 1

    def stop_supervising(self) -> None:
        self._supervising.clear()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
            self._supervisor = None

    def _supervise(self) -> None:
        while self._supervising.is_set():
            for name, process in list(self.nodes.items()):
                if process.poll() is not None and self._supervising.is_set():
                    self.start_node(name)
            for name, process in list(self.gateways.items()):
                if process.poll() is not None and self._supervising.is_set():
                    self.start_gateway(name)
            time.sleep(0.5)

    def node_pid(self, name: str) -> int:
        return self.nodes[name].pid

    def kill_node(self, name: str, signum: int = signal.SIGKILL) -> None:
        process = self.nodes[name]
        if process.poll() is None:
            process.send_signal(signum)
            if signum == signal.SIGKILL:
                process.wait(timeout=10)

    def node_status(self) -> dict[str, dict[str, Any]]:
        """Each node's role, seq, stream seq and epoch as it last reported them."""
        result: dict[str, dict[str, Any]] = {}
        for node in self.spec.nodes:
            path = Path(node.data_dir) / "cluster-node.json"
            try:
                status: dict[str, Any] = msgspec.json.decode(path.read_bytes())
            except (OSError, msgspec.DecodeError):
                status = {"role": "down"}
            if "pid" in status and not pid_alive(int(status["pid"])):
                status["role"] = "down"
            result[node.name] = status
        return result

    def stop(self) -> None:
        self.stop_supervising()
        stop_processes(list(self.gateways.values()) + list(self.nodes.values()))
        self.nats.stop()
        if self.dr_nats is not None:
            self.dr_nats.stop()

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def promote_dr(root: Path) -> int:
    """Disaster recovery: make the second site's mirror the primary stream, and rewrite the
    cluster's spec so the next ``Cluster.load(root).start()`` (``openbell cluster up``) runs the
    nodes on the second site. Returns the promoted stream's last stream seq."""
    spec = msgspec.json.decode((Path(root) / "cluster.json").read_bytes(), type=ClusterSpec)
    if spec.dr is None:
        raise RuntimeError("this cluster has no second site (start it with --dr)")
    last = promote(spec.dr.urls, spec.stream)
    promoted = msgspec.structs.replace(spec, nats=spec.dr, dr=None)
    spec.spec_path.write_bytes(msgspec.json.format(msgspec.json.encode(promoted)))
    return last


def stream_status(spec: ClusterSpec) -> dict[str, Any]:
    """The stream's last sequence and last command seq, from NATS itself."""
    journal = NatsJournal(spec.nats.urls, spec.stream, node="status", connect_deadline_s=5)
    try:
        stream_seq, last_seq = journal.refresh()
        return {"stream_seq": stream_seq, "seq": last_seq, "epoch": journal.epoch}
    finally:
        journal.close()


def replay_stream(journal: NatsJournal, config: EngineConfig | None = None) -> Engine:
    """A fresh engine fed the whole stream (the checker's reference)."""
    from openbell.node.recovery import replay

    engine = Engine(config or EngineConfig())
    replay(engine, journal.read(1))
    return engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openbell.node.cluster")
    sub = parser.add_subparsers(dest="command", required=True)
    node = sub.add_parser("node", help="run one cluster node (standby, then leader)")
    node.add_argument("--name", required=True)
    node.add_argument("--data", required=True)
    node.add_argument("--nats", required=True, help="comma-separated nats:// urls")
    node.add_argument("--peers", required=True, help="comma-separated node names")
    node.add_argument("--stream", default=DEFAULT_STREAM)
    node.add_argument("--ttl", type=float, default=DEFAULT_TTL_S)
    node.add_argument("--checkpoint-every", type=int, default=DEFAULT_CHECKPOINT_EVERY)
    node.add_argument("--http", action="store_true", help="the leader serves the HTTP gateway")
    node.add_argument("--keys-dir", default="", help="the gateway's API keys (DIR/gateway/)")
    node.add_argument("--demo-seed", type=int, default=None, help="run the demo venue's flow")
    node.add_argument("--snapshot-every", type=int, default=DEFAULT_SNAPSHOT_EVERY)
    node.add_argument("--no-prune", action="store_true", help="never purge the stream")
    node.add_argument("--dr-nats", default="", help="the mirror's servers (pruning waits)")
    args = parser.parse_args(argv)
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 PID: every thread's stack to the log
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {args.name} %(name)s %(levelname)s %(message)s"
    )
    return run_node(
        args.name,
        Path(args.data),
        args.nats.split(","),
        args.peers.split(","),
        args.stream,
        args.ttl,
        args.checkpoint_every,
        LeaderGateway(args.http or args.demo_seed is not None, args.keys_dir, args.demo_seed),
        StreamStorage(
            args.snapshot_every,
            not args.no_prune,
            [url for url in args.dr_nats.split(",") if url],
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
