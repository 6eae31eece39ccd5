"""paddock: sandboxes for AI agents.

Create a sandbox, run commands in it, read and write its files, throw it away::

    from paddock import Sandbox

    with Sandbox.create(template="python") as sbx:
        result = sbx.commands.run("python3 -c 'print(6*7)'")
        print(result.stdout)            # 42
        sbx.files.write("/workspace/data.txt", "hello")

The same code works against ``paddock serve`` on a laptop and against the gateway on a
Kubernetes cluster: point ``PADDOCK_URL`` (and ``PADDOCK_TOKEN``) at it.
"""

from .aio import AsyncCommandHandle, AsyncSandbox
from .errors import (
    AlreadyExists,
    CommandFailed,
    ConnectionFailed,
    Conflict,
    DeadlineExceeded,
    FailedPrecondition,
    InternalError,
    InvalidArgument,
    InvalidObject,
    NotFound,
    NotImplementedByBackend,
    PaddockError,
    PayloadTooLarge,
    PermissionDenied,
    SandboxNotReady,
    TooManyProcesses,
    Unauthenticated,
    Unavailable,
)
from .models import CommandResult, EgressRecord, FileEntry, FileEvent, FileStat, ProcessInfo, SandboxInfo, ScopedToken
from .sandbox import CommandHandle, Sandbox

__all__ = [
    "Sandbox",
    "AsyncSandbox",
    "CommandHandle",
    "AsyncCommandHandle",
    "CommandResult",
    "FileEntry",
    "ProcessInfo",
    "SandboxInfo",
    "ScopedToken",
    "FileStat",
    "FileEvent",
    "EgressRecord",
    "PaddockError",
    "InvalidArgument",
    "Unauthenticated",
    "PermissionDenied",
    "NotFound",
    "AlreadyExists",
    "Conflict",
    "FailedPrecondition",
    "InvalidObject",
    "PayloadTooLarge",
    "TooManyProcesses",
    "SandboxNotReady",
    "DeadlineExceeded",
    "Unavailable",
    "InternalError",
    "NotImplementedByBackend",
    "ConnectionFailed",
    "CommandFailed",
]

__version__ = "0.1.0"
