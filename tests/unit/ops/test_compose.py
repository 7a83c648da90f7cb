"""compose.yaml: Docker accepts it where the CLI has compose; otherwise its shape is checked."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
SERVICES = {"leads": 8001, "qualification": 8002, "importer": 8003, "activity": 8004}


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
    assert {"kafka", "mongo", *SERVICES} <= set(services)
    assert "rs0" in " ".join(services["mongo"]["command"])  # single-node replica set
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name, port in SERVICES.items():
        service = services[name]
        assert service["build"] == {"context": ".", "args": {"SERVICE": name}}  # one Dockerfile, the service by argument
        assert service["environment"]["SERVICE"] == name
        assert service["environment"]["HTTP_PORT"] == str(port)
        assert "health/ready" in " ".join(service["healthcheck"]["test"])
        assert "ports" not in service, "published ports would stop '--scale' from working"
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert (ROOT / "Dockerfile").exists()


def test_every_container_restarts_and_is_limited_and_prometheus_scrapes_the_four_services():
    spec = yaml.safe_load((ROOT / "compose.yaml").read_text())
    for name, service in spec["services"].items():
        assert service["restart"] == "unless-stopped", name
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
