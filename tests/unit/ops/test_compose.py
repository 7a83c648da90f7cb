"""compose.yaml: Docker accepts it where the CLI has compose; otherwise its shape is checked."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
SERVICES = {"leads": 8001, "qualification": 8002, "importer": 8003, "activity": 8004, "analytics": 8005}


def _compose_cli() -> bool:
    docker = shutil.which("docker")
    if not docker:
        return False
    return subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _compose_cli(), reason="no 'docker compose' on this machine")
def test_docker_compose_accepts_the_file():
    result = subprocess.run(["docker", "compose", "-f", str(ROOT / "compose.yaml"), "config", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_compose_runs_kafka_mongo_and_every_service_with_health_checks():
    spec = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = spec["services"]
    nodes = ["kafka1", "kafka2", "kafka3"]
    assert {*nodes, "kafka-init", "mongo1", "mongo2", "mongo3", *SERVICES} <= set(services)
    assert "rs0" in " ".join(services["mongo1"]["command"])
    assert all(f"mongo{i}:27017" in services["mongo1"]["healthcheck"]["test"][-1] for i in (1, 2, 3))  # three members
    assert [services[n]["environment"]["NODE_ID"] for n in nodes] == ["1", "2", "3"]
    script = (ROOT / "infra" / "compose" / "kafka-node.sh").read_text()
    for setting in ("allow.everyone.if.no.acl.found=false", "StandardAuthorizer", "auto.create.topics.enable=false",
                    "default.replication.factor=3", "min.insync.replicas=2", "--add-scram"):
        assert setting in script
    assert services["kafka-init"]["command"] == ["crm", "bus-setup"]
    for name, port in SERVICES.items():
        service = services[name]
        env = service["environment"]
        assert service["build"] == {"context": ".", "args": {"SERVICE": name}}  # one Dockerfile, the service by argument
        assert env["SERVICE"] == name
        assert env["HTTP_PORT"] == str(port)
        assert env[f"{name.upper()}_KAFKA_SASL_USERNAME"] == name  # its own principal
        password = f"{name.upper()}_KAFKA_SASL_PASSWORD"
        assert env[password] == "${" + password + ":?}"  # from .env, never in the file
        assert "health/ready" in " ".join(service["healthcheck"]["test"])
        assert "ports" not in service, "published ports would stop '--scale' from working"
        assert service["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    assert (ROOT / "Dockerfile").exists()


def test_every_container_restarts_and_is_limited_and_prometheus_scrapes_the_four_services():
    spec = yaml.safe_load((ROOT / "compose.yaml").read_text())
    for name, service in spec["services"].items():
        assert service["restart"] == ("no" if name == "kafka-init" else "unless-stopped"), name  # the init job runs once
        limits = service["deploy"]["resources"]["limits"]
        assert limits["cpus"] and limits["memory"], name
    prometheus = spec["services"]["prometheus"]
    mounted = [v.split(":")[0] for v in prometheus["volumes"] if v.startswith("./")]
    config = yaml.safe_load((ROOT / mounted[0]).read_text())
    scraped = {(c["dns_sd_configs"][0]["names"][0], c["dns_sd_configs"][0]["port"]) for c in config["scrape_configs"]}
    assert scraped == set(SERVICES.items())


def test_the_image_is_built_in_stages_and_runs_as_an_unprivileged_user():
    text = (ROOT / "Dockerfile").read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2 and " AS build" in stages[0] and "COPY --from=build" in text
    runtime = text.split(stages[1], 1)[1]
    assert "ARG SERVICE" in runtime and "USER crm" in runtime and "useradd" in runtime


def test_compose_env_names_every_password_compose_asks_for():
    from typer.testing import CliRunner

    from crmctl.cli import app

    result = CliRunner().invoke(app, ["compose-env"])
    assert result.exit_code == 0, result.output
    given = {line.split("=", 1)[0] for line in result.output.splitlines() if "=" in line}
    asked = set(re.findall(r"\$\{([A-Z_]+):\?", (ROOT / "compose.yaml").read_text()))
    assert asked and asked <= given
