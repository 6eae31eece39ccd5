"""The asyncio client: :class:`AsyncSandbox`, the same surface as :class:`paddock.Sandbox`
with awaitable methods.

>>> import asyncio
>>> from paddock import AsyncSandbox
>>> async def main():
...     async with await AsyncSandbox.create(template="python") as sbx:
...         print((await sbx.commands.run("echo hi")).stdout)
>>> asyncio.run(main())
hi
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Callable, List, Mapping, Optional, Sequence, Union

from . import _protocol as p
from ._transport import AsyncTransport
from .errors import CommandFailed, NotFound
from .models import CommandResult, EgressRecord, FileEntry, FileEvent, FileStat, ProcessInfo, SandboxInfo, ScopedToken, decode_data

Cmd = Union[str, Sequence[str]]
Callback = Optional[Callable[[str], None]]


class AsyncCommandHandle:
    """A background process (async)."""

    def __init__(self, sandbox: "AsyncSandbox", info: ProcessInfo) -> None:
        self._sandbox = sandbox
        self.id = info.id
        self.pid = info.pid
        self.info = info

    def _req(self, method: str, rest: str = "", **kw) -> p.Request:
        return self._sandbox._req(method, f"/processes/{self.id}{rest}", **kw)

    async def refresh(self) -> ProcessInfo:
        self.info = p.parse_process(await self._sandbox._t.json(self._req("GET")))
        return self.info

    async def wait(self, timeout: Optional[float] = None, on_stdout: Callback = None, on_stderr: Callback = None) -> CommandResult:
        collector = p.StreamCollector(on_stdout, on_stderr)
        req = self._req("GET", "/output", params={"offset": "0", "follow": "true"}, timeout=timeout)
        async with self._sandbox._t.stream(req) as response:
            async for line in response.aiter_lines():
                collector.feed_line(line)
        return collector.result()

    async def output(self, offset: int = 0, follow: bool = False) -> AsyncIterator[bytes]:
        req = self._req("GET", "/output", params={"offset": str(offset), "follow": str(follow).lower()}, timeout=None)
        async with self._sandbox._t.stream(req) as response:
            async for line in response.aiter_lines():
                if line.strip():
                    event = json.loads(line)
                    if event.get("type") in ("stdout", "stderr"):
                        yield decode_data(event)

    async def send_stdin(self, data: Union[str, bytes], eof: bool = False) -> None:
        content = data.encode() if isinstance(data, str) else data
        await self._sandbox._t.send(self._req("POST", "/stdin", params={"eof": "true"} if eof else {}, content=content))

    async def signal(self, signal: Union[str, int] = "SIGTERM") -> None:
        await self._sandbox._t.send(self._req("POST", "/signal", json={"signal": signal}))

    async def kill(self) -> None:
        await self._sandbox._t.send(self._req("DELETE"))


class AsyncCommands:
    """Run commands in the sandbox (async)."""

    def __init__(self, sandbox: "AsyncSandbox") -> None:
        self._sandbox = sandbox

    async def run(
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
    ) -> Union[CommandResult, AsyncCommandHandle]:
        """See :meth:`paddock.sandbox.Commands.run`."""
        body = p.process_body(cmd, env=env, cwd=cwd, timeout=timeout if not background else None, stdin=stdin)
        http_timeout = None if timeout is None else timeout + 30
        if background:
            body["background"] = True
            body["keep_stdin_open"] = True
            info = p.parse_process(await self._sandbox._t.json(self._sandbox._req("POST", "/processes", json=body)))
            return AsyncCommandHandle(self._sandbox, info)
        if on_stdout is None and on_stderr is None:
            result = p.parse_exec(await self._sandbox._t.json(self._sandbox._req("POST", "/exec", json=body, timeout=http_timeout)))
        else:
            collector = p.StreamCollector(on_stdout, on_stderr)
            req = self._sandbox._req("POST", "/processes", json=body, timeout=http_timeout, headers={"Accept": "application/x-ndjson"})
            async with self._sandbox._t.stream(req) as response:
                async for line in response.aiter_lines():
                    collector.feed_line(line)
            result = collector.result()
        if check and result.exit_code != 0:
            raise CommandFailed(f"command exited with {result.exit_code}: {result.stderr[-500:]}", result)
        return result

    async def list(self) -> List[ProcessInfo]:
        j = await self._sandbox._t.json(self._sandbox._req("GET", "/processes"))
        return [p.parse_process(x) for x in j.get("processes", [])]


class AsyncFiles:
    """Read and write files in the sandbox (async)."""

    def __init__(self, sandbox: "AsyncSandbox") -> None:
        self._sandbox = sandbox

    def _file(self, method: str, path: str, params: Optional[dict] = None, **kw) -> p.Request:
        return p.Request(method, p.file_path(self._sandbox.name, path), params={**self._sandbox._ns(), **(params or {})}, **kw)

    async def read(self, path: str) -> bytes:
        return (await self._sandbox._t.send(self._file("GET", path))).content

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return (await self.read(path)).decode(encoding)

    async def write(self, path: str, data: Union[str, bytes], mode: Optional[str] = None) -> None:
        content = data.encode() if isinstance(data, str) else data
        params = {"mode": mode} if mode else {}
        await self._sandbox._t.send(self._file("PUT", path, params, content=content, headers={"Content-Type": "application/octet-stream"}))

    async def list(self, path: str = "/") -> List[FileEntry]:
        return p.parse_list(await self._sandbox._t.json(self._file("GET", path)))

    async def exists(self, path: str) -> bool:
        try:
            await self._sandbox._t.send(self._file("HEAD", path))
            return True
        except NotFound:
            return False

    async def remove(self, path: str, recursive: bool = False) -> None:
        await self._sandbox._t.send(self._file("DELETE", path, {"recursive": str(recursive).lower()}))

    def _fs(self, method: str, op: str, params: dict, **kw) -> p.Request:
        return p.Request(method, p.fs_path(self._sandbox.name, op), params={**self._sandbox._ns(), **params}, **kw)

    async def stat(self, path: str) -> FileStat:
        """See :meth:`paddock.sandbox.Files.stat`."""
        return FileStat.from_json(await self._sandbox._t.json(self._fs("GET", "stat", {"path": path})))

    async def mkdir(self, path: str) -> FileStat:
        return FileStat.from_json(await self._sandbox._t.json(self._fs("POST", "mkdir", {"path": path})))

    async def move(self, src: str, dst: str, overwrite: bool = False) -> None:
        await self._sandbox._t.send(self._fs("POST", "move", {"from": src, "to": dst, "overwrite": str(overwrite).lower()}))

    async def copy(self, src: str, dst: str, overwrite: bool = False) -> None:
        await self._sandbox._t.send(self._fs("POST", "copy", {"from": src, "to": dst, "overwrite": str(overwrite).lower()}))

    async def watch(self, path: str, on_event: Callable[[FileEvent], Optional[bool]], recursive: bool = False) -> None:
        """See :meth:`paddock.sandbox.Files.watch`."""
        req = self._fs("GET", "watch", {"path": path, "recursive": str(recursive).lower()}, timeout=None)
        async with self._sandbox._t.stream(req) as response:
            async for line in response.aiter_lines():
                if line.strip() and on_event(FileEvent.from_json(json.loads(line))) is False:
                    return


class AsyncSandbox:
    """A sandbox on a paddock gateway (async). Create with ``await AsyncSandbox.create(...)``;
    ``async with`` deletes it when the block ends."""

    def __init__(self, info: SandboxInfo, transport: AsyncTransport, owned: bool = False) -> None:
        self.info = info
        self.name = info.name
        self.namespace = info.namespace
        self._t = transport
        self._owned = owned
        self.commands = AsyncCommands(self)
        self.files = AsyncFiles(self)

    def _ns(self) -> dict:
        return {"namespace": self.namespace}

    def _req(self, method: str, rest: str = "", *, params: Optional[dict] = None, **kw) -> p.Request:
        return p.Request(method, p.sandbox_path(self.name, rest), params={**self._ns(), **(params or {})}, **kw)

    @classmethod
    async def create(
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
    ) -> "AsyncSandbox":
        transport = AsyncTransport(url, token)
        req = p.create_request(
            name=name, namespace=namespace, template=template, warm_pool=warm_pool, image=image, runtime=runtime,
            command=command, env=env, working_dir=working_dir, memory=memory, cpu=cpu,
            timeout_seconds=timeout_seconds, labels=labels, wait=True, wait_timeout=wait_timeout,
            volumes=volumes, policy=policy,
        )
        try:
            info = p.parse_sandbox(await transport.json(req))
        except BaseException:
            await transport.close()
            raise
        return cls(info, transport, owned=True)

    @classmethod
    async def connect(cls, name: str, *, namespace: str = "default", url: Optional[str] = None, token: Optional[str] = None) -> "AsyncSandbox":
        transport = AsyncTransport(url, token)
        try:
            info = p.parse_sandbox(await transport.json(p.Request("GET", p.sandbox_path(name), params={"namespace": namespace})))
        except BaseException:
            await transport.close()
            raise
        return cls(info, transport)

    async def refresh(self) -> SandboxInfo:
        self.info = p.parse_sandbox(await self._t.json(self._req("GET")))
        return self.info

    async def pause(self) -> SandboxInfo:
        self.info = p.parse_sandbox(await self._t.json(self._req("POST", "/pause")))
        return self.info

    async def suspend(self) -> SandboxInfo:
        """Upstream's word for :meth:`pause`."""
        return await self.pause()

    async def resume(self, wait_timeout: float = 60) -> SandboxInfo:
        self.info = p.parse_sandbox(await self._t.json(self._req("POST", "/resume", timeout=wait_timeout + 30)))
        return self.info

    async def logs(self, follow: bool = False, on_output: Optional[Callable[[str], None]] = None) -> str:
        """The output of the sandbox's main process; see :meth:`paddock.Sandbox.logs`."""
        req = self._req("GET", "/logs", params={"follow": str(follow).lower()}, timeout=None if follow else 30)
        chunks = []
        async with self._t.stream(req) as response:
            async for text in response.aiter_text():
                chunks.append(text)
                if on_output:
                    on_output(text)
        return "".join(chunks)

    async def mint_token(self, port: int = 8888, method: str = "GET", path: str = "/", ttl_seconds: int = 3600) -> ScopedToken:
        """A v2 scoped token; see :meth:`paddock.Sandbox.mint_token`."""
        body = p.mint_token_body(port, method, path, ttl_seconds)
        return ScopedToken.from_json(await self._t.json(self._req("POST", "/tokens", json=body)))

    async def egress(self) -> List[EgressRecord]:
        """The egress record; see :meth:`paddock.Sandbox.egress`."""
        j = await self._t.json(self._req("GET", "/egress"))
        return [EgressRecord.from_json(r) for r in j.get("items", [])]

    async def follow_egress(self, on_record: Callable[[EgressRecord], Optional[bool]]) -> None:
        """Follows the egress record; see :meth:`paddock.Sandbox.follow_egress`."""
        req = self._req("GET", "/egress", params={"follow": "true"}, timeout=None)
        async with self._t.stream(req) as response:
            async for line in response.aiter_lines():
                if line.strip() and on_record(EgressRecord.from_json(json.loads(line))) is False:
                    return

    async def kill(self) -> None:
        try:
            await self._t.send(p.Request("DELETE", p.sandbox_path(self.info.claim or self.name), params=self._ns()))
        except NotFound:
            pass

    async def close(self) -> None:
        await self._t.close()

    async def __aenter__(self) -> "AsyncSandbox":
        return self

    async def __aexit__(self, *exc) -> None:
        try:
            if self._owned:
                await self.kill()
        finally:
            await self.close()
