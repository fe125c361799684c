"""The Twilio account a deployment sends through, and Twilio's webhook signature.

Without real credentials every process uses the local simulator's account: same SID and address
everywhere, and an auth token derived from the deployment's secret (``BROADCAST_SECRET_KEY``, or
the one kept in Redis), so a ``broadcast serve`` and any number of ``broadcast worker`` processes
agree without configuration while nobody outside the deployment can sign a webhook. Simulated
webhooks are accepted only while the service is reachable on loopback alone, unless
``BROADCAST_SIMULATOR_WEBHOOKS_PUBLIC`` says otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urlparse

from multidict import MultiDict
from twilio.request_validator import RequestValidator

from broadcast.core.settings import Settings
from broadcast.core.tokens import mac

SIMULATOR_ACCOUNT_SID = "AC" + "5e" * 16
# A process that does not know the deployment's secret signs, and accepts, nothing anyone else can.
_UNSHARED_SECRET = secrets.token_bytes(32)
SIMULATOR_FROM = "+8610691234"
SIGNATURE_HEADER = "X-Twilio-Signature"


@dataclass(frozen=True)
class TwilioAccount:
    sid: str
    auth_token: str
    api_base: str
    sender: str | None  # From number
    messaging_service_sid: str | None
    simulated: bool

    def __repr__(self) -> str:  # the token never reaches a log
        return f"TwilioAccount(sid={self.sid!r}, api_base={self.api_base!r}, simulated={self.simulated})"


def simulator_auth_token(secret: bytes) -> str:
    """The simulated account's auth token for the deployment whose secret this is."""
    return mac(secret, "twilio-simulator", length=32)


def loopback_only(settings: Settings) -> bool:
    """True when the service listens on, and is announced at, this machine's loopback alone."""
    for host in (settings.host, urlparse(settings.public_url).hostname or ""):
        try:
            if not (host == "localhost" or ipaddress.ip_address(host).is_loopback):
                return False
        except ValueError:
            return False
    return True


def twilio_account(settings: Settings) -> TwilioAccount:
    """The configured account, or the simulator's when no credentials are set."""
    if settings.twilio_configured:
        assert settings.twilio_account_sid and settings.twilio_auth_token
        return TwilioAccount(
            sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            api_base=settings.twilio_api_base,
            sender=settings.twilio_from,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            simulated=False,
        )
    secret = settings.secret_key.get_secret_value().encode() if settings.secret_key else _UNSHARED_SECRET
    return TwilioAccount(
        sid=SIMULATOR_ACCOUNT_SID,
        auth_token=simulator_auth_token(secret),
        api_base=settings.simulator_url,
        sender=settings.twilio_from or SIMULATOR_FROM,
        messaging_service_sid=settings.twilio_messaging_service_sid,
        simulated=True,
    )


def configuration_problems(settings: Settings) -> list[str]:
    """What stops Twilio from working with these settings."""
    problems = []
    if settings.twilio_account_sid and not settings.twilio_auth_token:
        problems.append("BROADCAST_TWILIO_AUTH_TOKEN is required with BROADCAST_TWILIO_ACCOUNT_SID")
    if settings.twilio_auth_token and not settings.twilio_account_sid:
        problems.append("BROADCAST_TWILIO_ACCOUNT_SID is required with BROADCAST_TWILIO_AUTH_TOKEN")
    if settings.twilio_configured and not (settings.twilio_from or settings.twilio_messaging_service_sid):
        problems.append("set BROADCAST_TWILIO_FROM or BROADCAST_TWILIO_MESSAGING_SERVICE_SID to send through Twilio")
    sid = settings.twilio_account_sid
    if sid and not (sid.startswith("AC") and len(sid) == 34):
        problems.append("BROADCAST_TWILIO_ACCOUNT_SID must look like AC followed by 32 hex digits")
    return problems


def callback_url(settings: Settings, path: str, alert_id: str, ordinal: int, round_: int = 0, **extra: str) -> str:
    """A webhook URL we give Twilio for one message or call: it names the alert, the ordinal and the
    escalation round (``?a=…&o=…&r=…``, under Twilio's signature), and ends with the connection
    overrides that ask Twilio to retry when we cannot answer (``#rc=5&rp=all``)."""
    query: dict[str, str | int] = {"a": alert_id, "o": ordinal}
    if round_:
        query["r"] = round_
    query.update(extra)
    return with_overrides(f"{settings.public_url}{path}?{urlencode(query)}", settings)


def with_overrides(url: str, settings: Settings) -> str:
    """``url`` with the configured connection overrides as its fragment (none when they are unset)."""
    overrides = settings.twilio_webhook_overrides
    return f"{url}#{overrides}" if overrides else url


def signed_forms(url: str, settings: Settings) -> list[str]:
    """The URLs a request to ``url`` may have been signed for: Twilio does not send the fragment that
    carries the connection overrides, and does not say whether it signs with it; either is accepted."""
    return [url, with_overrides(url, settings)] if settings.twilio_webhook_overrides else [url]


def sign(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature for a form POST: HMAC-SHA1 over the URL and the sorted parameters."""
    payload = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify(auth_token: str, urls: Sequence[str], params: Mapping[str, str], signature: str | None) -> bool:
    """True when ``signature`` is Twilio's for this request at one of ``urls`` (checked with Twilio's
    own validator): the forms of the one URL it may have been signed for."""
    if not signature:
        return False
    # Signed for exactly a URL we were called at: the case of every request Twilio makes to a
    # configured public URL, decided with one HMAC a form. Anything else (a port Twilio added or left
    # out, a body hash) is for Twilio's validator, which tries both forms of the URL; since the exact
    # URL is always one of them, this accepts nothing the validator would refuse.
    if any(hmac.compare_digest(sign(auth_token, url, params), signature) for url in urls):
        return True
    # A MultiDict, not a dict: the validator asks each parameter for its values with getall() and
    # falls back to a dict only through two exceptions per parameter, a third of a webhook's time.
    validator = RequestValidator(auth_token)
    return any(validator.validate(url, MultiDict(params), signature) for url in urls)
