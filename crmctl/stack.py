"""The local stack: real Apache Kafka (KRaft) from Maven jars and FerretDB (SQLite) built with Go, on loopback."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"


class StackError(RuntimeError):
    """A step of provisioning or starting the stack failed; the message says what to do."""


@dataclass(frozen=True)
class StackConfig:
    run_dir: Path
    kafka_port: int
    controller_port: int
    mongo_port: int

    @classmethod
    def from_env(cls) -> StackConfig:
        return cls(
            run_dir=Path(os.environ.get("CRM_RUN_DIR", ROOT / ".run")).resolve(),
            kafka_port=int(os.environ.get("CRM_KAFKA_PORT", "9092")),
            controller_port=int(os.environ.get("CRM_KAFKA_CONTROLLER_PORT", "9093")),
            mongo_port=int(os.environ.get("CRM_MONGO_PORT", "27017")),
        )

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def mongodb_url(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongo_port}/"


def _need(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise StackError(f"'{tool}' is not installed or not on PATH. {hint}")
    return path


def _run(cmd: list[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise StackError(f"{what} failed (exit {result.returncode}): {' '.join(cmd)}\n{tail}")


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def wait_for(check: Callable[[], bool], what: str, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    hint = f" See the log: {log}" if log else ""
    raise StackError(f"{what} did not become ready within {timeout:.0f}s.{hint}")


def _raise_open_files_limit() -> None:
    """Kafka keeps files open per partition and FerretDB per database: lift the soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in (1_048_576, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(wanted, hard)))
            return
        except (ValueError, OSError):
            continue


# --- processes ------------------------------------------------------------------------------


class ManagedProcess:
    """A background process with a pid file; stop ends exactly the process that start began."""

    def __init__(self, name: str, pid_file: Path, log_file: Path, marker: str) -> None:
        self.name = name
        self.pid_file = pid_file
        self.log_file = log_file
        self.marker = marker  # a string in the command line that proves the pid is still ours

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except FileNotFoundError:
            return None
        if self.marker not in cmdline:
            return None
        try:
            status = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except (FileNotFoundError, IndexError):
            return None
        return None if status == "Z" else pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=cwd, start_new_session=True, preexec_fn=_raise_open_files_limit,
            )
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def stop(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.1)
        if self.pid() is not None:
            os.kill(pid, signal.SIGKILL)
            while self.pid() is not None:
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> bool:
        """SIGKILL, for crash tests."""
        return self.stop(timeout=0.0, sig=signal.SIGKILL)


# --- Kafka ----------------------------------------------------------------------------------


class Kafka:
    """Apache Kafka 4.x, one combined broker/controller node in KRaft mode."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.home = config.run_dir / "kafka"
        self.lib = INFRA / "kafka" / "lib"
        self.properties = self.home / "server.properties"
        self.process = ManagedProcess("kafka", self.home / "kafka.pid", self.home / "kafka.log", str(self.properties))

    def provision(self) -> None:
        if list(self.lib.glob("kafka_2.13-*.jar")):
            return
        _need("java", "Install Java 17: apt-get install -y openjdk-17-jre-headless")
        mvn = _need("mvn", "Install Maven: apt-get install -y maven")
        print("Fetching the Kafka jars from Maven Central (once)...", file=sys.stderr)
        _run([mvn, "-B", "-q", "-f", str(INFRA / "kafka" / "pom.xml"), "package"], "Fetching Kafka jars with Maven")

    def _classpath(self) -> str:
        return str(self.lib / "*")

    def _java(self) -> str:
        return _need("java", "Install Java 17: apt-get install -y openjdk-17-jre-headless")

    def _write_properties(self) -> None:
        c = self.config
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.properties.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{c.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{c.kafka_port},CONTROLLER://127.0.0.1:{c.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{c.kafka_port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={data}",
                    "num.partitions=6",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=6",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=true",
                    "message.max.bytes=4194304",
                    "log.retention.hours=168",
                    "",
                ]
            )
        )

    def start(self, timeout: float = 90.0) -> None:
        if self.process.running() and self.ready():
            return
        self.provision()
        java = self._java()
        self.home.mkdir(parents=True, exist_ok=True)
        if self.process.running():
            self.process.stop()
        if port_open(self.config.kafka_port):
            raise StackError(
                f"Port {self.config.kafka_port} is taken by another program; stop it or set CRM_KAFKA_PORT."
            )
        self._write_properties()
        log4j = f"-Dlog4j2.configurationFile={INFRA / 'kafka' / 'log4j2.properties'}"
        if not (self.home / "data" / "meta.properties").exists():
            # One id in 32 starts with "-"; the "=" form keeps the tool from reading it as an option.
            cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
            _run(
                [java, log4j, "-cp", self._classpath(), "kafka.tools.StorageTool", "format", "--standalone",
                 f"--cluster-id={cluster_id}", "-c", str(self.properties), "--ignore-formatted"],
                "Formatting the Kafka storage",
            )
        self.process.start(
            [java, "-Xms512m", "-Xmx1g", "-XX:+UseG1GC", log4j, "-cp", self._classpath(), "kafka.Kafka", str(self.properties)]
        )
        wait_for(lambda: self.process.running() and self.ready(), "Kafka", timeout, self.process.log_file)

    def ready(self) -> bool:
        """The port accepts and an admin call (list topics) answers."""
        if not port_open(self.config.kafka_port):
            return False
        code = (
            "import asyncio,sys\n"
            "from aiokafka.admin import AIOKafkaAdminClient\n"
            "async def m():\n"
            f"  a=AIOKafkaAdminClient(bootstrap_servers='{self.config.kafka_bootstrap}',request_timeout_ms=5000)\n"
            "  await a.start()\n"
            "  try: await a.list_topics()\n"
            "  finally: await a.close()\n"
            "asyncio.run(m())\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
        return result.returncode == 0

    def stop(self) -> bool:
        return self.process.stop(timeout=60)


# --- FerretDB -------------------------------------------------------------------------------


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
        go = _need("go", "Install Go 1.22 or newer (https://go.dev/doc/install) or apt-get install -y golang")
        print("Building FerretDB from the Go module proxy (once, about a minute)...", file=sys.stderr)
        self.binary.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CGO_ENABLED": "0"}
        _run([go, "mod", "download", "github.com/FerretDB/FerretDB"], "Downloading FerretDB", cwd=self.source, env=env)
        module_dir = subprocess.run(
            [go, "list", "-m", "-f", "{{.Dir}}", "github.com/FerretDB/FerretDB"],
            cwd=self.source, env=env, check=True, capture_output=True, text=True,
        ).stdout.strip()
        build_dir = ROOT / ".run" / "build" / "ferretdb"
        copy = ferretdb_patches.patched_module(Path(module_dir), build_dir)
        modfile = ferretdb_patches.build_modfile(self.source, copy, build_dir)
        _run(
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
        if port_open(self.config.mongo_port):
            raise StackError(
                f"Port {self.config.mongo_port} is taken by another program; stop it or set CRM_MONGO_PORT."
            )
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.process.start(
            [str(self.binary), "-listen", f"127.0.0.1:{self.config.mongo_port}", "-data", str(data), "-log-level", "error"]
        )
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
        self.kafka = Kafka(self.config)
        self.ferretdb = FerretDB(self.config)

    def provision(self) -> None:
        self.kafka.provision()
        self.ferretdb.provision()

    def up(self) -> None:
        self.ferretdb.start()
        self.kafka.start()

    def down(self) -> list[str]:
        stopped = []
        if self.kafka.stop():
            stopped.append("kafka")
        if self.ferretdb.stop():
            stopped.append("ferretdb")
        return stopped

    def status(self) -> dict[str, dict[str, object]]:
        return {
            "kafka": {"pid": self.kafka.process.pid(), "address": self.config.kafka_bootstrap,
                      "ready": self.kafka.process.running() and port_open(self.config.kafka_port)},
            "ferretdb": {"pid": self.ferretdb.process.pid(), "address": self.config.mongodb_url,
                         "ready": self.ferretdb.process.running() and self.ferretdb.ready()},
        }
