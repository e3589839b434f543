"""Errors of the HTTP server, in OpenAI's error JSON with the matching HTTP status."""

from __future__ import annotations

from typing import Any

from nextword.errors import (
    ContextLengthExceeded,
    EngineError,
    InvalidConfig,
    InvalidInput,
    NextwordError,
    UnsupportedOption,
)

__all__ = ["RequestError", "error_body", "from_exception"]


class RequestError(Exception):
    """A request the server refuses: HTTP ``status``, OpenAI error ``type``, offending ``param``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.reason = reason or code or ("server_error" if status >= 500 else "invalid_request")
        """What ``/metrics`` counts the refusal under (a limit's name, ``queue_full``, ...)."""
        self.headers = headers or {}
        """Extra response headers (``Retry-After`` on a 503)."""

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI's API returns for an error."""
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def from_exception(exc: BaseException) -> RequestError:
    """The :class:`RequestError` for an exception raised while serving a request: nextword's
    input and option errors are the client's (400), engine failures and anything unexpected the
    server's (500)."""
    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, RecursionError):
        return RequestError(400, "the request is nested too deeply", code="limit_exceeded", reason="max_json_depth")
    if isinstance(exc, ContextLengthExceeded):
        return RequestError(400, str(exc), code="context_length_exceeded", param="prompt")
    if isinstance(exc, UnsupportedOption):
        return RequestError(400, str(exc), param=exc.option or None, code="unsupported_option")
    if isinstance(exc, (InvalidConfig, InvalidInput)):
        return RequestError(400, str(exc))
    if isinstance(exc, EngineError):
        return RequestError(500, f"the engine failed: {exc}", type="server_error")
    if isinstance(exc, NextwordError):
        return RequestError(400, str(exc))
    return RequestError(500, f"internal error ({type(exc).__name__}): {exc}", type="server_error")
