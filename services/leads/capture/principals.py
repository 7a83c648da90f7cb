"""The capture form as an actor: licensed while the form exists, so its submissions pass the licence check."""

from __future__ import annotations

from collections.abc import Iterable

from crmkit.principals import CRM_LICENCE, Principal, PrincipalRepository
from services.leads.capture.repository import CaptureFormRepository
from services.leads.domain.capture import FORM_ACTOR_PREFIX


class FormAwarePrincipals(PrincipalRepository):
    """Users from the directory topic, and `capture-form:<id>` actors holding the CRM licence while the form lives.

    A form has no role: it can do what a licensed user without roles can, and the leads handlers
    admit it for crm.lead.create only. A deleted form's queued submissions are refused `not_licensed`.
    """

    def __init__(self, users: PrincipalRepository, forms: CaptureFormRepository) -> None:
        self._users = users
        self._forms = forms

    def __getattr__(self, name: str):  # the rest of the user repository (apply, handles) as it is
        return getattr(self._users, name)

    async def apply(self, messages) -> None:
        await self._users.apply(messages)

    async def get_many(self, user_ids: Iterable[str]) -> dict[str, Principal]:
        ids = {u for u in user_ids if u}
        form_actors = {u for u in ids if u.startswith(FORM_ACTOR_PREFIX)}
        found = await self._users.get_many(ids - form_actors) if ids - form_actors else {}
        live = await self._forms.live_ids(sorted(a[len(FORM_ACTOR_PREFIX):] for a in form_actors))
        for actor in form_actors:
            licensed = actor[len(FORM_ACTOR_PREFIX):] in live
            found[actor] = Principal(actor, frozenset({CRM_LICENCE}) if licensed else frozenset())
        return found

    async def get(self, user_id: str | None) -> Principal:
        return (await self.get_many([user_id or ""])).get(user_id or "") or Principal(user_id or "")
