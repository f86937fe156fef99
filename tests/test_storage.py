"""Storage backends: keys are checked, the filesystem store stays off the event loop."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from imgproxy.storage import check_key
from imgproxy.storage.files import FileStore


@pytest.mark.parametrize("key", [
    "", "..", "../x", "a/../b", "/abs", "a//b", ".hidden", "a\\b", "a b", "a\x00b",
    "x" * 129, "/".join("a" * 9), "é",
])
def test_bad_keys_are_refused(key, tmp_path):
    with pytest.raises(ValueError):
        check_key(key)
    store = FileStore(str(tmp_path))
    with pytest.raises(ValueError):
        asyncio.run(store.put(key, b"x"))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_put_get_list_delete_and_size_bound(tmp_path):
    async def scenario():
        store = FileStore(str(tmp_path), max_bytes=10)
        await store.put("images/abc/thumb", b"12345")
        await store.put("images/abc/large", b"6789")
        assert await store.get("images/abc/thumb") == b"12345"
        assert sorted(await store.list("images/abc/")) == ["images/abc/large", "images/abc/thumb"]
        await store.put("other", b"abcd")  # 13 bytes in all: the least recently used goes
        assert await store.get("images/abc/large") is None
        assert await store.get("images/abc/thumb") == b"12345"
        await store.delete("other")
        assert await store.get("other") is None
        await store.put("too-big", b"x" * 11)  # larger than the whole budget: not kept
        assert await store.get("too-big") is None
    asyncio.run(scenario())
    # a restart finds what is there, and removes what a crash left half-written
    (tmp_path / "im" / ".tmp-crash").parent.mkdir(exist_ok=True)
    (tmp_path / "im" / ".tmp-crash").write_bytes(b"half")
    again = FileStore(str(tmp_path), max_bytes=10)
    assert asyncio.run(again.list()) == ["images/abc/thumb"]
    assert not (tmp_path / "im" / ".tmp-crash").exists()


def test_file_reads_do_not_block_the_event_loop(tmp_path):
    """A read that cannot finish (a FIFO with no writer yet) leaves the loop running."""
    store = FileStore(str(tmp_path))
    path = store._path("slow")
    os.makedirs(os.path.dirname(path))
    os.mkfifo(path)
    watchdog = threading.Timer(10, lambda: os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    async def scenario():
        read = asyncio.create_task(store.get("slow"))
        ticks = 0
        for _ in range(5):  # the loop keeps turning while the read waits in its thread
            await asyncio.sleep(0.01)
            ticks += 1
        assert not read.done()
        fd = await asyncio.to_thread(os.open, path, os.O_WRONLY)
        os.write(fd, b"data")
        os.close(fd)
        return ticks, await read

    watchdog.start()  # if get() blocked the loop, this unblocks it so the test fails, not hangs
    try:
        ticks, data = asyncio.run(scenario())
    finally:
        watchdog.cancel()
    assert ticks == 5 and data == b"data"
