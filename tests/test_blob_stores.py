"""Every blob store behaves alike: the same tests on the filesystem, a real S3-compatible
server on loopback (moto's standalone server, refusing requests it cannot authenticate)
and Redis."""

from __future__ import annotations

import asyncio
import itertools
import os

import pytest
from support import _FAKE_ENV, BUCKET, REGION, start_redis, stop_redis

from imgproxy.storage import StorageError
from imgproxy.storage.files import FileStore

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory):
    proc, port = start_redis(tmp_path_factory.mktemp("redis"))
    yield port
    stop_redis(proc)


def s3_store(moto, monkeypatch, secret=None):
    """An S3Store whose credentials come from the environment, as boto3's chain finds them."""
    from imgproxy.storage.s3 import S3Store
    key_id, real_secret = moto.credentials
    for name, value in _FAKE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret or real_secret)
    # every test in a prefix of its own: the bucket outlives the test
    return S3Store(f"s3://{BUCKET}/t{next(_prefixes)}", endpoint=moto.endpoint, region=REGION,
                   connect_timeout=2, read_timeout=10)


@pytest.fixture(params=["files", "s3", "redis"])
def store(request, tmp_path, monkeypatch):
    if request.param == "files":
        yield FileStore(str(tmp_path / "blobs"))
    elif request.param == "s3":
        s3 = s3_store(request.getfixturevalue("moto"), monkeypatch)
        yield s3
        s3.close()
    else:
        import redis

        from imgproxy.storage.redis import PREFIX, RedisStore
        port = request.getfixturevalue("redis_port")
        redis.Redis(port=port).flushall()
        yield RedisStore(f"redis://127.0.0.1:{port}/0", ttl=0, max_entry_bytes=64 << 20, timeout=5)
        assert PREFIX


def test_round_trip(store):
    async def scenario():
        assert await store.get("a/b/thumb") is None
        assert await store.head("a/b/thumb") is None
        await store.put("a/b/thumb", b"12345")
        await store.put("a/b/large", b"")
        await store.put("a/c/other", b"xyz")
        assert await store.get("a/b/thumb") == b"12345"
        assert await store.head("a/b/thumb") == 5
        assert await store.head("a/b/large") == 0  # empty, but there
        assert await store.get("a/b/large") == b""
        assert sorted(await store.list("a/b/")) == ["a/b/large", "a/b/thumb"]
        assert sorted(await store.list()) == ["a/b/large", "a/b/thumb", "a/c/other"]
        assert await store.list("zzz") == []
        await store.put("a/b/thumb", b"replaced")
        assert await store.get("a/b/thumb") == b"replaced"
        await store.delete("a/b/thumb")
        await store.delete("a/b/thumb")  # deleting what is gone is no error
        assert await store.get("a/b/thumb") is None
        assert await store.head("a/b/thumb") is None
        assert sorted(await store.list("a/")) == ["a/b/large", "a/c/other"]
    asyncio.run(scenario())


def test_put_if_absent(store):
    async def scenario():
        assert await store.put_if_absent("up/one", b"first") is True
        assert await store.put_if_absent("up/one", b"second") is False
        assert await store.get("up/one") == b"first"
        # two writers at once: exactly one wins, and the blob is whole
        results = await asyncio.gather(*(store.put_if_absent("up/race", bytes([i]) * 100_000) for i in range(2)))
        assert sorted(results) == [False, True]
        assert await store.get("up/race") == bytes([results.index(True)]) * 100_000
        assert await store.list("up/") in (["up/one", "up/race"], ["up/race", "up/one"])
    asyncio.run(scenario())


def test_large_blob(store):
    data = os.urandom(5 << 20)

    async def scenario():
        await store.put("big", data)
        assert await store.head("big") == len(data)
        assert await store.get("big") == data
    asyncio.run(scenario())


@pytest.mark.parametrize("key", ["", "..", "../x", "a/../b", "/abs", "a//b", ".hidden", "a b", "é"])
def test_bad_keys_are_refused_before_any_io(store, key):
    async def scenario():
        for call in (store.get(key), store.head(key), store.delete(key), store.put(key, b"x"),
                     store.put_if_absent(key, b"x")):
            with pytest.raises(ValueError):
                await call
        assert await store.list() == []
    asyncio.run(scenario())


def test_s3_refuses_a_wrong_secret(moto, monkeypatch):
    store = s3_store(moto, monkeypatch, secret="not-the-secret")
    try:
        async def scenario():
            for call in (store.get("x"), store.head("x"), store.put("x", b"1"),
                         store.put_if_absent("x", b"1"), store.list(), store.delete("x")):
                with pytest.raises(StorageError):
                    await call
        asyncio.run(scenario())
    finally:
        store.close()
    assert moto.client("s3", *moto.credentials).list_objects_v2(Bucket=BUCKET, Prefix=store.prefix)["KeyCount"] == 0


def test_s3_urls(moto, monkeypatch):
    from imgproxy.storage.s3 import S3Store
    for url in ("http://bucket/x", "s3://", "s3://bucket/../x", "s3://bucket/p?x=1"):
        with pytest.raises(ValueError):
            S3Store(url, endpoint=moto.endpoint)
    store = S3Store(f"s3://{BUCKET}", endpoint=moto.endpoint)
    assert store.prefix == ""
    store.close()



def test_a_store_for_a_web_server_writes_readable_files_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        store = FileStore(str(tmp_path / "blobs"), fan_out=False, file_mode=0o644)
        asyncio.run(store.put("ab/abc/thumbnail.webp", b"x"))
    finally:
        os.umask(old)
    path = tmp_path / "blobs" / "ab" / "abc" / "thumbnail.webp"
    assert path.stat().st_mode & 0o777 == 0o644
    assert (path.parent.stat().st_mode & 0o777, path.parent.parent.stat().st_mode & 0o777) == (0o755, 0o755)
