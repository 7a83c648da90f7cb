"""AsyncAPI 3.0 document of a service, generated from the contract models it consumes and publishes."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from contracts.registry import TOPIC_PAYLOADS, envelope_class, payload_class


def _ref_name(type_name: str) -> str:
    return type_name.replace(".", "_").replace("-", "_")


def build_asyncapi(
    *,
    title: str,
    version: str,
    description: str,
    bootstrap: str,
    consumes: list[str],
    publishes: list[str],
    topic_descriptions: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Channels are topics; each message is a CloudEvents envelope whose ``data`` is the payload."""
    topic_descriptions = topic_descriptions or {}
    topics = list(dict.fromkeys([*consumes, *publishes]))
    types = sorted({t.TYPE for topic in topics for t in TOPIC_PAYLOADS[topic]})
    _, schema = models_json_schema(
        [(envelope_class(t), "serialization") for t in types], ref_template="#/components/schemas/{model}"
    )
    schemas = schema.get("$defs", {})
    messages: dict[str, Any] = {}
    for t in types:
        model = envelope_class(t)
        messages[_ref_name(t)] = {
            "name": t,
            "title": t,
            "summary": _summary(t),
            "contentType": "application/cloudevents+json",
            "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
        }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in topics:
        channel_id = _ref_name(topic)
        channels[channel_id] = {
            "address": topic,
            "description": topic_descriptions.get(topic, ""),
            "messages": {_ref_name(p.TYPE): {"$ref": f"#/components/messages/{_ref_name(p.TYPE)}"} for p in TOPIC_PAYLOADS[topic]},
            "bindings": {"kafka": {"topic": topic, "bindingVersion": "0.5.0"}},
        }
        if topic in consumes:
            operations[f"receive_{channel_id}"] = {"action": "receive", "channel": {"$ref": f"#/channels/{channel_id}"}}
        if topic in publishes:
            operations[f"send_{channel_id}"] = {"action": "send", "channel": {"$ref": f"#/channels/{channel_id}"}}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": title, "version": version, "description": description},
        "defaultContentType": "application/cloudevents+json",
        "servers": {"development": {"host": bootstrap, "protocol": "kafka"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def _summary(type_name: str) -> str:
    doc = (payload_class(type_name).__doc__ or "").strip()
    return doc.splitlines()[0] if doc else type_name
