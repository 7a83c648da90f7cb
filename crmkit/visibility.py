"""Who sees what is shown to some groups and roles only (pure: a domain may use it)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class Viewer(Protocol):
    """Who reads or acts, as far as visibility goes: a ``Principal``, or a service's own actor model."""

    @property
    def is_admin(self) -> bool: ...
    @property
    def roles(self) -> frozenset[str]: ...
    @property
    def groups(self) -> frozenset[str]: ...


def sees(viewer: Viewer, groups: Iterable[str], roles: Iterable[str]) -> bool:
    """Whether ``viewer`` sees what is shown to ``groups`` and ``roles`` only (neither named: every licensed user).

    Administrators and the deployment's service actors see everything.
    """
    groups, roles = frozenset(groups), frozenset(roles)
    if not groups and not roles:
        return True
    if viewer.is_admin or getattr(viewer, "service", False):
        return True
    return bool(groups & viewer.groups) or bool(roles & viewer.roles)
