"""Exceptions mirroring the gateway's error codes (docs/gateway-api.md).

Every exception carries the gateway's ``code``, the human ``message`` and the HTTP ``status``.
Catch :class:`PaddockError` for all of them.
"""

from __future__ import annotations

from typing import Any, Optional


class PaddockError(Exception):
    """Base of every error the SDK raises."""

    code = "UNKNOWN"

    def __init__(self, message: str, *, status: Optional[int] = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.details = details

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code != "UNKNOWN" else self.message


class InvalidArgument(PaddockError):
    code = "INVALID_ARGUMENT"


class Unauthenticated(PaddockError):
    code = "UNAUTHENTICATED"


class PermissionDenied(PaddockError):
    code = "PERMISSION_DENIED"


class NotFound(PaddockError):
    code = "NOT_FOUND"


class AlreadyExists(PaddockError):
    code = "ALREADY_EXISTS"


class Conflict(PaddockError):
    code = "CONFLICT"


class FailedPrecondition(PaddockError):
    code = "FAILED_PRECONDITION"


class InvalidObject(PaddockError):
    """An object failed validation; ``problems`` lists ``{path, message, line}``."""

    code = "INVALID_OBJECT"

    @property
    def problems(self) -> list:
        return list(self.details or [])


class PayloadTooLarge(PaddockError):
    code = "PAYLOAD_TOO_LARGE"


class TooManyProcesses(PaddockError):
    code = "TOO_MANY_PROCESSES"


class SandboxNotReady(PaddockError):
    code = "SANDBOX_NOT_READY"


class DeadlineExceeded(PaddockError):
    code = "DEADLINE_EXCEEDED"


class Unavailable(PaddockError):
    code = "UNAVAILABLE"


class InternalError(PaddockError):
    code = "INTERNAL"


class NotImplementedByBackend(PaddockError):
    code = "NOT_IMPLEMENTED"


class ConnectionFailed(PaddockError):
    """The gateway could not be reached (is ``paddock serve`` running?)."""

    code = "CONNECTION_FAILED"


class CommandFailed(PaddockError):
    """``commands.run(..., check=True)`` saw a non-zero exit; ``result`` holds the output."""

    code = "COMMAND_FAILED"

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(message)
        self.result = result


_BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        Unauthenticated,
        PermissionDenied,
        NotFound,
        AlreadyExists,
        Conflict,
        FailedPrecondition,
        InvalidObject,
        PayloadTooLarge,
        TooManyProcesses,
        SandboxNotReady,
        DeadlineExceeded,
        Unavailable,
        InternalError,
        NotImplementedByBackend,
    )
}

_BY_STATUS = {
    400: InvalidArgument,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidObject,
    429: TooManyProcesses,
    501: NotImplementedByBackend,
    503: Unavailable,
    504: DeadlineExceeded,
}


def from_response(status: int, body: Any) -> PaddockError:
    """Builds the exception for an error response (JSON ``{code, message, details}``)."""
    code = message = None
    details = None
    if isinstance(body, dict):
        code = body.get("code")
        message = body.get("message") or body.get("detail")
        details = body.get("details")
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status) or (InternalError if status >= 500 else PaddockError)
    return cls(message or f"HTTP {status}", status=status, details=details)
