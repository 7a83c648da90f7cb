"""Starting and stopping the four services as background processes on the local stack."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .kafka import KafkaCluster
from .stack import ROOT, ManagedProcess, StackConfig, StackError, wait_for

# The local demo's bearer tokens (README lists them); real deployments configure their own.
DEMO_TOKENS = {"demo-admin": "alice", "demo-manager": "bob", "demo-unlicensed": "mallory"}


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    port: int
    env_prefix: str


SERVICES = (
    ServiceSpec("leads", "services.leads", 8001, "LEADS_"),
    ServiceSpec("qualification", "services.qualification", 8002, "QUALIFICATION_"),
    ServiceSpec("importer", "services.importer", 8003, "IMPORTER_"),
    ServiceSpec("activity", "services.activity", 8004, "ACTIVITY_"),
    ServiceSpec("analytics", "services.analytics", 8005, "ANALYTICS_"),
)


def process_for(spec: ServiceSpec, config: StackConfig, instance: int = 0) -> ManagedProcess:
    suffix = f"-{instance}" if instance else ""
    home = config.run_dir / "services"
    return ManagedProcess(
        f"{spec.name}{suffix}", home / f"{spec.name}{suffix}.pid", home / f"{spec.name}{suffix}.log",
        f"-m {spec.module}",
    )


def service_env(spec: ServiceSpec, config: StackConfig, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a service on the local stack: its endpoints and its own Kafka principal."""
    env = dict(os.environ)
    env.setdefault("KAFKA_BOOTSTRAP_SERVERS", config.kafka_bootstrap)
    credentials = KafkaCluster(config).credentials()
    env.setdefault(f"{spec.env_prefix}KAFKA_SASL_USERNAME", spec.name)
    env.setdefault(f"{spec.env_prefix}KAFKA_SASL_PASSWORD", credentials[spec.name])
    env.setdefault(f"{spec.env_prefix}KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    env.setdefault("MONGODB_URL", config.mongodb_url)
    env.setdefault(f"{spec.env_prefix}TOKENS", json.dumps(DEMO_TOKENS))
    env.setdefault(f"{spec.env_prefix}HTTP_PORT", str(spec.port))
    if spec.name == "importer":
        # Uploads under server names, and the inbox whose files crm.import.start may name, in the run folder.
        inbox = config.run_dir / "import-inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        env.setdefault("IMPORTER_UPLOADS_DIR", str(config.run_dir / "imports"))
        env.setdefault("IMPORTER_FILE_ROOTS", json.dumps([str(inbox)]))
    if spec.name == "leads":
        # Webhook signing secrets are sealed at rest with a key of the deployment; the local stack's is
        # made once and kept in the run folder, readable by its owner only.
        env.setdefault("LEADS_SECRETS_KEYS", json.dumps([_local_secrets_key(config.run_dir)]))
    if spec.name == "analytics":
        # The replica's DuckDB read model lives in the run folder (rebuilt from the topics if removed).
        env.setdefault("ANALYTICS_STORE_PATH", str(config.run_dir / "analytics" / "analytics.duckdb"))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def _local_secrets_key(run_dir: Path) -> str:
    path = run_dir / "leads-secrets.key"
    if not path.exists():
        from cryptography.fernet import Fernet

        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(Fernet.generate_key().decode())
    return path.read_text().strip()


def http_ready(port: int, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=timeout) as resp:
            return resp.status == 200
    except Exception:
        return False


def start_service(spec: ServiceSpec, config: StackConfig, timeout: float = 90.0) -> None:
    proc = process_for(spec, config)
    if proc.running() and http_ready(spec.port):
        return
    if proc.running():
        proc.stop()
    proc.start([sys.executable, "-m", spec.module], env=service_env(spec, config), cwd=ROOT)


def wait_ready(spec: ServiceSpec, config: StackConfig, timeout: float = 120.0) -> None:
    proc = process_for(spec, config)

    def check() -> bool:
        if not proc.running():
            raise StackError(f"The {spec.name} service exited at start. See its log: {proc.log_file}")
        return http_ready(spec.port)

    wait_for(check, f"The {spec.name} service", timeout, proc.log_file)


def stop_service(spec: ServiceSpec, config: StackConfig) -> bool:
    return process_for(spec, config).stop(timeout=40)
