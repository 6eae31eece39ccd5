"""The wire protocol as plain data: request descriptions and response parsers shared by the
sync and async clients, so both speak exactly the same API (docs/gateway-api.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union
from urllib.parse import quote

from .models import CommandResult, FileEntry, ProcessInfo, SandboxInfo, decode_data

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})


@dataclass
class Request:
    """One HTTP request to the gateway."""

    method: str
    path: str
    params: Dict[str, str] = field(default_factory=dict)
    json: Any = None
    content: Optional[bytes] = None
    headers: Dict[str, str] = field(default_factory=dict)
    timeout: Optional[float] = None


def sandbox_path(name: str, rest: str = "") -> str:
    return f"/v1/sandboxes/{quote(name, safe='')}{rest}"


def file_path(name: str, path: str) -> str:
    """Each segment percent-encoded, so names with `?`, `#` or `%` survive."""
    segments = [quote(s, safe="") for s in path.strip("/").split("/") if s]
    return sandbox_path(name, "/files/" + "/".join(segments))


def create_request(
    *,
    name: Optional[str],
    namespace: Optional[str],
    template: Optional[str],
    warm_pool: Optional[str],
    image: Optional[str],
    runtime: Optional[str],
    command: Optional[Sequence[str]],
    env: Optional[Mapping[str, str]],
    working_dir: Optional[str],
    memory: Optional[str],
    cpu: Optional[str],
    timeout_seconds: Optional[int],
    labels: Optional[Mapping[str, str]],
    wait: bool,
    wait_timeout: float,
    volumes: Optional[Sequence[Mapping[str, Any]]] = None,
    policy: Optional[str] = None,
) -> Request:
    if sum(x is not None for x in (template, warm_pool, image)) > 1:
        from .errors import InvalidArgument

        raise InvalidArgument("give at most one of template, warm_pool and image")
    body: Dict[str, Any] = {"wait": wait, "waitTimeoutSeconds": wait_timeout}
    for key, value in (
        ("name", name),
        ("namespace", namespace),
        ("template", template),
        ("warmPool", warm_pool),
        ("image", image),
        ("runtime", runtime),
        ("workingDir", working_dir),
        ("timeoutSeconds", timeout_seconds),
        ("policy", policy),
    ):
        if value is not None:
            body[key] = value
    if command is not None:
        body["command"] = list(command)
    if env:
        body["env"] = dict(env)
    if labels:
        body["labels"] = dict(labels)
    if volumes:
        body["volumes"] = [volume_body(v) for v in volumes]
    resources = {k: v for k, v in (("memory", memory), ("cpu", cpu)) if v is not None}
    if resources:
        body["resources"] = resources
    return Request("POST", "/v1/sandboxes", json=body, timeout=wait_timeout + 30)


def volume_body(volume: Mapping[str, Any]) -> Dict[str, Any]:
    """A host directory for an image sandbox: ``{"host_path", "mount_path", "read_only"?}``
    (the wire's camelCase spellings are accepted too)."""
    host = volume.get("host_path", volume.get("hostPath"))
    mount = volume.get("mount_path", volume.get("mountPath"))
    if not host or not mount:
        from .errors import InvalidArgument

        raise InvalidArgument("a volume needs host_path and mount_path (absolute paths)")
    body: Dict[str, Any] = {"hostPath": host, "mountPath": mount}
    if volume.get("read_only", volume.get("readOnly")):
        body["readOnly"] = True
    return body


def process_body(
    cmd: Union[str, Sequence[str]],
    *,
    env: Optional[Mapping[str, str]],
    cwd: Optional[str],
    timeout: Optional[float],
    stdin: Union[str, bytes, None],
) -> Dict[str, Any]:
    body: Dict[str, Any] = {}
    if isinstance(cmd, str):
        body["command"] = cmd
    else:
        body["argv"] = list(cmd)
    if env:
        body["env"] = dict(env)
    if cwd is not None:
        body["cwd"] = cwd
    if timeout is not None:
        body["timeout_ms"] = int(timeout * 1000)
    if isinstance(stdin, bytes):
        import base64

        body["stdin"] = base64.b64encode(stdin).decode()
        body["stdin_encoding"] = "base64"
    elif stdin is not None:
        body["stdin"] = stdin
    return body


def _text(j: Dict[str, Any], key: str) -> str:
    data = j.get(key) or ""
    if j.get(f"{key}_encoding") == "base64":
        return decode_data({"data": data, "encoding": "base64"}).decode(errors="replace")
    return data


def parse_exec(j: Dict[str, Any]) -> CommandResult:
    return CommandResult(
        exit_code=j.get("exit_code"),
        stdout=_text(j, "stdout"),
        stderr=_text(j, "stderr"),
        signal=j.get("signal"),
        timed_out=j.get("timed_out", False),
        duration_ms=j.get("duration_ms"),
        stdout_truncated=j.get("stdout_truncated", False),
        stderr_truncated=j.get("stderr_truncated", False),
    )


class StreamCollector:
    """Folds NDJSON process events into a CommandResult, calling the callbacks on the way."""

    def __init__(self, on_stdout=None, on_stderr=None) -> None:
        self.on_stdout = on_stdout
        self.on_stderr = on_stderr
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.process_id: Optional[int] = None
        self.exit: Optional[Dict[str, Any]] = None

    def feed_line(self, line: str) -> None:
        line = line.strip()
        if line:
            self.feed(json.loads(line))

    def feed(self, event: Dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "start":
            self.process_id = event.get("id")
        elif kind in ("stdout", "stderr"):
            data = decode_data(event)
            (self.stdout if kind == "stdout" else self.stderr).extend(data)
            callback = self.on_stdout if kind == "stdout" else self.on_stderr
            if callback is not None:
                callback(data.decode(errors="replace"))
        elif kind == "exit":
            self.exit = event

    def result(self) -> CommandResult:
        exit_event = self.exit or {}
        return CommandResult(
            exit_code=exit_event.get("exit_code"),
            stdout=self.stdout.decode(errors="replace"),
            stderr=self.stderr.decode(errors="replace"),
            signal=exit_event.get("signal"),
            timed_out=exit_event.get("timed_out", False),
            duration_ms=exit_event.get("duration_ms"),
        )


def parse_list(j: Dict[str, Any]) -> List[FileEntry]:
    return [
        FileEntry(name=e["name"], type=e.get("type", "file"), size=e.get("size", 0), modified_at=e.get("modified_at"), mode=e.get("mode"))
        for e in j.get("entries", [])
    ]


def parse_sandbox(j: Dict[str, Any]) -> SandboxInfo:
    return SandboxInfo.from_json(j)


def parse_process(j: Dict[str, Any]) -> ProcessInfo:
    return ProcessInfo.from_json(j)


def mint_token_body(port: int, method: str, path: str, ttl_seconds: int) -> Dict[str, Any]:
    """The body of ``POST /v1/sandboxes/{name}/tokens``."""
    return {"port": port, "method": method, "path": path, "ttlSeconds": ttl_seconds}


def fs_path(name: str, op: str) -> str:
    """The path of a file operation (stat, mkdir, move, copy, watch)."""
    return sandbox_path(name, "/fs/" + op)
