"""Webhook signing secrets sealed at rest with the deployment's keys, so a copy of the database signs nothing."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

# A sealed secret as stored: this prefix, then a Fernet token (AES-128-CBC with HMAC-SHA256, from the
# `cryptography` package). A stored value without it was stored before keys were set, as given.
SEALED = "sealed:fernet:"


class SecretUnreadable(Exception):
    """A stored secret no configured key opens."""


class Sealer:
    """Seals with the first key, opens with any: rotating is putting the new key first and keeping the old one
    until the service has resealed what it stores (at start)."""

    def __init__(self, keys: Sequence[str] = ()) -> None:
        try:
            fernets = [Fernet(k.encode()) for k in keys]
        except ValueError as exc:
            raise ValueError(
                "LEADS_SECRETS_KEYS: each key must be 32 bytes of url-safe base64 "
                "(make one with `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
            ) from exc
        self._primary = fernets[0] if fernets else None
        self._fernet = MultiFernet(fernets) if fernets else None

    @property
    def sealing(self) -> bool:
        return self._fernet is not None

    def seal(self, secret: str | None) -> str | None:
        """What to store for ``secret``: sealed when keys are set, else as given."""
        if secret is None or self._fernet is None:
            return secret
        return SEALED + self._fernet.encrypt(secret.encode()).decode()

    def open(self, stored: str | None) -> str | None:
        """The secret a stored value holds; SecretUnreadable when it is sealed and no key opens it."""
        if stored is None or not stored.startswith(SEALED):
            return stored
        if self._fernet is None:
            raise SecretUnreadable("a webhook secret is sealed and LEADS_SECRETS_KEYS is empty: set the key it was sealed with")
        try:
            return self._fernet.decrypt(stored[len(SEALED):].encode()).decode()
        except InvalidToken:
            raise SecretUnreadable(
                "no key of LEADS_SECRETS_KEYS opens a stored webhook secret: keep the key it was sealed with "
                "after the new one until the service has started with both"
            ) from None

    def reseal(self, stored: str | None) -> str | None:
        """``stored`` sealed with the first key (a plain one sealed, one of an older key rotated); None when it already is."""
        if stored is None or self._fernet is None:
            return None
        if not stored.startswith(SEALED):
            return self.seal(stored)
        token = stored[len(SEALED):].encode()
        self.open(stored)  # unreadable: say so, before anything is rewritten
        try:
            self._primary.decrypt(token)
            return None
        except InvalidToken:
            return SEALED + self._fernet.rotate(token).decode()
