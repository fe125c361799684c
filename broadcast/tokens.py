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


def app_ack_token(secret: bytes, alert_id: str) -> str:
    """The key a push notification carries so the app can confirm that alert."""
    return mac(secret, "app-ack", alert_id)


def verify_app_ack(secret: bytes, alert_id: str, token: str) -> bool:
    return same(app_ack_token(secret, alert_id), token)
