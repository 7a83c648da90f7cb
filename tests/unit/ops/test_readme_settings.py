"""The README's operations section lists every setting of every service under its environment variable."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from crmkit.settings import ServiceSettings

README = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
SETTINGS = [("leads", "LeadsSettings"), ("qualification", "QualificationSettings"), ("importer", "ImporterSettings"),
            ("activity", "ActivitySettings"), ("analytics", "AnalyticsSettings")]


def test_every_shared_setting_is_in_the_readme():
    missing = [name for name in ServiceSettings.model_fields if name != "service_name" and f"`<PREFIX>_{name.upper()}`" not in README]
    assert missing == [], "document these in the README's Operations section"


@pytest.mark.parametrize("service,cls", SETTINGS)
def test_every_setting_of_a_service_is_in_the_readme(service, cls):
    settings = getattr(importlib.import_module(f"services.{service}.settings"), cls)
    prefix = settings.model_config["env_prefix"]
    own = [n for n in settings.model_fields if n not in ServiceSettings.model_fields]
    missing = [n for n in own if f"`{prefix}{n.upper()}`" not in README]
    assert missing == [], "document these in the README's Operations section"
