"""The local stack: real Apache Kafka (KRaft) from Maven jars and FerretDB (SQLite) built with Go, on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .kafka import KafkaCluster, formatted_brokers
from .processes import ManagedProcess, StackError, need, port_open, port_taken_by, run, wait_for

__all__ = ["ROOT", "ManagedProcess", "Stack", "StackConfig", "StackError", "port_open", "wait_for"]

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
MAX_BROKERS = 3


@dataclass(frozen=True)
class StackConfig:
    """Where the stack runs: node n (1-based) of Kafka listens on kafka_port + 2(n-1) and controller_port + 2(n-1)."""

    run_dir: Path
    kafka_port: int
    controller_port: int
    mongo_port: int
    brokers: int = 3
    ports: tuple[tuple[int, int], ...] | None = None  # explicit (client, controller) ports per node

    @classmethod
    def from_env(cls, brokers: int | None = None) -> StackConfig:
        """From CRM_RUN_DIR, CRM_KAFKA_PORT, CRM_KAFKA_CONTROLLER_PORT, CRM_MONGO_PORT and CRM_KAFKA_BROKERS.

        Without ``brokers``: the size the run folder's cluster was formatted with, else CRM_KAFKA_BROKERS, else 3.
        """
        run_dir = Path(os.environ.get("CRM_RUN_DIR", ROOT / ".run")).resolve()
        kafka_port = int(os.environ.get("CRM_KAFKA_PORT", "9092"))
        size = brokers or formatted_brokers(run_dir / "kafka") or int(os.environ.get("CRM_KAFKA_BROKERS", "3"))
        if not 1 <= size <= MAX_BROKERS:
            raise StackError(f"The local cluster has 1 to {MAX_BROKERS} nodes, not {size}.")
        return cls(
            run_dir=run_dir,
            kafka_port=kafka_port,
            controller_port=int(os.environ.get("CRM_KAFKA_CONTROLLER_PORT", str(kafka_port + 1))),
            mongo_port=int(os.environ.get("CRM_MONGO_PORT", "27017")),
            brokers=size,
        )

    def node_ports(self) -> list[tuple[int, int]]:
        if self.ports:
            return list(self.ports)
        return [(self.kafka_port + 2 * i, self.controller_port + 2 * i) for i in range(self.brokers)]

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port, _ in self.node_ports()[: self.brokers])

    @property
    def mongodb_url(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongo_port}/"


# --- FerretDB -------------------------------------------------------------------------------


def ferretdb_synchronous(env: Mapping[str, str]) -> str:
    """SQLite's synchronous mode for FerretDB from CRM_FERRETDB_SYNCHRONOUS: ``normal`` (the default) or ``full``."""
    value = env.get("CRM_FERRETDB_SYNCHRONOUS", "normal").strip().lower() or "normal"
    if value not in ("full", "normal"):
        raise StackError(f"CRM_FERRETDB_SYNCHRONOUS is {value!r}: set it to full or normal (the default).")
    return value


class FerretDB:
    """FerretDB 1.24 with its SQLite backend, built from the project's own wrapper module."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.home = config.run_dir / "ferretdb"
        self.source = INFRA / "ferretdb"
        self.binary = ROOT / ".run" / "bin" / "ferretdb-local"  # shared by every run folder
        self.process = ManagedProcess("ferretdb", self.home / "ferretdb.pid", self.home / "ferretdb.log", str(self.binary))

    def provision(self) -> None:
        from crmctl import ferretdb_patches

        sources = [self.source / n for n in ("main.go", "go.mod", "go.sum")]
        stamp = self.binary.with_suffix(".patches")
        if (
            self.binary.exists()
            and all(self.binary.stat().st_mtime >= s.stat().st_mtime for s in sources)
            and stamp.exists() and stamp.read_text() == ferretdb_patches.fingerprint()
        ):
            return
        go = need("go", "Install Go 1.22 or newer (https://go.dev/doc/install) or apt-get install -y golang")
        print("Building FerretDB from the Go module proxy (once, about a minute)...", file=sys.stderr)
        self.binary.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CGO_ENABLED": "0"}
        run([go, "mod", "download", "github.com/FerretDB/FerretDB"], "Downloading FerretDB", cwd=self.source, env=env)
        module_dir = subprocess.run(
            [go, "list", "-m", "-f", "{{.Dir}}", "github.com/FerretDB/FerretDB"],
            cwd=self.source, env=env, check=True, capture_output=True, text=True,
        ).stdout.strip()
        build_dir = ROOT / ".run" / "build" / "ferretdb"
        copy = ferretdb_patches.patched_module(Path(module_dir), build_dir)
        modfile = ferretdb_patches.build_modfile(self.source, copy, build_dir)
        run(
            [go, "build", "-tags", "ferretdb_no_postgresql", f"-modfile={modfile}", "-o", str(self.binary), "."],
            "Building FerretDB", cwd=self.source, env=env,
        )
        stamp.write_text(ferretdb_patches.fingerprint())

    def start(self, timeout: float = 60.0) -> None:
        if self.process.running() and self.ready():
            return
        self.provision()
        if self.process.running():
            self.process.stop()
        if holder := port_taken_by(self.config.mongo_port):
            raise StackError(f"Port {self.config.mongo_port} is taken by {holder}; stop it or set CRM_MONGO_PORT.")
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        synchronous = ferretdb_synchronous(os.environ)
        self.process.start([
            str(self.binary), "-listen", f"127.0.0.1:{self.config.mongo_port}", "-data", str(data), "-log-level", "error",
            "-synchronous", synchronous,
        ])
        wait_for(lambda: self.process.running() and self.ready(), "FerretDB", timeout, self.process.log_file)

    def ready(self) -> bool:
        if not port_open(self.config.mongo_port):
            return False
        from pymongo import MongoClient

        client = MongoClient(self.config.mongodb_url, serverSelectionTimeoutMS=2000)
        try:
            client.admin.command("ping")
            return True
        except Exception:
            return False
        finally:
            client.close()

    def stop(self) -> bool:
        return self.process.stop(timeout=30)


class Stack:
    """Kafka and FerretDB together."""

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig.from_env()
        self.kafka = KafkaCluster(self.config)
        self.ferretdb = FerretDB(self.config)

    def provision(self) -> None:
        self.kafka.provision()
        self.ferretdb.provision()

    def up(self) -> None:
        self.ferretdb.start()
        self.kafka.start()
        self.kafka.setup_bus()

    def running(self) -> bool:
        return self.kafka.running() and self.ferretdb.process.running()

    def down(self) -> list[str]:
        stopped = []
        if self.kafka.stop():
            stopped.append("kafka")
        if self.ferretdb.stop():
            stopped.append("ferretdb")
        return stopped
