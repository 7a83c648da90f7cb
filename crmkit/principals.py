"""Who may act: CRM licences, roles and groups projected from the directory topic, shared by every service."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from contracts import Envelope

CRM_LICENCE = "crm"
ADMIN_ROLE = "admin"

_GRANTS = {
    "crm.user.licence-granted": ("$addToSet", "licences", "licence"),
    "crm.user.licence-revoked": ("$pull", "licences", "licence"),
    "crm.user.role-granted": ("$addToSet", "roles", "role"),
    "crm.user.role-revoked": ("$pull", "roles", "role"),
    "crm.user.group-granted": ("$addToSet", "groups", "group"),
    "crm.user.group-revoked": ("$pull", "groups", "group"),
}


@dataclass(frozen=True)
class Principal:
    """A user as far as access checks go (``service``: one of the deployment's trusted system actors)."""

    user_id: str
    licences: frozenset[str] = field(default_factory=frozenset)
    roles: frozenset[str] = field(default_factory=frozenset)
    service: bool = False
    groups: frozenset[str] = field(default_factory=frozenset)

    @property
    def licensed(self) -> bool:
        return self.service or CRM_LICENCE in self.licences

    @property
    def is_admin(self) -> bool:
        return self.service or ADMIN_ROLE in self.roles


class PrincipalRepository:
    """Licences, roles and groups per user id, in the service's own ``principals`` collection."""

    def __init__(self, db: AsyncDatabase, service_principals: Iterable[str]) -> None:
        self._col = db["principals"]
        self._services = frozenset(service_principals)
        self.writes = 0  # bumped after each apply: a reader keeping principals knows its copy may be old

    @staticmethod
    def handles(message_type: str) -> bool:
        return message_type in _GRANTS

    async def apply(self, messages: Sequence[Envelope]) -> None:
        """Apply grants and revocations in order; set semantics make a replay harmless."""
        ops = []
        for message in messages:
            rule = _GRANTS.get(message.type)
            if rule is None:
                continue
            op, array, attr = rule
            ops.append(
                UpdateOne(
                    {"_id": message.data.user_id},
                    {op: {array: getattr(message.data, attr)}, "$setOnInsert": {"created_from": message.id}},
                    upsert=True,
                )
            )
        if ops:
            try:
                await self._col.bulk_write(ops, ordered=True)
            finally:
                self.writes += 1

    async def get_many(self, user_ids: Iterable[str]) -> dict[str, Principal]:
        ids = {u for u in user_ids if u}
        found: dict[str, Principal] = {}
        if ids - self._services:
            async for doc in self._col.find({"_id": {"$in": sorted(ids - self._services)}}):
                found[doc["_id"]] = Principal(
                    doc["_id"], frozenset(doc.get("licences") or ()), frozenset(doc.get("roles") or ()),
                    groups=frozenset(doc.get("groups") or ()),
                )
        for user_id in ids:
            if user_id in self._services:
                found[user_id] = Principal(user_id, service=True)
            elif user_id not in found:
                found[user_id] = Principal(user_id)
        return found

    async def get(self, user_id: str | None) -> Principal:
        """The user's licences and roles; a blank or missing id is nobody: no licence, no role."""
        return (await self.get_many([user_id or ""])).get(user_id or "") or Principal(user_id or "")
