"""Values the SDK returns."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


def decode_data(event: Dict[str, Any]) -> bytes:
    """The bytes of an output event: text as UTF-8, or base64 when ``encoding`` says so."""
    data = event.get("data", "")
    if event.get("encoding") == "base64":
        return base64.b64decode(data)
    return data.encode()


@dataclass
class CommandResult:
    """The outcome of a finished command."""

    exit_code: Optional[int]
    stdout: str
    stderr: str
    signal: Optional[int] = None
    timed_out: bool = False
    duration_ms: Optional[float] = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class ProcessInfo:
    """A started process as the sandbox's agent reports it."""

    id: int
    pid: int
    state: str
    argv: list = field(default_factory=list)
    cwd: str = ""
    background: bool = False
    pty: bool = False
    started_at: str = ""
    exit_code: Optional[int] = None
    signal: Optional[int] = None
    timed_out: bool = False
    duration_ms: Optional[float] = None
    output_start: int = 0
    output_end: int = 0

    @classmethod
    def from_json(cls, j: Dict[str, Any]) -> "ProcessInfo":
        return cls(
            id=j["id"],
            pid=j.get("pid", 0),
            state=j.get("state", "running"),
            argv=j.get("argv", []),
            cwd=j.get("cwd", ""),
            background=j.get("background", False),
            pty=j.get("pty", False),
            started_at=j.get("started_at", ""),
            exit_code=j.get("exit_code"),
            signal=j.get("signal"),
            timed_out=j.get("timed_out", False),
            duration_ms=j.get("duration_ms"),
            output_start=j.get("output_start", 0),
            output_end=j.get("output_end", 0),
        )

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass
class FileEntry:
    """One directory entry."""

    name: str
    type: str
    size: int
    modified_at: Optional[str] = None
    mode: Optional[str] = None

    @property
    def is_dir(self) -> bool:
        return self.type == "directory"


@dataclass
class SandboxInfo:
    """A sandbox as the gateway describes it."""

    name: str
    namespace: str
    ready: bool
    phase: str
    reason: Optional[str] = None
    message: Optional[str] = None
    claim: Optional[str] = None
    launch_type: Optional[str] = None
    runtime: Optional[str] = None
    image: Optional[str] = None
    created_at: Optional[str] = None
    expires_at: Optional[str] = None
    labels: Dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, j: Dict[str, Any]) -> "SandboxInfo":
        return cls(
            name=j["name"],
            namespace=j.get("namespace", "default"),
            ready=j.get("ready", False),
            phase=j.get("phase", ""),
            reason=j.get("reason"),
            message=j.get("message"),
            claim=j.get("claim"),
            launch_type=j.get("launchType"),
            runtime=j.get("runtime"),
            image=j.get("image"),
            created_at=j.get("createdAt"),
            expires_at=j.get("expiresAt"),
            labels=j.get("labels") or {},
        )


@dataclass
class EgressRecord:
    """One connection, request or DNS question the sandbox's egress proxy answered."""

    time: str
    kind: str
    host: str
    port: int
    allowed: bool
    bytes_sent: int = 0
    bytes_received: int = 0
    duration_ms: int = 0
    address: Optional[str] = None
    method: Optional[str] = None
    path: Optional[str] = None
    rule: Optional[str] = None
    reason: Optional[str] = None
    audited: bool = False
    credentials: List[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, j: Dict[str, Any]) -> "EgressRecord":
        return cls(
            time=j.get("time", ""),
            kind=j.get("kind", ""),
            host=j.get("host", ""),
            port=int(j.get("port", 0)),
            allowed=bool(j.get("allowed", False)),
            bytes_sent=int(j.get("bytesSent", 0)),
            bytes_received=int(j.get("bytesReceived", 0)),
            duration_ms=int(j.get("durationMs", 0)),
            address=j.get("address"),
            method=j.get("method"),
            path=j.get("path"),
            rule=j.get("rule"),
            reason=j.get("reason"),
            audited=bool(j.get("audited", False)),
            credentials=list(j.get("credentials", [])),
        )


@dataclass
class ScopedToken:
    """A v2 scoped token (upstream's router format): its holder may send one method to one
    path on one port of one sandbox, through ``X-Sandbox-ID``/``-Namespace``/``-Port``, until
    it expires or the sandbox is recreated."""

    token: str
    sandbox: str
    namespace: str
    uid: str
    expires_at: str

    @classmethod
    def from_json(cls, j: Dict[str, Any]) -> "ScopedToken":
        return cls(
            token=j.get("token", ""),
            sandbox=j.get("sandbox", ""),
            namespace=j.get("namespace", ""),
            uid=j.get("uid", ""),
            expires_at=j.get("expiresAt", ""),
        )


@dataclass
class FileStat:
    """One path (a final symlink described, not followed)."""

    path: str
    type: str
    size: int
    mode: str
    modified_at: str
    symlink_target: Optional[str] = None

    @classmethod
    def from_json(cls, j: Dict[str, Any]) -> "FileStat":
        return cls(
            path=j.get("path", ""),
            type=j.get("type", ""),
            size=int(j.get("size", 0)),
            mode=j.get("mode", ""),
            modified_at=j.get("modifiedAt", ""),
            symlink_target=j.get("symlinkTarget"),
        )


@dataclass
class FileEvent:
    """A change under a watched directory: ``create``, ``write``, ``remove``, ``rename``,
    ``chmod``, or ``error`` (the directory went; the watch ends)."""

    type: str
    path: str
    is_dir: bool = False
    message: Optional[str] = None

    @classmethod
    def from_json(cls, j: Dict[str, Any]) -> "FileEvent":
        return cls(type=j.get("type", ""), path=j.get("path", ""), is_dir=bool(j.get("isDir", False)), message=j.get("message"))
