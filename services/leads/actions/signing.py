"""Webhook signatures: ``CRM-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>``."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "CRM-Signature"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The header value signing ``body`` at ``timestamp`` with ``secret``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, now: int, tolerance_s: int = 300) -> bool:
    """What a receiver does: the signature matches and its time is within ``tolerance_s`` of ``now`` (replays refused)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), f"t={timestamp},v1={parts.get('v1', '')}")
