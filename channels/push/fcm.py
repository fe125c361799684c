"""App push through Firebase Cloud Messaging HTTP v1: one request per token, OAuth2 from a service account.

The access token comes from the service account's key: a JWT assertion signed with its private key
(RS256) is exchanged at its token URI, and kept until shortly before it expires. An UNREGISTERED
answer means the app is gone from that device: the token is dropped and the next channel takes over.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from broadcast.core.models import ChannelKind
from broadcast.core.settings import Settings
from channels.base import (
    UNREGISTERED,
    Channel,
    Gate,
    OutboundMessage,
    Outcome,
    SendResult,
    classify_http,
    send_concurrently,
)

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SIMULATOR_PROJECT = "broadcast-simulator"

# FCM errorCode (or HTTP status) → outcome
ERROR_OUTCOMES: dict[str, Outcome] = {
    "UNREGISTERED": Outcome.permanent,
    "INVALID_ARGUMENT": Outcome.permanent,
    "SENDER_ID_MISMATCH": Outcome.permanent,
    "QUOTA_EXCEEDED": Outcome.throttled,
    "UNAVAILABLE": Outcome.retryable,
    "INTERNAL": Outcome.retryable,
    "THIRD_PARTY_AUTH_ERROR": Outcome.bad_config,
    "PERMISSION_DENIED": Outcome.bad_config,
}


@dataclass(frozen=True)
class ServiceAccount:
    project_id: str
    client_email: str
    private_key: str
    private_key_id: str
    token_uri: str

    @classmethod
    def load(cls, path: Path) -> ServiceAccount:
        data = json.loads(path.read_text())
        return cls(
            data["project_id"],
            data["client_email"],
            data["private_key"],
            data.get("private_key_id", ""),
            data["token_uri"],
        )

    def assertion(self, now: float) -> str:
        """The signed JWT exchanged for an access token."""
        claims = {
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": int(now),
            "exp": int(now) + 3600,
        }
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.private_key_id})

    def __repr__(self) -> str:  # the private key never reaches a log
        return f"ServiceAccount(project_id={self.project_id!r}, client_email={self.client_email!r})"


def simulator_service_account(settings: Settings) -> Path:
    """A service-account key for the local simulator, made once under the data directory and shared."""
    directory = settings.data_dir.resolve() / "simulators"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fcm-service-account.json"
    with open(directory / "fcm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists() and json.loads(path.read_text()).get("token_uri") == f"{settings.simulator_url}/token":
            return path
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        document = {
            "type": "service_account",
            "project_id": SIMULATOR_PROJECT,
            "private_key_id": "simulator",
            "private_key": pem.decode(),
            "client_email": f"broadcast@{SIMULATOR_PROJECT}.iam.gserviceaccount.com",
            "token_uri": f"{settings.simulator_url}/token",
        }
        path.write_text(json.dumps(document))
        path.chmod(0o600)
    return path


def service_account(settings: Settings) -> ServiceAccount:
    return ServiceAccount.load(settings.fcm_service_account_file or simulator_service_account(settings))


# Access tokens by service account, shared by every batch this process sends: one exchange an hour.
_tokens: dict[str, tuple[str, float]] = {}


class FCM(Channel):
    name = "fcm"
    kind = ChannelKind.push

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.simulated = settings.fcm_service_account_file is None
        self.api_base = settings.simulator_url if self.simulated else settings.fcm_api_base
        self._account: ServiceAccount | None = None
        self._session: aiohttp.ClientSession | None = None
        self._token_lock = asyncio.Lock()

    @classmethod
    def configuration_problems(cls, settings: Settings) -> list[str]:
        path = settings.fcm_service_account_file
        if path is None:
            return []
        try:
            ServiceAccount.load(path)
        except (OSError, ValueError, KeyError) as exc:
            return [f"BROADCAST_FCM_SERVICE_ACCOUNT_FILE {path} is not a usable service-account key ({exc})"]
        return []

    def rate_limit(self) -> tuple[str, float, float] | None:
        rate = self.settings.push_rate_per_second
        return (f"fcm:{self.account.project_id}", rate, max(1.0, rate / 20) if rate > 0 else 0.0)

    @property
    def account(self) -> ServiceAccount:
        if self._account is None:
            self._account = service_account(self.settings)
        return self._account

    async def __aenter__(self) -> FCM:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.send_timeout_seconds))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def access_token(self, renew: bool = False) -> str:
        """A valid OAuth2 access token, fetched when missing, expiring or refused."""
        async with self._token_lock:
            cached = _tokens.get(self.account.token_uri + self.account.client_email)
            if cached and not renew and cached[1] > time.time() + 60:
                return cached[0]
            assert self._session is not None
            form = {"grant_type": JWT_BEARER, "assertion": self.account.assertion(time.time())}
            async with self._session.post(self.account.token_uri, data=form) as response:
                payload = await response.json(content_type=None)
                if response.status != 200 or "access_token" not in payload:
                    raise PermissionError(f"the token endpoint refused the service account ({response.status})")
            token = str(payload["access_token"])
            _tokens[self.account.token_uri + self.account.client_email] = (
                token,
                time.time() + float(payload.get("expires_in", 3600)),
            )
            return token

    def payload(self, message: OutboundMessage) -> dict[str, Any]:
        """The v1 message for one token; data values are strings, as FCM requires."""
        data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in dict(message.extra.get("data", {})).items()}
        ttl = message.validity_seconds or 86400
        return {
            "message": {
                "token": message.address,
                "notification": {"title": str(message.extra.get("title", "")), "body": message.text},
                "data": data,
                "android": {"priority": "HIGH", "ttl": f"{ttl}s"},
                "apns": {
                    "headers": {"apns-priority": "10", "apns-expiration": str(int(time.time()) + ttl)},
                    "payload": {"aps": {"sound": "default"}},
                },
            }
        }

    async def _send_one(self, message: OutboundMessage) -> SendResult:
        assert self._session is not None, "use the channel as an async context manager"
        url = f"{self.api_base}/v1/projects/{self.account.project_id}/messages:send"
        try:
            for attempt in range(2):
                token = await self.access_token(renew=attempt > 0)
                headers = {"Authorization": f"Bearer {token}"}
                async with self._session.post(url, json=self.payload(message), headers=headers) as response:
                    body = await response.json(content_type=None)
                    if response.status != 401:
                        break
        except PermissionError as exc:
            return SendResult(message.ordinal, Outcome.bad_config, detail=str(exc))
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            return SendResult(message.ordinal, Outcome.retryable, detail=f"{type(exc).__name__}: {exc}")
        if response.status == 200:
            return SendResult(message.ordinal, Outcome.accepted, provider_ref=str(body.get("name", "")))
        return self._refused(message, response.status, body)

    @staticmethod
    def _refused(message: OutboundMessage, status: int, body: Any) -> SendResult:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        details = error.get("details", []) if isinstance(error, dict) else []
        code = next((d.get("errorCode") for d in details if isinstance(d, dict) and "errorCode" in d), None)
        code = code or (error.get("status") if isinstance(error, dict) else None)
        outcome = ERROR_OUTCOMES[code] if code in ERROR_OUTCOMES else classify_http(status)
        recorded = UNREGISTERED if code == "UNREGISTERED" else status
        return SendResult(message.ordinal, outcome, error_code=recorded, detail=f"{status} {code}")

    def send(self, messages: Sequence[OutboundMessage], gate: Gate) -> AsyncIterator[SendResult]:
        return send_concurrently(messages, self._send_one, gate, self.settings.send_concurrency)
