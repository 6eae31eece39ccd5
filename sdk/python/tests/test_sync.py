"""The synchronous SDK against a real paddock serve."""

import time

import httpx
import pytest

from paddock import (
    CommandFailed,
    ConnectionFailed,
    Conflict,
    InvalidArgument,
    InvalidObject,
    NotFound,
    PermissionDenied,
    Sandbox,
    SandboxNotReady,
)


def bwrap(**kw):
    return Sandbox.create(image="host", runtime="bwrap", **kw)


def test_run_returns_output_and_exit_code(server):
    with bwrap() as sbx:
        r = sbx.commands.run("echo hello; echo oops >&2; exit 3")
        assert (r.stdout, r.stderr, r.exit_code) == ("hello\n", "oops\n", 3)
        argv = sbx.commands.run(["python3", "-c", "import sys; print(sys.argv[1:])", "a b"])
        assert argv.stdout == "['a b']\n"


def test_env_cwd_stdin_and_streaming_callbacks(server):
    with bwrap() as sbx:
        r = sbx.commands.run("echo $GREETING from $(pwd); cat", env={"GREETING": "hi"}, cwd="/tmp", stdin="piped\n")
        assert r.stdout == "hi from /tmp\npiped\n"
        chunks = []
        r = sbx.commands.run("for i in 1 2 3; do echo $i; done", on_stdout=chunks.append)
        assert "".join(chunks) == "1\n2\n3\n" == r.stdout


def test_timeouts_kill_the_command(server):
    with bwrap() as sbx:
        start = time.time()
        r = sbx.commands.run("sleep 30", timeout=0.5)
        assert r.timed_out and time.time() - start < 10


def test_check_raises_on_failure(server):
    with bwrap() as sbx:
        with pytest.raises(CommandFailed) as info:
            sbx.commands.run("exit 2", check=True)
        assert info.value.result.exit_code == 2


def test_background_processes(server):
    with bwrap() as sbx:
        job = sbx.commands.run("read line; echo got $line; sleep 30", background=True)
        job.send_stdin("ping\n")
        deadline = time.time() + 10
        out = b""
        while b"got ping" not in out and time.time() < deadline:
            out = b"".join(job.output())
            time.sleep(0.05)
        assert b"got ping" in out
        assert any(p.id == job.id for p in sbx.commands.list())
        job.signal("SIGTERM")
        assert job.wait(timeout=10).signal == 15


def test_files(server):
    with bwrap() as sbx:
        sbx.files.write("/tmp/dir/a.txt", "alpha")
        sbx.files.write("/tmp/dir/b.bin", bytes(range(256)), mode="0600")
        assert sbx.files.read_text("/tmp/dir/a.txt") == "alpha"
        assert sbx.files.read("/tmp/dir/b.bin") == bytes(range(256))
        names = {(e.name, e.type) for e in sbx.files.list("/tmp/dir")}
        assert names == {("a.txt", "file"), ("b.bin", "file")}
        assert sbx.files.exists("/tmp/dir/a.txt") and not sbx.files.exists("/tmp/dir/nope")
        with pytest.raises(Conflict):
            sbx.files.remove("/tmp/dir")
        sbx.files.remove("/tmp/dir", recursive=True)
        assert not sbx.files.exists("/tmp/dir")
        with pytest.raises((PermissionDenied, NotFound)):
            sbx.files.read("/../../etc/shadow")


def test_pause_resume_and_kill(server):
    sbx = bwrap()
    try:
        sbx.files.write("/tmp/keep.txt", "x")
        assert sbx.pause().phase == "Suspended"
        with pytest.raises(SandboxNotReady):
            sbx.commands.run("true")
        assert sbx.resume().ready
        assert sbx.commands.run("echo back").stdout == "back\n"
        assert sbx.suspend().phase == "Suspended" and sbx.resume().ready
    finally:
        sbx.kill()
        sbx.kill()  # idempotent
    with pytest.raises(NotFound):
        Sandbox.connect(sbx.name)


def test_logs_of_the_main_process(server):
    script = "echo started; until [ -e /tmp/stop ]; do sleep 0.05; done; echo stopping >&2"
    with bwrap(command=["sh", "-c", script]) as sbx:
        deadline = time.time() + 10
        while sbx.logs() != "started\n":
            assert time.time() < deadline, sbx.logs()
            time.sleep(0.05)
        sbx.files.write("/tmp/stop", "")
        seen = []
        assert sbx.logs(follow=True, on_output=seen.append) == "started\nstopping\n"
        assert "".join(seen) == "started\nstopping\n"


def test_context_manager_deletes_the_sandbox(server):
    with bwrap(name="scoped-sbx") as sbx:
        assert Sandbox.connect("scoped-sbx").name == sbx.name
    with pytest.raises(NotFound):
        Sandbox.connect("scoped-sbx")


def test_template_and_warm_pool(server, python_pool):
    with Sandbox.create(warm_pool=python_pool) as sbx:
        assert sbx.info.launch_type == "warm" and sbx.info.claim
        assert sbx.commands.run("echo warm").stdout == "warm\n"
    with Sandbox.create(template="py", env={"MODE": "cold"}) as sbx:
        assert sbx.commands.run("echo $MODE").stdout == "cold\n"
    with Sandbox.create(warm_pool=python_pool) as sbx:
        listed = {s.name: s for s in Sandbox.list()}
        assert listed[sbx.name].claim == sbx.info.claim


def test_errors_are_typed(server):
    with pytest.raises(NotFound):
        Sandbox.connect("does-not-exist")
    with pytest.raises(NotFound):
        Sandbox.create(template="no-such-template")
    with pytest.raises(InvalidObject) as info:
        Sandbox.create(image="host", runtime="bwrap", name="Bad_Name")
    assert "metadata.name" in str(info.value)
    with pytest.raises(InvalidArgument):
        Sandbox.create(image="host", template="py")
    with pytest.raises(ConnectionFailed):
        Sandbox.connect("x", url="http://127.0.0.1:1")


def test_egress_record_of_a_sandbox_with_a_policy(server):
    import httpx

    manifest = """
apiVersion: paddock.dev/v1alpha1
kind: SandboxPolicy
metadata: {name: only-example}
spec:
  egress:
    rules:
    - {name: example, domains: [example.test], ports: [443]}
"""
    headers = {"Authorization": f"Bearer {server['token']}", "Content-Type": "application/yaml"}
    httpx.post(f"{server['url']}/v1/apply", content=manifest, headers=headers, timeout=30).raise_for_status()
    with bwrap(policy="only-example") as sbx:
        # 192.0.2.1 is a documentation address: no rule names it, so the proxy refuses it
        # without dialing anything.
        r = sbx.commands.run("curl -sS -o /dev/null -w '%{http_code}' http://192.0.2.1/")
        assert r.stdout == "403", r.stderr
        records = sbx.egress()
        assert [(x.host, x.port, x.allowed, x.kind) for x in records] == [("192.0.2.1", 80, False, "http")]
        assert records[0].reason.startswith("no egress rule allows 192.0.2.1 port 80")
        seen = []
        sbx.follow_egress(lambda rec: (seen.append(rec), False)[1])
        assert [x.host for x in seen] == ["192.0.2.1"]
    with bwrap() as plain:
        assert plain.egress() == []
        r = plain.commands.run("curl -sS -m 2 http://192.0.2.1/ || echo no-network")
        assert "no-network" in r.stdout


def test_mint_token_reaches_one_path_of_one_sandbox(server):
    with bwrap() as sbx:
        scoped = sbx.mint_token(method="GET", path="/v1/health", ttl_seconds=600)
        assert scoped.token.startswith("v2.") and scoped.sandbox == sbx.name and scoped.uid
        headers = {"Authorization": f"Bearer {scoped.token}", "X-Sandbox-ID": sbx.name}
        assert httpx.get(f"{server['url']}/v1/health", headers=headers, timeout=10).status_code == 200
        other = httpx.get(f"{server['url']}/v1/metadata", headers=headers, timeout=10)
        assert (other.status_code, other.json()) == (403, {"detail": "forbidden"})


def test_file_operations_and_a_watch(server):
    import threading

    with bwrap() as sbx:
        assert sbx.files.mkdir("/tmp/w/in").type == "directory"
        sbx.files.write("/tmp/w/in/a.txt", "alpha")
        seen = []
        ready = threading.Event()

        def follow():
            ready.set()
            sbx.files.watch("/tmp/w", lambda e: seen.append((e.type, e.path)) or len(seen) < 1, recursive=True)

        watcher = threading.Thread(target=follow)
        watcher.start()
        ready.wait()
        time.sleep(0.3)
        sbx.files.copy("/tmp/w/in", "/tmp/w/out")
        watcher.join(timeout=10)
        assert ("create", "/tmp/w/out") in seen, seen
        sbx.files.move("/tmp/w/out/a.txt", "/tmp/w/b.txt")
        stat = sbx.files.stat("/tmp/w/b.txt")
        assert (stat.type, stat.size) == ("file", 5)
        with pytest.raises(NotFound):
            sbx.files.stat("/tmp/w/out/a.txt")
