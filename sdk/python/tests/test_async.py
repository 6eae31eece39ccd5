"""The asyncio SDK against a real paddock serve."""

import asyncio

from paddock import AsyncSandbox, NotFound


def test_async_surface(server):
    async def main():
        async with await AsyncSandbox.create(image="host", runtime="bwrap") as sbx:
            r = await sbx.commands.run("echo async; exit 4")
            assert (r.stdout, r.exit_code) == ("async\n", 4)
            seen = []
            await sbx.commands.run("echo a; echo b", on_stdout=seen.append)
            assert "".join(seen) == "a\nb\n"
            await sbx.files.write("/tmp/x.txt", "data")
            assert await sbx.files.read_text("/tmp/x.txt") == "data"
            assert await sbx.files.exists("/tmp/x.txt")
            assert await sbx.logs() == ""  # no main process, no log
            job = await sbx.commands.run("sleep 30", background=True)
            await job.signal("SIGKILL")
            assert (await job.wait(timeout=10)).signal == 9
            name = sbx.name
        try:
            await AsyncSandbox.connect(name)
        except NotFound:
            return
        raise AssertionError("the sandbox should be gone")

    asyncio.run(main())


def test_async_sandboxes_run_concurrently(server):
    async def one(i):
        async with await AsyncSandbox.create(image="host", runtime="bwrap") as sbx:
            return (await sbx.commands.run(f"echo {i}")).stdout

    async def main():
        return await asyncio.gather(*(one(i) for i in range(4)))

    assert asyncio.run(main()) == [f"{i}\n" for i in range(4)]
