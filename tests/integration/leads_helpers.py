"""Shared steps for leads tests: start the service, grant access, send commands, read cards."""

from __future__ import annotations

from contracts import build_message, payload_class
from contracts.topics import DIRECTORY_EVENTS
from tests.support import Producer


def directory_event(type_name: str, **data):
    return build_message(payload_class(type_name).model_validate(data), source="test/directory")


async def grant(producer: Producer, user_id: str, *, admin: bool = False) -> None:
    await producer.send(DIRECTORY_EVENTS, directory_event("crm.user.licence-granted", user_id=user_id, licence="crm"), key=user_id)
    if admin:
        await producer.send(DIRECTORY_EVENTS, directory_event("crm.user.role-granted", user_id=user_id, role="admin"), key=user_id)


def payload(type_name: str, **data):
    return payload_class(type_name).model_validate(data)
