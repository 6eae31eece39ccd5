"""HTTP transports (sync and async) with auth, error mapping and retries.

Only idempotent requests (GET, HEAD, PUT, DELETE) are retried, on connection failures and on 502,
503 and 504, with jittered exponential backoff; a POST is sent once, so a retry can never run a
command twice or create two sandboxes.
"""

from __future__ import annotations

import asyncio
import functools
import random
import ssl
import time
from contextlib import asynccontextmanager, contextmanager
from typing import Any, AsyncIterator, Iterator, Optional

import httpx

from . import errors
from ._config import resolve_token, resolve_url
from ._protocol import IDEMPOTENT, Request

RETRY_STATUSES = frozenset({502, 503, 504})
DEFAULT_TIMEOUT = 60.0


@functools.lru_cache(maxsize=None)
def _ssl_context(https: bool) -> ssl.SSLContext:
    """One TLS context per process: building one (loading the CA bundle) costs ~20 ms, which
    httpx would otherwise pay on every client, i.e. on every ``Sandbox.create``. A plain-HTTP
    gateway (``paddock serve`` on loopback) never uses it, so it gets a bare one."""
    return ssl.create_default_context() if https else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _backoff(attempt: int) -> float:
    return min(2.0, 0.1 * (2**attempt)) * (0.5 + random.random() / 2)


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body: Any = response.json()
    except ValueError:
        body = {"message": response.text[:500] or response.reason_phrase}
    raise errors.from_response(response.status_code, body)


def _connection_error(url: str, exc: Exception) -> errors.ConnectionFailed:
    return errors.ConnectionFailed(
        f"cannot reach the paddock gateway at {url} ({exc}); start it with `paddock serve`, or set PADDOCK_URL"
    )


class _Base:
    def __init__(self, url: Optional[str], token: Optional[str], retries: int) -> None:
        self.url = resolve_url(url)
        self.retries = retries
        token = resolve_token(token)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.verify = _ssl_context(self.url.startswith("https:"))

    def _build(self, client, req: Request):
        headers = dict(req.headers)
        return client.build_request(
            req.method,
            req.path,
            params=req.params or None,
            json=req.json,
            content=req.content,
            headers=headers,
            timeout=req.timeout if req.timeout is not None else DEFAULT_TIMEOUT,
        )


class SyncTransport(_Base):
    """Blocking transport on an ``httpx.Client`` (connection reuse, keep-alive)."""

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None, retries: int = 3) -> None:
        super().__init__(url, token, retries)
        self.client = httpx.Client(base_url=self.url, headers=self.headers, timeout=DEFAULT_TIMEOUT, verify=self.verify)

    def close(self) -> None:
        self.client.close()

    def send(self, req: Request) -> httpx.Response:
        attempts = self.retries + 1 if req.method in IDEMPOTENT else 1
        for attempt in range(attempts):
            try:
                response = self.client.send(self._build(self.client, req))
            except httpx.TransportError as exc:
                if attempt + 1 < attempts:
                    time.sleep(_backoff(attempt))
                    continue
                raise _connection_error(self.url, exc) from exc
            if response.status_code in RETRY_STATUSES and attempt + 1 < attempts:
                time.sleep(_backoff(attempt))
                continue
            _raise_for(response)
            return response
        raise AssertionError("unreachable")

    def json(self, req: Request) -> Any:
        response = self.send(req)
        return response.json() if response.content else None

    @contextmanager
    def stream(self, req: Request) -> Iterator[httpx.Response]:
        try:
            with self.client.stream(req.method, req.path, params=req.params or None, json=req.json, content=req.content, headers=req.headers, timeout=req.timeout or None) as response:
                if not response.is_success:
                    response.read()
                    _raise_for(response)
                yield response
        except httpx.TransportError as exc:
            raise _connection_error(self.url, exc) from exc


class AsyncTransport(_Base):
    """Asyncio transport on an ``httpx.AsyncClient``."""

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None, retries: int = 3) -> None:
        super().__init__(url, token, retries)
        self.client = httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=DEFAULT_TIMEOUT, verify=self.verify)

    async def close(self) -> None:
        await self.client.aclose()

    async def send(self, req: Request) -> httpx.Response:
        attempts = self.retries + 1 if req.method in IDEMPOTENT else 1
        for attempt in range(attempts):
            try:
                response = await self.client.send(self._build(self.client, req))
            except httpx.TransportError as exc:
                if attempt + 1 < attempts:
                    await asyncio.sleep(_backoff(attempt))
                    continue
                raise _connection_error(self.url, exc) from exc
            if response.status_code in RETRY_STATUSES and attempt + 1 < attempts:
                await asyncio.sleep(_backoff(attempt))
                continue
            _raise_for(response)
            return response
        raise AssertionError("unreachable")

    async def json(self, req: Request) -> Any:
        response = await self.send(req)
        return response.json() if response.content else None

    @asynccontextmanager
    async def stream(self, req: Request) -> AsyncIterator[httpx.Response]:
        try:
            async with self.client.stream(req.method, req.path, params=req.params or None, json=req.json, content=req.content, headers=req.headers, timeout=req.timeout or None) as response:
                if not response.is_success:
                    await response.aread()
                    _raise_for(response)
                yield response
        except httpx.TransportError as exc:
            raise _connection_error(self.url, exc) from exc
