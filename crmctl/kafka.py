"""Apache Kafka 4.x on loopback: one to three combined broker/controller nodes (KRaft, static voters), SASL/SCRAM and ACLs."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import bus
from .processes import ManagedProcess, StackError, need, port_open, port_taken_by, run, wait_for

if TYPE_CHECKING:
    from crmkit.settings import KafkaSettings

    from .stack import StackConfig

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra" / "kafka"
LAYOUT = 2  # 1: one plaintext node in <run>/kafka/data; 2: nodes in <run>/kafka/node-<id>, SASL and ACLs


def formatted_brokers(kafka_home: Path) -> int | None:
    """How many nodes the run folder's cluster was formatted with (None: not formatted yet)."""
    try:
        return int(json.loads((kafka_home / "cluster.json").read_text())["brokers"])
    except (FileNotFoundError, KeyError, ValueError):
        return None


@dataclass(frozen=True)
class NodeStatus:
    node_id: int
    pid: int | None
    address: str
    up: bool


class KafkaNode:
    """One combined broker+controller: its ports, folder (properties, data, log) and process."""

    def __init__(self, home: Path, node_id: int, port: int, controller_port: int) -> None:
        self.node_id = node_id
        self.port = port
        self.controller_port = controller_port
        self.home = home / f"node-{node_id}"
        self.data = self.home / "data"
        self.properties = self.home / "server.properties"
        self.process = ManagedProcess(f"kafka-{node_id}", self.home / "kafka.pid", self.home / "kafka.log", str(self.properties))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def quorum_state(self) -> dict[str, Any]:
        """What this node last wrote about the controller quorum (leader and epoch), from its data folder."""
        try:
            return json.loads((self.data / "__cluster_metadata-0" / "quorum-state").read_text())
        except (FileNotFoundError, ValueError):
            return {}


class KafkaCluster:
    """The nodes of one run folder; all share a cluster id, the voter set and the principals' credentials."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.home = config.run_dir / "kafka"
        self.lib = INFRA / "lib"
        self.credentials_file = self.home / "credentials.json"
        self.nodes = [
            KafkaNode(self.home, i + 1, port, controller)
            for i, (port, controller) in enumerate(config.node_ports()[: config.brokers])
        ]

    # --- provisioning -------------------------------------------------------------------------

    def provision(self) -> None:
        if list(self.lib.glob("kafka_2.13-*.jar")):
            return
        need("java", "Install Java 17: apt-get install -y openjdk-17-jre-headless")
        mvn = need("mvn", "Install Maven: apt-get install -y maven")
        print("Fetching the Kafka jars from Maven Central (once)...", flush=True)
        run([mvn, "-B", "-q", "-f", str(INFRA / "pom.xml"), "package"], "Fetching Kafka jars with Maven")

    def credentials(self) -> dict[str, str]:
        return bus.load_or_create_credentials(self.credentials_file)

    def client_settings(self, principal: str = bus.ADMIN) -> KafkaSettings:
        """Settings to connect to this cluster as ``principal`` (admin: the super user)."""
        from crmkit.settings import KafkaSettings

        if not self.credentials_file.exists():
            raise StackError(f"No Kafka credentials in {self.credentials_file}: run 'crm stack up' first.")
        return KafkaSettings(
            kafka_bootstrap_servers=self.config.kafka_bootstrap,
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username=principal,
            kafka_sasl_password=self.credentials()[principal],
        )

    def _properties(self, node: KafkaNode, admin_password: str) -> str:
        n = len(self.nodes)
        voters = ",".join(f"{m.node_id}@127.0.0.1:{m.controller_port}" for m in self.nodes)
        scram = f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{bus.ADMIN}" password="{admin_password}";'
        # SCRAM users live in the metadata log, which a controller must read before it could check
        # them: the controller listener authenticates the nodes with PLAIN and a static user instead.
        plain = (
            f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{bus.ADMIN}" '
            f'password="{admin_password}" user_{bus.ADMIN}="{admin_password}";'
        )
        return "\n".join([
            "process.roles=broker,controller",
            f"node.id={node.node_id}",
            f"controller.quorum.voters={voters}",
            f"listeners=BROKER://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            f"advertised.listeners=BROKER://127.0.0.1:{node.port}",
            "listener.security.protocol.map=BROKER:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
            "inter.broker.listener.name=BROKER",
            "controller.listener.names=CONTROLLER",
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            "sasl.mechanism.controller.protocol=PLAIN",
            "listener.name.broker.sasl.enabled.mechanisms=SCRAM-SHA-512",
            f"listener.name.broker.scram-sha-512.sasl.jaas.config={scram}",
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
            f"listener.name.controller.plain.sasl.jaas.config={plain}",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found=false",
            f"super.users=User:{bus.ADMIN}",
            f"log.dirs={node.data}",
            "auto.create.topics.enable=false",
            "num.partitions=6",
            f"default.replication.factor={n}",
            f"min.insync.replicas={min(2, n)}",
            f"offsets.topic.replication.factor={n}",
            "offsets.topic.num.partitions=6",
            f"transaction.state.log.replication.factor={n}",
            f"transaction.state.log.min.isr={min(2, n)}",
            "group.initial.rebalance.delay.ms=0",
            "message.max.bytes=4194304",
            "replica.fetch.max.bytes=4194304",
            "log.retention.hours=168",
            # A killed node's partitions move within seconds, not the 18 s default.
            "broker.session.timeout.ms=6000",
            "broker.heartbeat.interval.ms=1000",
            # The active controller appends a no-op record to the metadata log every 500 ms by default,
            # which every node then fetches and applies: on three idle nodes KRaft's threads took 34-35 ms
            # of CPU a second with it, 15-21 with 5 s (bench/kafka_threads.py). Fencing rides on the heartbeats.
            "metadata.max.idle.interval.ms=5000",
            # Broker settings to try (README, Local stack details), after the stack's own: the last one wins.
            *(p.strip() for p in os.environ.get("CRM_KAFKA_EXTRA_PROPERTIES", "").split(";") if p.strip()),
            "",
        ])

    def _check_layout(self) -> None:
        """Refuse a run folder formatted for another cluster size; move an old one-node plaintext folder aside."""
        formatted = formatted_brokers(self.home)
        if formatted is not None and formatted != len(self.nodes):
            raise StackError(
                f"The Kafka data in {self.home} belongs to a {formatted}-node cluster, not {len(self.nodes)}. "
                f"Use 'crm stack up --brokers {formatted}', or stop it ('crm stack down') and delete {self.home} to start afresh."
            )
        if formatted is None and (self.home / "data").exists():
            old = ManagedProcess("kafka", self.home / "kafka.pid", self.home / "kafka.log", str(self.home / "server.properties"))
            old.stop()
            # The folder of an unauthenticated single node: its topics hold only local test and demo data.
            aside = self.home.with_name(f"kafka-plaintext-{time.strftime('%Y%m%d%H%M%S')}")
            self.home.rename(aside)
            print(f"Moved the old one-node plaintext Kafka folder to {aside}", flush=True)

    def _format(self, java: str, log4j: str) -> None:
        credentials = self.credentials()
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        for node in self.nodes:
            if (node.data / "meta.properties").exists():
                continue
            node.data.mkdir(parents=True, exist_ok=True)
            # One id in 32 starts with "-"; the "=" form keeps the tool from reading it as an option.
            run([java, log4j, "-cp", str(self.lib / "*"), "kafka.tools.StorageTool", "format",
                 f"--cluster-id={cluster_id}", "-c", str(node.properties), "--ignore-formatted",
                 *bus.scram_arguments(credentials)],
                f"Formatting the storage of Kafka node {node.node_id}")
        (self.home / "cluster.json").write_text(json.dumps({"cluster_id": cluster_id, "brokers": len(self.nodes), "layout": LAYOUT}))

    # --- running ------------------------------------------------------------------------------

    def _heap(self) -> list[str]:
        # Three JVMs share two cores with the services: smaller heaps. Fixed sizes: the heap is not resized.
        if len(self.nodes) > 1:
            return ["-Xms768m", "-Xmx768m"]
        return ["-Xms1g", "-Xmx1g"]

    def jvm_options(self) -> list[str]:
        """Heap, collector, compiler and the flags of CRM_KAFKA_JAVA_OPTS (read at start; a collector named there
        replaces the serial one, a later flag wins over an earlier one)."""
        extra = os.environ.get("CRM_KAFKA_JAVA_OPTS", "").split()
        # The serial collector: on three nodes G1 (256-768 MB, one GC thread each) cost the brokers 31-47 µs
        # of CPU per lead in bench_leads, the serial one with a fixed 768 MB heap 3-4 (same load, one run each).
        gc = [] if any(o.startswith("-XX:+Use") and o.endswith("GC") for o in extra) else ["-XX:+UseSerialGC"]
        # The client compiler only: the server compiler (C2) kept compiling for minutes after a start,
        # 30-100 µs of Kafka CPU per lead through the first 140,000 of bench_leads on one node, against
        # 2-15 with C1 (bench/kafka_threads.py). A later -XX:TieredStopAtLevel=4 brings C2 back.
        return [*self._heap(), *gc, "-XX:TieredStopAtLevel=1", *extra]

    def start(self, timeout: float = 120.0) -> None:
        """Format on first use, start every node not running, and return when the whole cluster answers."""
        if self.running() and self.ready():
            return
        self.provision()
        java = need("java", "Install Java 17: apt-get install -y openjdk-17-jre-headless")
        log4j = f"-Dlog4j2.configurationFile={INFRA / 'log4j2.properties'}"
        self._check_layout()
        self.home.mkdir(parents=True, exist_ok=True)
        admin_password = self.credentials()[bus.ADMIN]
        for node in self.nodes:
            node.home.mkdir(parents=True, exist_ok=True)
            node.properties.write_text(self._properties(node, admin_password))
            node.properties.chmod(0o600)
        if formatted_brokers(self.home) is None or any(not (n.data / "meta.properties").exists() for n in self.nodes):
            self._format(java, log4j)
        for node in self.nodes:
            self._start_node(node, java, log4j)
        wait_for(lambda: self.running() and self.ready(), f"Kafka ({len(self.nodes)} nodes)", timeout,
                 self.nodes[0].process.log_file)

    def _start_node(self, node: KafkaNode, java: str, log4j: str) -> None:
        if node.process.running():
            return
        for port in (node.port, node.controller_port):
            if holder := port_taken_by(port):
                raise StackError(
                    f"Port {port} of Kafka node {node.node_id} is taken by {holder}; stop it or set "
                    "CRM_KAFKA_PORT / CRM_KAFKA_CONTROLLER_PORT (node n uses the port + 2(n-1))."
                )
        node.process.start([java, *self.jvm_options(), log4j, "-cp", str(self.lib / "*"), "kafka.Kafka",
                            str(node.properties)])

    def start_node(self, node_id: int, timeout: float = 90.0) -> None:
        """Start one stopped node and wait until it is back in the cluster (reliability tests)."""
        java = need("java", "Install Java 17")
        node = self.node(node_id)
        self._start_node(node, java, f"-Dlog4j2.configurationFile={INFRA / 'log4j2.properties'}")
        wait_for(lambda: node.process.running() and self.ready(), f"Kafka node {node_id}", timeout, node.process.log_file)

    def node(self, node_id: int) -> KafkaNode:
        return self.nodes[node_id - 1]

    def running(self) -> bool:
        return all(node.process.running() for node in self.nodes)

    def any_running(self) -> bool:
        return any(node.process.running() for node in self.nodes)

    def metadata(self, timeout: float = 5.0) -> Any:
        """Cluster metadata as the super user sees it (brokers, topics, partitions, replicas, ISRs)."""
        return bus.admin_client(self.client_settings()).list_topics(timeout=timeout)

    def ready(self) -> bool:
        """Every node's port accepts and the metadata lists every broker."""
        if not all(port_open(node.port) for node in self.nodes):
            return False
        try:
            return len(self.metadata().brokers) == len(self.nodes)
        except Exception:
            return False

    def stop(self, timeout: float = 60.0) -> bool:
        """SIGTERM every node at once (each shuts down in order while the others still answer), then wait."""
        pids = [(node, node.process.pid()) for node in self.nodes]
        for _, pid in pids:
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
        for node, pid in pids:
            if pid is not None:
                node.process.stop(timeout=timeout)
        return any(pid is not None for _, pid in pids)

    def setup_bus(self) -> tuple[list[str], int]:
        """Create the contract topics and every principal's ACLs (idempotent): what a deployment's init step does."""
        admin = self.client_settings()
        created = bus.create_topics(admin)
        return created, bus.apply_grants(admin, bus.grants())

    def status(self) -> dict[str, Any]:
        """Each node, the controller quorum's leader as the nodes last recorded it, and under-replicated partitions."""
        nodes = [NodeStatus(n.node_id, n.process.pid(), n.address, n.process.running() and port_open(n.port)) for n in self.nodes]
        states = [n.quorum_state() for n in self.nodes if n.process.running()]
        # A node that is voting writes leaderId -1 until the election ends: only elected leaders count.
        states = [s for s in states if s.get("leaderEpoch") is not None and s.get("leaderId", -1) >= 0]
        leader = max(states, key=lambda s: s["leaderEpoch"], default={})
        under: list[str] | None = None  # None: no broker answered, so nothing is known
        brokers: list[int] = []
        if any(node.up for node in nodes):
            try:
                meta = self.metadata(timeout=3.0)
                brokers = sorted(meta.brokers)
                under = [
                    f"{topic.topic}[{p.id}] isr={sorted(p.isrs)} of {sorted(p.replicas)}"
                    for topic in meta.topics.values() for p in topic.partitions.values() if len(p.isrs) < len(p.replicas)
                ]
            except Exception:
                under = None
        return {
            "nodes": nodes,
            "brokers_in_metadata": brokers,
            "quorum_leader": leader.get("leaderId"),
            "quorum_epoch": leader.get("leaderEpoch"),
            "voters": [n.node_id for n in self.nodes],
            "under_replicated": sorted(under) if under is not None else None,
        }




def connection(principal: str, bootstrap: str | None = None) -> KafkaSettings:
    """Who a CLI command connects as: the KAFKA_* settings when credentials are given there, else the
    local stack's ``principal`` (its password from the run folder), else no authentication."""
    from crmkit.settings import KafkaSettings

    from .stack import StackConfig

    overrides = {"kafka_bootstrap_servers": bootstrap} if bootstrap else {}
    if os.environ.get("KAFKA_SASL_USERNAME") or os.environ.get("KAFKA_SECURITY_PROTOCOL"):
        return KafkaSettings(**overrides)
    cluster = KafkaCluster(StackConfig.from_env())
    if cluster.credentials_file.exists():
        found = cluster.client_settings(principal)
        return found.model_copy(update=overrides) if overrides else found
    return KafkaSettings(**({"kafka_bootstrap_servers": cluster.config.kafka_bootstrap} | overrides))


def operator_options(bootstrap: str | None = None) -> dict:
    """aiokafka connection keywords for the operator principal (reads every topic, may replay DLQs)."""
    return connection("operator", bootstrap).kafka_client_options()
