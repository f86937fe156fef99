"""The cache of originals (sources/cache.py) in front of a real HttpLoader and a loopback origin."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import pytest
from support import Origin

from imgproxy.config import Settings
from imgproxy.errors import ProxyError
from imgproxy.sources import Validators
from imgproxy.sources.cache import ENTRY_OVERHEAD, CachingLoader
from imgproxy.sources.http import HttpLoader
from imgproxy.storage.files import FileStore


class Versioned:
    """A route serving one version of a file, answering 304 to its ETag; `etag=None` sends none."""

    def __init__(self, body: bytes, etag: str | None = '"v1"', delay: float = 0.0, status: int = 200):
        self.body, self.etag, self.delay, self.status = body, etag, delay, status

    def __call__(self, handler) -> None:
        if self.delay:
            time.sleep(self.delay)
        not_modified = self.etag is not None and handler.headers.get("If-None-Match") == self.etag
        status = 304 if not_modified and self.status == 200 else self.status
        body = b"" if status == 304 else self.body
        handler.send_response(status)
        if self.etag is not None:
            handler.send_header("ETag", self.etag)
        handler.send_header("Cache-Control", "max-age=60")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    o = Origin()
    yield o.start()
    o.stop()


@pytest.fixture
def origin(server):
    server.routes.clear()
    server.hits.clear()
    server.requests.clear()
    return server


def run(origin, scenario, memory_bytes=10_000_000, store=None, ttl=60.0):
    """`scenario(cache, counted)` inside a loop, with a CachingLoader over a real HttpLoader."""
    async def go():
        counted: list[str] = []
        fetch = HttpLoader(Settings(timeout=5.0, allowed_hosts=()), trusted_hosts=(f"127.0.0.1:{origin.port}",))
        cache = CachingLoader(fetch, memory_bytes, store, ttl, counted.append)
        try:
            return await scenario(cache, counted)
        finally:
            cache.close()
    return asyncio.run(go())


def conditional(origin) -> list[str | None]:
    return [r.get("If-None-Match") for r in origin.requests]


def test_ten_loads_ask_the_origin_once(origin):
    origin.routes["/a.jpg"] = Versioned(b"A" * 1000)
    url = origin.url("/a.jpg")

    async def scenario(cache, counted):
        sources = [await cache.load(url) for _ in range(10)]
        return sources, counted
    sources, counted = run(origin, scenario)
    assert all(s.body == b"A" * 1000 and s.validators == Validators('"v1"') for s in sources)
    assert sources[0].headers["Cache-Control"] == "max-age=60"
    assert origin.hits == {"/a.jpg": 1}
    assert counted == ["miss"] + ["hit"] * 9


@pytest.mark.parametrize("with_store", [False, True])
def test_fifty_concurrent_loads_share_one_request(origin, tmp_path, with_store):
    origin.routes["/a.jpg"] = Versioned(b"A" * 1000, delay=0.2)
    url = origin.url("/a.jpg")

    async def scenario(cache, counted):
        return await asyncio.gather(*(cache.load(url) for _ in range(50))), counted
    sources, counted = run(origin, scenario, store=FileStore(str(tmp_path)) if with_store else None)
    assert len(sources) == 50 and all(s.body == b"A" * 1000 for s in sources)
    assert origin.hits == {"/a.jpg": 1}
    assert counted == ["miss"] * 50  # each load counts the one inner load it shared


def test_a_caller_giving_up_does_not_cancel_the_others(origin):
    origin.routes["/a.jpg"] = Versioned(b"A", delay=0.3)
    url = origin.url("/a.jpg")

    async def scenario(cache, counted):
        first = asyncio.create_task(cache.load(url))
        second = asyncio.create_task(cache.load(url))
        await asyncio.sleep(0.1)
        first.cancel()
        return (await second).body
    assert run(origin, scenario) == b"A"
    assert origin.hits == {"/a.jpg": 1}


def test_a_stale_entry_is_revalidated_and_kept_on_304(origin):
    origin.routes["/a.jpg"] = Versioned(b"A" * 100)
    url = origin.url("/a.jpg")

    async def scenario(cache, counted):
        first = await cache.load(url)
        await asyncio.sleep(0.3)
        second = await cache.load(url)  # stale: asks "changed?"
        third = await cache.load(url)  # fresh again
        return first, second, third, counted
    first, second, third, counted = run(origin, scenario, ttl=0.2)
    assert first.body == second.body == third.body == b"A" * 100
    assert second.validators == Validators('"v1"')
    assert conditional(origin) == [None, '"v1"']
    assert counted == ["miss", "revalidated", "hit"]


def test_a_changed_origin_replaces_the_entry(origin):
    route = origin.routes["/a.jpg"] = Versioned(b"old")
    url = origin.url("/a.jpg")

    async def scenario(cache, counted):
        await cache.load(url)
        route.body, route.etag = b"new", '"v2"'
        cached = await cache.load(url)  # still fresh: the old one
        await asyncio.sleep(0.3)
        changed = await cache.load(url)
        again = await cache.load(url)
        return cached, changed, again, counted
    cached, changed, again, counted = run(origin, scenario, ttl=0.2)
    assert cached.body == b"old"
    assert changed.body == again.body == b"new" and changed.validators == Validators('"v2"')
    assert conditional(origin) == [None, '"v1"']
    assert counted == ["miss", "hit", "refreshed", "hit"]


def test_a_source_without_validators_is_fetched_again_after_the_ttl(origin):
    origin.routes["/a.jpg"] = Versioned(b"A", etag=None)
    url = origin.url("/a.jpg")

    async def scenario(cache, counted):
        await cache.load(url)
        await cache.load(url)
        await asyncio.sleep(0.3)
        await cache.load(url)
        return counted
    assert run(origin, scenario, ttl=0.2) == ["miss", "hit", "refreshed"]
    assert conditional(origin) == [None, None]


def test_a_source_gone_on_revalidation_is_dropped(origin, tmp_path):
    route = origin.routes["/a.jpg"] = Versioned(b"A")
    url = origin.url("/a.jpg")
    store = FileStore(str(tmp_path))

    async def scenario(cache, counted):
        await cache.load(url)
        route.status = 404
        await asyncio.sleep(0.3)
        with pytest.raises(ProxyError) as e:
            await cache.load(url)
        return e.value.status, await store.list()
    assert run(origin, scenario, store=store, ttl=0.2) == (404, [])


def test_the_callers_validators(origin):
    route = origin.routes["/a.jpg"] = Versioned(b"A")
    url = origin.url("/a.jpg")
    v1, v0 = Validators('"v1"'), Validators('"v0"')

    async def scenario(cache, counted):
        first = await cache.load(url, v0)  # nothing cached: loaded, and not what the caller has
        same = await cache.load(url, v1)  # fresh and the same version
        older = await cache.load(url, v0)
        await asyncio.sleep(0.3)
        revalidated = await cache.load(url, v1)  # stale, origin says 304: still the caller's version
        route.body, route.etag = b"B", '"v2"'
        await asyncio.sleep(0.3)
        changed = await cache.load(url, v1)
        return first, same, older, revalidated, changed
    first, same, older, revalidated, changed = run(origin, scenario, ttl=0.2)
    assert first.body == b"A" and same is None and older.body == b"A" and revalidated is None
    assert changed.body == b"B" and changed.validators == Validators('"v2"')
    assert conditional(origin) == [None, '"v1"', '"v1"']  # the entry's own validators, not the caller's


def test_the_memory_tier_evicts_the_least_recently_used(origin):
    for name in "abc":
        origin.routes[f"/{name}.jpg"] = Versioned(name.encode() * 1000)

    async def scenario(cache, counted):
        for name in "ab":
            await cache.load(origin.url(f"/{name}.jpg"))
        await cache.load(origin.url("/a.jpg"))  # a is now the most recently used
        await cache.load(origin.url("/c.jpg"))  # room for two: b goes
        for name in "acb":
            await cache.load(origin.url(f"/{name}.jpg"))
        return counted
    counted = run(origin, scenario, memory_bytes=2 * (1000 + ENTRY_OVERHEAD))
    assert counted == ["miss", "miss", "hit", "miss", "hit", "hit", "miss"]
    assert origin.hits == {"/a.jpg": 1, "/b.jpg": 2, "/c.jpg": 1}


def test_a_source_larger_than_the_memory_tier_is_not_kept_in_memory(origin):
    origin.routes["/big.jpg"] = Versioned(b"B" * 5000)

    async def scenario(cache, counted):
        await cache.load(origin.url("/big.jpg"))
        await cache.load(origin.url("/big.jpg"))
        return counted
    assert run(origin, scenario, memory_bytes=4000) == ["miss", "miss"]
    assert run(origin, scenario, memory_bytes=0) == ["miss", "miss"]  # 0: no memory tier


def test_the_disk_tier_survives_a_new_loader(origin, tmp_path):
    origin.routes["/a.jpg"] = Versioned(b"A" * 1000)
    url = origin.url("/a.jpg")

    async def scenario(cache, counted):
        return await cache.load(url), counted
    first, _ = run(origin, scenario, store=FileStore(str(tmp_path)))
    again, counted = run(origin, scenario, memory_bytes=0, store=FileStore(str(tmp_path)))
    assert again == first and counted == ["hit"]
    assert origin.hits == {"/a.jpg": 1}
    # keyed by a digest of the reference, never the reference itself
    assert asyncio.run(FileStore(str(tmp_path)).list()) == [hashlib.sha256(url.encode()).hexdigest()]


def test_the_disk_tier_keeps_the_age(origin, tmp_path):
    origin.routes["/a.jpg"] = Versioned(b"A")
    url = origin.url("/a.jpg")

    async def scenario(cache, counted):
        await cache.load(url)
        return counted
    run(origin, scenario, store=FileStore(str(tmp_path)), ttl=0.2)
    time.sleep(0.3)
    assert run(origin, scenario, store=FileStore(str(tmp_path)), ttl=0.2) == ["revalidated"]
    assert conditional(origin) == [None, '"v1"']


@pytest.mark.parametrize("damage", ["flip", "truncate", "junk", "empty"])
def test_a_corrupt_disk_entry_is_fetched_again(origin, tmp_path, damage):
    origin.routes["/a.jpg"] = Versioned(b"A" * 1000)
    url = origin.url("/a.jpg")

    async def scenario(cache, counted):
        return await cache.load(url), counted
    run(origin, scenario, store=FileStore(str(tmp_path)))
    key = hashlib.sha256(url.encode()).hexdigest()
    path = os.path.join(tmp_path, key[:2], key)
    data = open(path, "rb").read()
    data = {"flip": data[:-10] + b"B" + data[-9:], "truncate": data[:-1], "junk": b"IPS1\xff\xff",
            "empty": b""}[damage]
    open(path, "wb").write(data)
    again, counted = run(origin, scenario, memory_bytes=0, store=FileStore(str(tmp_path)))
    assert again.body == b"A" * 1000 and counted == ["miss"]
    assert origin.hits == {"/a.jpg": 2}
    assert open(path, "rb").read() != data  # rewritten whole
