"""Signed tokens: what a resident's app, link or a volunteer presents instead of a login.

Every token is an HMAC-SHA256 over a purpose and its fields, with the service's secret, so a
token for one purpose or one alert is worthless for any other.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def mac(secret: bytes, purpose: str, *fields: str, length: int = 22) -> str:
    """A URL-safe MAC of ``fields`` for ``purpose``, ``length`` characters long."""
    message = "\x1f".join((purpose, *fields)).encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:length]


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def app_ack_token(secret: bytes, alert_id: str, ordinal: int) -> str:
    """The key one recipient's push notification carries, so their app can confirm that alert for them
    alone: it names their ordinal and is worth nothing for anyone else's."""
    return f"{ordinal}.{mac(secret, 'app-ack', alert_id, str(ordinal))}"


def read_app_ack(secret: bytes, alert_id: str, token: str) -> int | None:
    """The ordinal an app's key was made for, or None if it was not made for this alert."""
    ordinal, _, tag = token.partition(".")
    if not (ordinal.isascii() and ordinal.isdigit() and len(ordinal) <= 10 and tag):
        return None
    return int(ordinal) if same(mac(secret, "app-ack", alert_id, str(int(ordinal))), tag) else None


# A resident's confirmation link names (alert, ordinal) and carries 40 bits of MAC: 12 bytes,
# 16 URL-safe characters. Alert ids must fit 24 bits and ordinals 32.
_LINK_MAC_BYTES = 5
LINK_TOKEN_LENGTH = 16


def link_token(secret: bytes, alert_id: str, ordinal: int) -> str:
    """The token of one recipient's confirmation link."""
    number = int(alert_id)
    if not (0 <= number < 1 << 24 and 0 <= ordinal < 1 << 32):
        raise ValueError(f"alert {alert_id} / ordinal {ordinal} do not fit a link token")
    body = number.to_bytes(3, "big") + ordinal.to_bytes(4, "big")
    tag = hmac.digest(secret, b"link\x1f" + body, "sha256")[:_LINK_MAC_BYTES]  # one call, one per message sent
    return base64.urlsafe_b64encode(body + tag).decode()


def read_link_token(secret: bytes, token: str) -> tuple[str, int] | None:
    """The (alert, ordinal) a link token names, or None if it was not made with this secret."""
    if len(token) != LINK_TOKEN_LENGTH:
        return None
    try:
        raw = base64.urlsafe_b64decode(token.encode())
    except ValueError:
        return None
    body, tag = raw[:7], raw[7:]
    expected = hmac.new(secret, b"link\x1f" + body, hashlib.sha256).digest()[:_LINK_MAC_BYTES]
    if len(raw) != 12 or not hmac.compare_digest(tag, expected):
        return None
    return str(int.from_bytes(body[:3], "big")), int.from_bytes(body[3:], "big")


def volunteer_token(secret: bytes, volunteer_id: str, alert_id: str) -> str:
    """The token of a volunteer's work-list link for one alert."""
    return f"{alert_id}.{volunteer_id}.{mac(secret, 'volunteer', alert_id, volunteer_id)}"


def read_volunteer_token(secret: bytes, token: str) -> tuple[str, str] | None:
    """(alert, volunteer) named by a work-list token, or None if it is forged."""
    alert_id, _, rest = token.partition(".")
    volunteer_id, _, tag = rest.rpartition(".")
    if not (alert_id.isdigit() and volunteer_id and tag):
        return None
    return (alert_id, volunteer_id) if same(mac(secret, "volunteer", alert_id, volunteer_id), tag) else None
