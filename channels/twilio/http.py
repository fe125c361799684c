"""The HTTP client our Twilio channels give the twilio library: its asyncio client, lighter per request.

twilio's ``AsyncTwilioHttpClient`` turns every request's form into an aiohttp ``FormData`` (a
multipart writer with a fresh random boundary, then thrown away), builds the Basic credentials
again, keeps a copy of each request and response for its own tests, and logs each request's URL
and headers line by line. At thousands of messages a second that is a third of the client's time.
This subclass encodes the form itself (see form_encode), sends credentials computed once, and logs nothing per request
(a message's URL names the recipient's alert and ordinal; logs are no place for that). What it
returns is the library's own ``Response``, so the library parses answers and raises its own errors.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote_plus

import aiohttp
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response

FORM = "application/x-www-form-urlencoded"


def form_encode(data: dict[str, object]) -> bytes:
    """application/x-www-form-urlencoded, as urlencode does it, but a value that is not ASCII (a
    Chinese message) is percent-encoded byte for byte in C rather than by urllib's per-byte loop,
    which took a tenth of a message's time. Escaping a character that needs none is allowed by the
    form encoding, and every decoder reads it back the same."""
    fields = []
    for key, value in data.items():
        for item in value if isinstance(value, list | tuple) else (value,):
            text = str(item)
            if text.isascii():
                encoded = quote_plus(text)
            else:
                raw = text.encode()
                encoded = "%" + raw.hex("%").upper()
            fields.append(f"{quote_plus(str(key))}={encoded}")
    return "&".join(fields).encode()


def basic_authorization(username: str, password: str) -> str:
    """The Authorization header of HTTP Basic authentication."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class TwilioHttpClient(AsyncTwilioHttpClient):
    """twilio's asyncio client on our session, for one account's credentials."""

    def __init__(self, session: aiohttp.ClientSession, username: str, password: str) -> None:
        super().__init__(pool_connections=False)
        self.session = session
        self._credentials = (username, password)
        self._authorization = basic_authorization(username, password)

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Make one request; the library's Response (status, text, headers)."""
        if timeout is not None and timeout <= 0:
            raise ValueError(timeout)
        sent_headers = dict(headers or {})
        if auth is None or tuple(auth) == self._credentials:
            sent_headers["Authorization"] = self._authorization
        else:
            sent_headers["Authorization"] = basic_authorization(*auth)
        body = None
        if data:
            body = form_encode(data)
            sent_headers.setdefault("Content-Type", FORM)
        assert isinstance(self.session, aiohttp.ClientSession)
        # Without a timeout of its own, the request keeps the session's (aiohttp takes None as "never").
        extra: dict[str, Any] = {"timeout": aiohttp.ClientTimeout(total=timeout)} if timeout else {}
        async with self.session.request(
            method.upper(),
            url,
            params=params,  # type: ignore[arg-type]
            data=body,
            headers=sent_headers,
            allow_redirects=allow_redirects,
            **extra,
        ) as response:
            raw = await response.read()
            return Response(response.status, raw.decode(response.charset or "utf-8", "replace"), response.headers)
