"""The synchronous client: :class:`Sandbox`, with ``commands`` and ``files``.

>>> from paddock import Sandbox
>>> with Sandbox.create(template="python") as sbx:
...     print(sbx.commands.run("python3 -c 'print(6*7)'").stdout)
42
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator, List, Mapping, Optional, Sequence, Union

from . import _protocol as p
from ._transport import SyncTransport
from .errors import CommandFailed
from .models import CommandResult, EgressRecord, FileEntry, FileEvent, FileStat, ProcessInfo, SandboxInfo, ScopedToken, decode_data

Cmd = Union[str, Sequence[str]]
Callback = Optional[Callable[[str], None]]


class CommandHandle:
    """A background process: wait for it, feed it, signal it, read its output again."""

    def __init__(self, sandbox: "Sandbox", info: ProcessInfo) -> None:
        self._sandbox = sandbox
        self.id = info.id
        self.pid = info.pid
        self.info = info

    def _req(self, method: str, rest: str = "", **kw) -> p.Request:
        return self._sandbox._req(method, f"/processes/{self.id}{rest}", **kw)

    def refresh(self) -> ProcessInfo:
        self.info = p.parse_process(self._sandbox._t.json(self._req("GET")))
        return self.info

    def wait(self, timeout: Optional[float] = None, on_stdout: Callback = None, on_stderr: Callback = None) -> CommandResult:
        """Follows the output (from the start, replayed) until the process exits."""
        collector = p.StreamCollector(on_stdout, on_stderr)
        req = self._req("GET", "/output", params={"offset": "0", "follow": "true"}, timeout=timeout)
        with self._sandbox._t.stream(req) as response:
            for line in response.iter_lines():
                collector.feed_line(line)
        return collector.result()

    def output(self, offset: int = 0, follow: bool = False) -> Iterator[bytes]:
        """The output bytes from ``offset`` (stdout and stderr interleaved as they happened)."""
        import json

        req = self._req("GET", "/output", params={"offset": str(offset), "follow": str(follow).lower()}, timeout=None)
        with self._sandbox._t.stream(req) as response:
            for line in response.iter_lines():
                if line.strip():
                    event = json.loads(line)
                    if event.get("type") in ("stdout", "stderr"):
                        yield decode_data(event)

    def send_stdin(self, data: Union[str, bytes], eof: bool = False) -> None:
        content = data.encode() if isinstance(data, str) else data
        params = {"eof": "true"} if eof else {}
        self._sandbox._t.send(self._req("POST", "/stdin", params=params, content=content))

    def signal(self, signal: Union[str, int] = "SIGTERM") -> None:
        self._sandbox._t.send(self._req("POST", "/signal", json={"signal": signal}))

    def kill(self) -> None:
        """SIGKILLs the process group and forgets the process."""
        self._sandbox._t.send(self._req("DELETE"))


class Commands:
    """Run commands in the sandbox."""

    def __init__(self, sandbox: "Sandbox") -> None:
        self._sandbox = sandbox

    def run(
        self,
        cmd: Cmd,
        *,
        timeout: Optional[float] = 60,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        stdin: Union[str, bytes, None] = None,
        on_stdout: Callback = None,
        on_stderr: Callback = None,
        background: bool = False,
        check: bool = False,
    ) -> Union[CommandResult, CommandHandle]:
        """Runs ``cmd`` (a shell string, or an argv list run without a shell).

        Returns a :class:`CommandResult` when the command ends, or a :class:`CommandHandle` at
        once with ``background=True``. ``on_stdout``/``on_stderr`` receive output as it happens.
        ``timeout`` kills the whole process group (``result.timed_out``). With ``check=True`` a
        non-zero exit raises :class:`~paddock.errors.CommandFailed`.
        """
        body = p.process_body(cmd, env=env, cwd=cwd, timeout=timeout if not background else None, stdin=stdin)
        http_timeout = None if timeout is None else timeout + 30
        if background:
            body["background"] = True
            body["keep_stdin_open"] = True
            info = p.parse_process(self._sandbox._t.json(self._sandbox._req("POST", "/processes", json=body)))
            return CommandHandle(self._sandbox, info)
        if on_stdout is None and on_stderr is None:
            result = p.parse_exec(self._sandbox._t.json(self._sandbox._req("POST", "/exec", json=body, timeout=http_timeout)))
        else:
            collector = p.StreamCollector(on_stdout, on_stderr)
            req = self._sandbox._req("POST", "/processes", json=body, timeout=http_timeout, headers={"Accept": "application/x-ndjson"})
            with self._sandbox._t.stream(req) as response:
                for line in response.iter_lines():
                    collector.feed_line(line)
            result = collector.result()
        if check and result.exit_code != 0:
            raise CommandFailed(f"command exited with {result.exit_code}: {result.stderr[-500:]}", result)
        return result

    def list(self) -> List[ProcessInfo]:
        j = self._sandbox._t.json(self._sandbox._req("GET", "/processes"))
        return [p.parse_process(x) for x in j.get("processes", [])]

    def connect(self, process_id: int) -> CommandHandle:
        """A handle on a running (or exited) process, e.g. after reconnecting."""
        info = p.parse_process(self._sandbox._t.json(self._sandbox._req("GET", f"/processes/{process_id}")))
        return CommandHandle(self._sandbox, info)


class Files:
    """Read and write files in the sandbox (paths are confined to the sandbox's root)."""

    def __init__(self, sandbox: "Sandbox") -> None:
        self._sandbox = sandbox

    def read(self, path: str) -> bytes:
        return self._sandbox._t.send(p.Request("GET", p.file_path(self._sandbox.name, path), params=self._sandbox._ns())).content

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return self.read(path).decode(encoding)

    def write(self, path: str, data: Union[str, bytes], mode: Optional[str] = None) -> None:
        """Writes atomically (readers see the old or the new content), creating parents."""
        content = data.encode() if isinstance(data, str) else data
        params = self._sandbox._ns()
        if mode:
            params["mode"] = mode
        self._sandbox._t.send(p.Request("PUT", p.file_path(self._sandbox.name, path), params=params, content=content, headers={"Content-Type": "application/octet-stream"}))

    def list(self, path: str = "/") -> List[FileEntry]:
        return p.parse_list(self._sandbox._t.json(p.Request("GET", p.file_path(self._sandbox.name, path), params=self._sandbox._ns())))

    def exists(self, path: str) -> bool:
        from .errors import NotFound

        try:
            self._sandbox._t.send(p.Request("HEAD", p.file_path(self._sandbox.name, path), params=self._sandbox._ns()))
            return True
        except NotFound:
            return False

    def remove(self, path: str, recursive: bool = False) -> None:
        params = self._sandbox._ns()
        params["recursive"] = str(recursive).lower()
        self._sandbox._t.send(p.Request("DELETE", p.file_path(self._sandbox.name, path), params=params))

    def _fs(self, method: str, op: str, params: dict, **kw) -> p.Request:
        return p.Request(method, p.fs_path(self._sandbox.name, op), params={**self._sandbox._ns(), **params}, **kw)

    def stat(self, path: str) -> FileStat:
        """A path's type, size, mode and modification time (a final symlink is not followed)."""
        return FileStat.from_json(self._sandbox._t.json(self._fs("GET", "stat", {"path": path})))

    def mkdir(self, path: str) -> FileStat:
        """Makes a directory and its parents (``mkdir -p``)."""
        return FileStat.from_json(self._sandbox._t.json(self._fs("POST", "mkdir", {"path": path})))

    def move(self, src: str, dst: str, overwrite: bool = False) -> None:
        """Moves (renames) a file or directory; ``overwrite`` replaces what is at ``dst``."""
        self._sandbox._t.send(self._fs("POST", "move", {"from": src, "to": dst, "overwrite": str(overwrite).lower()}))

    def copy(self, src: str, dst: str, overwrite: bool = False) -> None:
        """Copies a file, or a directory with everything in it."""
        self._sandbox._t.send(self._fs("POST", "copy", {"from": src, "to": dst, "overwrite": str(overwrite).lower()}))

    def watch(self, path: str, on_event: Callable[[FileEvent], Optional[bool]], recursive: bool = False) -> None:
        """Calls ``on_event`` with each change under ``path`` until it returns ``False`` or the
        directory goes (a last ``error`` event)."""
        req = self._fs("GET", "watch", {"path": path, "recursive": str(recursive).lower()}, timeout=None)
        with self._sandbox._t.stream(req) as response:
            for line in response.iter_lines():
                if line.strip() and on_event(FileEvent.from_json(json.loads(line))) is False:
                    return


class Sandbox:
    """A sandbox on a paddock gateway. Use :meth:`create` (a context manager that deletes the
    sandbox on exit) or :meth:`connect`."""

    def __init__(self, info: SandboxInfo, transport: SyncTransport, owned: bool = False) -> None:
        self.info = info
        self.name = info.name
        self.namespace = info.namespace
        self._t = transport
        self._owned = owned
        self.commands = Commands(self)
        self.files = Files(self)

    def _ns(self) -> dict:
        return {"namespace": self.namespace}

    def _req(self, method: str, rest: str = "", *, params: Optional[dict] = None, **kw) -> p.Request:
        """A request under this sandbox's path, with its namespace."""
        return p.Request(method, p.sandbox_path(self.name, rest), params={**self._ns(), **(params or {})}, **kw)

    @classmethod
    def create(
        cls,
        *,
        template: Optional[str] = None,
        warm_pool: Optional[str] = None,
        image: Optional[str] = None,
        name: Optional[str] = None,
        namespace: Optional[str] = None,
        runtime: Optional[str] = None,
        command: Optional[Sequence[str]] = None,
        env: Optional[Mapping[str, str]] = None,
        working_dir: Optional[str] = None,
        memory: Optional[str] = None,
        cpu: Optional[str] = None,
        timeout_seconds: Optional[int] = None,
        labels: Optional[Mapping[str, str]] = None,
        volumes: Optional[Sequence[Mapping[str, Any]]] = None,
        policy: Optional[str] = None,
        wait_timeout: float = 60,
        url: Optional[str] = None,
        token: Optional[str] = None,
    ) -> "Sandbox":
        """Creates a sandbox from a template, a warm pool or an image and waits until it is
        ready. As a context manager, the sandbox is deleted when the block ends."""
        transport = SyncTransport(url, token)
        req = p.create_request(
            name=name, namespace=namespace, template=template, warm_pool=warm_pool, image=image, runtime=runtime,
            command=command, env=env, working_dir=working_dir, memory=memory, cpu=cpu,
            timeout_seconds=timeout_seconds, labels=labels, wait=True, wait_timeout=wait_timeout,
            volumes=volumes, policy=policy,
        )
        try:
            info = p.parse_sandbox(transport.json(req))
        except BaseException:
            transport.close()
            raise
        return cls(info, transport, owned=True)

    @classmethod
    def connect(cls, name: str, *, namespace: str = "default", url: Optional[str] = None, token: Optional[str] = None) -> "Sandbox":
        """Attaches to an existing sandbox (by Sandbox or claim name)."""
        transport = SyncTransport(url, token)
        try:
            info = p.parse_sandbox(transport.json(p.Request("GET", p.sandbox_path(name), params={"namespace": namespace})))
        except BaseException:
            transport.close()
            raise
        return cls(info, transport)

    @staticmethod
    def list(*, namespace: Optional[str] = None, url: Optional[str] = None, token: Optional[str] = None) -> List[SandboxInfo]:
        transport = SyncTransport(url, token)
        try:
            params = {"namespace": namespace} if namespace else {}
            j = transport.json(p.Request("GET", "/v1/sandboxes", params=params))
            return [p.parse_sandbox(x) for x in j.get("items", [])]
        finally:
            transport.close()

    def refresh(self) -> SandboxInfo:
        self.info = p.parse_sandbox(self._t.json(p.Request("GET", p.sandbox_path(self.name), params=self._ns())))
        return self.info

    def pause(self) -> SandboxInfo:
        """Suspends the sandbox: its processes stop, its volumes stay."""
        self.info = p.parse_sandbox(self._t.json(p.Request("POST", p.sandbox_path(self.name, "/pause"), params=self._ns())))
        return self.info

    def suspend(self) -> SandboxInfo:
        """Upstream's word for :meth:`pause`: ``operatingMode: Suspended``."""
        return self.pause()

    def resume(self, wait_timeout: float = 60) -> SandboxInfo:
        """Runs a suspended sandbox again and waits until it is ready."""
        req = p.Request("POST", p.sandbox_path(self.name, "/resume"), params=self._ns(), timeout=wait_timeout + 30)
        self.info = p.parse_sandbox(self._t.json(req))
        return self.info

    def mint_token(self, port: int = 8888, method: str = "GET", path: str = "/", ttl_seconds: int = 3600) -> ScopedToken:
        """Mints a v2 scoped token for exactly one request kind on this sandbox (the server
        needs ``--scoped-token-signing-key-file``). Hand it to a client that should reach this
        port and path and nothing else; upstream's router accepts it too."""
        body = p.mint_token_body(port, method, path, ttl_seconds)
        return ScopedToken.from_json(self._t.json(self._req("POST", "/tokens", json=body)))

    def logs(self, follow: bool = False, on_output: Optional[Callable[[str], None]] = None) -> str:
        """The output of the sandbox's main process (its pod's log on a cluster). With
        ``follow``, waits for more until the process ends, calling ``on_output`` per chunk."""
        req = self._req("GET", "/logs", params={"follow": str(follow).lower()}, timeout=None if follow else 30)
        chunks = []
        with self._t.stream(req) as response:
            for text in response.iter_text():
                chunks.append(text)
                if on_output:
                    on_output(text)
        return "".join(chunks)

    def egress(self) -> List[EgressRecord]:
        """What the sandbox did with the network: every connection, request and DNS question
        its egress proxy answered, oldest first (empty when it has no SandboxPolicy)."""
        j = self._t.json(self._req("GET", "/egress"))
        return [EgressRecord.from_json(r) for r in j.get("items", [])]

    def follow_egress(self, on_record: Callable[[EgressRecord], Optional[bool]]) -> None:
        """Calls ``on_record`` with each kept record, then with each new one as its connection
        ends, until it returns ``False`` or the sandbox goes away."""
        req = self._req("GET", "/egress", params={"follow": "true"}, timeout=None)
        with self._t.stream(req) as response:
            for line in response.iter_lines():
                if line.strip() and on_record(EgressRecord.from_json(json.loads(line))) is False:
                    return

    def kill(self) -> None:
        """Deletes the sandbox (idempotent: an already deleted sandbox is fine)."""
        from .errors import NotFound

        try:
            self._t.send(p.Request("DELETE", p.sandbox_path(self.info.claim or self.name), params=self._ns()))
        except NotFound:
            pass

    def close(self) -> None:
        """Closes the connection without deleting the sandbox."""
        self._t.close()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._owned:
                self.kill()
        finally:
            self.close()
