"""A small HTTP client for OpenAI-compatible servers: timeouts, retries with backoff, clear errors.

Retries: on 429 and 5xx answers and on connection failures, up to ``max_retries`` more tries with
exponential backoff (0.25 s, 0.5 s, 1 s, ...; a ``Retry-After`` header is honoured up to 10 s).
Every failure becomes a :class:`~nextword.NextwordError` naming the URL; the API key is sent as a
bearer token and never appears in a message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx

from nextword import ContextLengthExceeded, EngineError, InvalidInput

__all__ = ["Client", "ServerError"]


class ServerError(EngineError):
    """The server refused or failed a request that nextword had checked (its status and message)."""

    def __init__(self, message: str, *, status: int = 0, url: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.url = url


class Client:
    """JSON over HTTP to one server (``base_url`` ends with ``/v1`` for OpenAI's paths)."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float, max_retries: int) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InvalidInput(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        self.root_url = root
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(headers=headers, timeout=timeout)
        self._max_retries = max_retries

    def close(self) -> None:
        self._http.close()

    def url(self, path: str) -> str:
        """``/v1/...`` paths hang off ``base_url``; other absolute paths off the server's root."""
        if path.startswith("/v1/"):
            return self.base_url + path[3:]
        return self.root_url + path

    def get(self, path: str) -> Any:
        return self._request("GET", path, None)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("POST", path, body)

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        url = self.url(path)
        for attempt in range(self._max_retries + 1):
            try:
                response = self._http.request(method, url, json=body)
            except httpx.TimeoutException as exc:
                if attempt < self._max_retries:
                    self._sleep(attempt, None)
                    continue
                raise ServerError(f"{method} {url} timed out ({type(exc).__name__})", url=url) from None
            except httpx.HTTPError as exc:
                if attempt < self._max_retries:
                    self._sleep(attempt, None)
                    continue
                raise ServerError(f"cannot reach {url}: {exc}", url=url) from None
            if response.status_code == 429 or response.status_code >= 500:
                if attempt < self._max_retries:
                    self._sleep(attempt, response.headers.get("retry-after"))
                    continue
            return self._result(method, url, response)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _sleep(attempt: int, retry_after: str | None) -> None:
        delay = 0.25 * 2**attempt
        if retry_after is not None:
            try:
                delay = min(10.0, max(delay, float(retry_after)))
            except ValueError:
                pass
        time.sleep(delay)

    @staticmethod
    def _result(method: str, url: str, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            message = _error_message(response)
            if "context" in message.lower() and response.status_code == 400:
                raise ContextLengthExceeded(f"{url}: {message}")
            raise ServerError(
                f"{method} {url} failed with HTTP {response.status_code}: {message}",
                status=response.status_code,
                url=url,
            )
        try:
            return response.json()
        except ValueError:
            raise ServerError(f"{method} {url} answered with something that is not JSON", url=url) from None

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The JSON events of a server-sent-event response (``[DONE]`` ends it). Connection
        failures before the first event are retried like other requests."""
        url = self.url(path)
        for attempt in range(self._max_retries + 1):
            try:
                with self._http.stream("POST", url, json=body) as response:
                    if (response.status_code == 429 or response.status_code >= 500) and attempt < self._max_retries:
                        self._sleep(attempt, response.headers.get("retry-after"))
                        continue
                    if response.status_code >= 400:
                        response.read()
                        self._result("POST", url, response)
                    for line in response.iter_lines():
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            return
                        event = json.loads(data)
                        if isinstance(event, dict) and "error" in event:
                            raise ServerError(f"POST {url} failed while streaming: {_message_of(event)}", url=url)
                        yield event
                    return
            except httpx.HTTPError as exc:
                if attempt < self._max_retries:
                    self._sleep(attempt, None)
                    continue
                raise ServerError(f"cannot reach {url}: {exc}", url=url) from None
            except ValueError as exc:
                raise ServerError(f"POST {url} sent an event that is not JSON: {exc}", url=url) from None


def _message_of(data: Any) -> str:
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err)
        if "detail" in data:
            return str(data["detail"])
        return str(err)
    return str(data)


def _error_message(response: httpx.Response) -> str:
    try:
        return _message_of(response.json())[:500]
    except ValueError:
        return response.text[:500]
