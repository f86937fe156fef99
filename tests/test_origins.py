"""Path URLs over several origins: safe paths (sources/paths.py), the trusted origins of
HttpLoader, and OriginsLoader's master-then-secondaries fetch against real loopback servers."""

from __future__ import annotations

import asyncio
import random
import time
from posixpath import normpath
from urllib.parse import unquote, urlsplit

import pytest
from support import Origin

from imgproxy.config import Settings
from imgproxy.errors import ProxyError
from imgproxy.sources import Validators
from imgproxy.sources.http import HttpLoader
from imgproxy.sources.origins import OriginsLoader
from imgproxy.sources.paths import join, normalise_path

JPEG = b"\xff\xd8\xff\xe0" + b"jpeg" * 100


class Reply:
    """A route of a support.Origin that logs (path, started, finished) and may wait first."""

    def __init__(self, log: list, status: int = 200, body: bytes = JPEG, delay: float = 0.0,
                 headers: dict[str, str] | None = None):
        self.log, self.status, self.body, self.delay, self.headers = log, status, body, delay, headers or {}

    def __call__(self, handler) -> None:
        started = time.monotonic()
        if self.delay:
            time.sleep(self.delay)
        status = 304 if self.status == 200 and handler.headers.get("If-None-Match") == self.headers.get("ETag") \
            and "ETag" in self.headers else self.status
        body = b"" if status == 304 else self.body
        handler.send_response(status)
        for k, v in self.headers.items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(body)))
        # Logged before the body goes out: the loader cannot have the reply before the log has it.
        self.log.append((handler.path, started, time.monotonic()))
        handler.end_headers()
        try:
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def servers():
    started = []
    for _ in range(3):
        started.append(Origin().start())
    yield started
    for o in started:
        o.stop()


@pytest.fixture
def origins(servers):
    for o in servers:
        o.routes.clear()
        o.hits.clear()
        o.requests.clear()
    return servers


def base(origin: Origin) -> str:
    return origin.url("/images/")


def settings(timeout: float = 5.0, **changes) -> Settings:
    return Settings(**{"timeout": timeout, "allowed_hosts": (), **changes})


def trusted(*origins: Origin) -> tuple[str, ...]:
    return tuple(f"127.0.0.1:{o.port}" for o in origins)


def loader(origins, hedge: float = 0.2, timeout: float = 5.0, **changes) -> tuple[OriginsLoader, list]:
    """Made inside the loop that runs it: the curl client binds to the current loop."""
    counted: list[tuple[str, str]] = []
    fetch = HttpLoader(settings(timeout, **changes), trusted_hosts=trusted(*origins))
    return OriginsLoader(tuple(base(o) for o in origins), fetch, hedge,
                         lambda origin, outcome: counted.append((origin, outcome))), counted


def run(load):
    """Run `load()` (a coroutine function) in a fresh loop; (result or ProxyError, seconds)."""
    async def timed():
        start = time.monotonic()
        try:
            result = await load()
        except ProxyError as e:
            result = e
        return result, time.monotonic() - start
    return asyncio.run(timed())


def load_with(origins, ref, validators=None, **kwargs):
    counted = []

    async def go():
        ldr, log = loader(origins, **kwargs)
        counted.append(log)
        try:
            return await ldr.load(ref, validators)
        finally:
            ldr.close()
    result, seconds = run(go)
    return result, seconds, counted[0]


# --- paths -------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, canonical", [
    ("/photos/cat.jpg", "/photos/cat.jpg"),
    ("photos/cat.jpg", "/photos/cat.jpg"),
    ("/caf%C3%A9.jpg", "/caf%C3%A9.jpg"),
    ("/café.jpg", "/caf%C3%A9.jpg"),
    ("/%7Euser/a%3Bb.jpg", "/~user/a;b.jpg"),
    ("/a;b/c@d:e,f=g+h.jpg", "/a;b/c@d:e,f=g+h.jpg"),
    ("/what%3F/and%23hash.jpg", "/what%3F/and%23hash.jpg"),
    ("/100%25.jpg", "/100%25.jpg"),
    ("/...jpg/x..y", "/...jpg/x..y"),
])
def test_a_path_has_one_canonical_form(raw, canonical):
    assert normalise_path(raw) == canonical
    assert normalise_path(canonical) == canonical  # normalising again changes nothing


@pytest.mark.parametrize("raw", [
    "/../secret.png", "/a/../../secret.png", "/a/./b.jpg", "/..", "/.", "..", "/a/..",
    "/%2e%2e/secret.png", "/%2E%2E/secret.png", "/a%2fb.jpg", "/a%2F..%2Fb", "/a%5cb", "/a%5C..",
    "/%252e%252e/secret.png", "/%252f", "/a\\b.jpg", "/a%5c..%5cb",
    "//evil.example/x.jpg", "/a//b.jpg", "/a/", "/", "", "//",
    "/a b.jpg", "/a%20b.jpg", "/a%09b", "/a\tb", "/a%0d%0aX-Injected:1", "/a%00.jpg", "/a\x00",
    "/a%7f", "/a%c2%85b", "/a%e2%80%a8b", "/a%C0%AE%C0%AE/x", "/a%ff.jpg",
    "/" + "a" * 2048, "/a" * 33, "/" + "%C3%A9" * 400,
])
def test_unsafe_paths_are_refused_with_400(raw):
    with pytest.raises(ProxyError) as e:
        normalise_path(raw)
    assert (e.value.status, e.value.code) == (400, 8)


def test_thirty_two_segments_are_enough():
    assert normalise_path("/a" * 32) == "/a" * 32


@pytest.mark.parametrize("base", ["http://o.example/images/", "http://o.example/images",
                                  "http://o.example", "http://o.example/", "https://o.example:8443/a/b/"])
def test_join_puts_the_path_under_the_base(base):
    root = urlsplit(base).path.rstrip("/")
    assert join(base, "/photos/cat.jpg") == f"{base.rstrip('/')}/photos/cat.jpg"
    assert urlsplit(join(base, "/photos/cat.jpg")).path == root + "/photos/cat.jpg"


def test_join_never_leaves_the_base_path():
    # Property-style: random paths made of hostile pieces either are refused with 400 or stay
    # under the base, on the base's host, whatever a server does with dot segments.
    pieces = ["..", ".", "%2e", "%2E", "%252e", "%2f", "%2F", "%5c", "\\", "/", "//", "%00", "%0a", " ",
              "a", "b.jpg", "é", "%C3%A9", "%25", "?", "#", ";", "@", ":", "evil.example", "http:", "~",
              "%", "%2", "%u002e", "\u2025", "\uff0e", "%e2%80%a5"]
    rng = random.Random(13)
    bases = ["http://o.example/images/", "http://o.example/images", "http://o.example"]
    refused = accepted = 0
    for _ in range(5000):
        raw = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        if rng.random() < 0.5:
            raw = "/" + raw
        for b in bases:
            try:
                url = join(b, raw)
            except ProxyError as e:
                assert e.status == 400
                refused += 1
                continue
            accepted += 1
            parts = urlsplit(url)
            root = urlsplit(b).path.rstrip("/")
            assert parts.netloc == "o.example" and not parts.query and not parts.fragment, (raw, url)
            assert parts.path.startswith(root + "/"), (raw, url)
            for seg in parts.path[len(root) + 1:].split("/"):
                decoded = unquote(seg)
                assert seg and decoded not in (".", "..") and "/" not in decoded and "\\" not in decoded, (raw, url)
            # Even a server that decodes and normalises stays under the root.
            assert normpath(unquote(parts.path)).startswith(root + "/"), (raw, url)
    assert refused and accepted  # both kinds were tried


def test_join_refuses_a_base_that_is_not_an_origin():
    for bad in ["ftp://o.example/", "/images/", "http://o.example/?x=1", "http://u@o.example/"]:
        with pytest.raises(ValueError):
            join(bad, "/a.jpg")


# --- HttpLoader's trusted hosts ---------------------------------------------------------------

def test_loopback_origins_are_fetched_only_when_trusted(origins):
    master, other, _ = origins
    log: list = []
    master.routes["/images/a.jpg"] = Reply(log)
    url = master.url("/images/a.jpg")

    def fetch(trusted_hosts, target=url, **changes):
        async def go():
            ldr = HttpLoader(settings(**changes), trusted_hosts=trusted_hosts)
            try:
                return await ldr.load(target)
            finally:
                ldr.close()
        return run(go)[0]

    refused = fetch(())
    assert isinstance(refused, ProxyError) and refused.status == 403
    assert log == []  # refused before connecting
    assert fetch(trusted(master)).body == JPEG
    assert fetch((f"127.0.0.1:{other.port}",)).status == 403  # host:port matches the port too
    assert fetch(("127.0.0.1",)).body == JPEG  # a bare host matches any port
    # a redirect is followed to a trusted host, even when allowed_hosts names others ...
    master.serve("/hop", b"", status=302, headers={"Location": url})
    assert fetch(trusted(master), master.url("/hop"), allowed_hosts=("example.com",)).body == JPEG
    # ... and not to an untrusted loopback address
    other.routes["/images/a.jpg"] = Reply(log)
    master.serve("/away", b"", status=302, headers={"Location": other.url("/images/a.jpg")})
    assert fetch(trusted(master), master.url("/away")).status == 403
    assert fetch(trusted(master), master.url("/away"), allowed_hosts=("example.com",)).status == 403
    assert [p for p, *_ in log] == ["/images/a.jpg"] * 3


def test_a_cancelled_fetch_frees_its_slot(origins):
    # One fetch at a time: a fetch nobody awaits any more must not hold the slot until a slow
    # origin answers, or a losing origin would queue the next requests behind it.
    slow, fast = origins[0], origins[1]
    log: list = []
    slow.routes["/images/slow.jpg"] = Reply(log, 200, JPEG, delay=5.0)
    fast.routes["/images/fast.jpg"] = Reply(log)

    async def go():
        ldr = HttpLoader(settings(timeout=10.0, max_requests=1), trusted_hosts=trusted(slow, fast))
        try:
            task = asyncio.create_task(ldr.load(slow.url("/images/slow.jpg")))
            await asyncio.sleep(0.3)
            task.cancel()
            start = time.monotonic()
            source = await ldr.load(fast.url("/images/fast.jpg"))
            return source.body, time.monotonic() - start
        finally:
            ldr.close()
    body, seconds = asyncio.run(go())
    assert body == JPEG and seconds < 3.5  # curl drops it within a second or so, not after 5 s


# --- OriginsLoader --------------------------------------------------------------------------

def test_the_master_serves_when_it_can(origins):
    master, s1, s2 = origins
    log: list = []
    master.routes["/images/photos/cat.jpg"] = Reply(log, headers={"ETag": '"m1"'})
    source, _, counted = load_with(origins, "/photos/cat.jpg")
    assert source.body == JPEG and source.validators == Validators('"m1"')
    assert counted == [(base(master), "ok")]
    assert s1.hits == {} and s2.hits == {}


def test_master_not_found_asks_the_secondaries_in_parallel(origins):
    master, s1, s2 = origins
    log: list = []
    master.routes["/images/photos/cat.jpg"] = Reply(log, 404, b"no")
    s1.routes["/images/photos/cat.jpg"] = Reply(log, 404, b"no", delay=0.4)
    s2.routes["/images/photos/cat.jpg"] = Reply(log, 200, JPEG + b"s2", delay=0.8)
    source, seconds, counted = load_with(origins, "/photos/cat.jpg", hedge=5.0)
    assert source.body == JPEG + b"s2"
    (_, _, master_end), (_, s1_start, s1_end), (_, s2_start, s2_end) = sorted(log, key=lambda r: r[1])
    # the master's 404 started the fallback at once, not after the hedge delay
    assert seconds < 4.0 and s1_start >= master_end and s2_start >= master_end
    # both secondaries were asked together: each started before the other finished
    assert s2_start < s1_end and s1_start < s2_end
    assert sorted(counted) == sorted([(base(master), "not_found"), ("*", "fallback"),
                                      (base(s1), "not_found"), (base(s2), "ok")])


def test_a_slow_master_is_hedged_and_not_awaited(origins):
    master, s1, s2 = origins
    log: list = []
    master.routes["/images/a.jpg"] = Reply(log, 200, JPEG + b"master", delay=4.0)
    s1.routes["/images/a.jpg"] = Reply(log, 503, b"down")
    s2.routes["/images/a.jpg"] = Reply(log, 200, JPEG + b"s2", delay=0.1)
    source, seconds, counted = load_with(origins, "/a.jpg", hedge=0.2)
    assert source.body == JPEG + b"s2"
    assert seconds < 3.0  # well below the master's 4 s
    assert set(counted) == {(base(master), "cancelled"), ("*", "fallback"), (base(s1), "failed"),
                            (base(s2), "ok")}
    assert len(counted) == 4


def test_a_slow_master_still_wins_when_the_secondaries_fail(origins):
    master, s1, s2 = origins
    log: list = []
    master.routes["/images/a.jpg"] = Reply(log, 200, JPEG + b"master", delay=0.6)
    s1.routes["/images/a.jpg"] = Reply(log, 404, b"no")
    s2.routes["/images/a.jpg"] = Reply(log, 503, b"down")
    source, _, counted = load_with(origins, "/a.jpg", hedge=0.1)
    assert source.body == JPEG + b"master"
    assert counted[-1] == (base(master), "ok")


def test_every_origin_not_found_is_404(origins):
    log: list = []
    for o in origins:
        o.routes["/images/a.jpg"] = Reply(log, 404 if o is not origins[1] else 410, b"no")
    error, _, counted = load_with(origins, "/a.jpg")
    assert isinstance(error, ProxyError) and (error.status, error.code) == (404, 301)
    assert "3 origins" in error.reason and "127.0.0.1" not in error.reason
    assert len(log) == 3 and [o for _, o in counted].count("not_found") == 3


def test_every_origin_failing_is_502(origins):
    log: list = []
    for o in origins:
        o.routes["/images/a.jpg"] = Reply(log, 503, b"down")
    error, _, _ = load_with(origins, "/a.jpg")
    assert isinstance(error, ProxyError) and (error.status, error.code) == (502, 301)
    assert len(log) == 3


def test_not_found_and_failed_is_502(origins):
    log: list = []
    origins[0].routes["/images/a.jpg"] = Reply(log, 404, b"no")
    origins[1].routes["/images/a.jpg"] = Reply(log, 500, b"oops")
    error, _, _ = load_with(origins[:2], "/a.jpg")
    assert error.status == 502


def test_a_failure_and_a_timeout_is_504(origins):
    master, s1, _ = origins
    log: list = []
    master.routes["/images/a.jpg"] = Reply(log, 503, b"down")
    s1.routes["/images/a.jpg"] = Reply(log, 200, JPEG, delay=3.0)
    error, seconds, counted = load_with([master, s1], "/a.jpg", timeout=0.8)
    assert isinstance(error, ProxyError) and (error.status, error.code) == (504, 301)
    assert seconds < 2.5
    assert counted[-1] == (base(s1), "timeout")


def test_one_origin_alone(origins):
    master = origins[0]
    log: list = []
    master.routes["/images/a.jpg"] = Reply(log, 503, b"down")
    error, _, counted = load_with([master], "/a.jpg")
    assert error.status == 502 and counted == [(base(master), "failed")]  # no fallback to count
    master.routes["/images/a.jpg"] = Reply(log, 404, b"no")
    assert load_with([master], "/a.jpg")[0].status == 404


def test_too_large_fails_at_once(origins):
    master, s1, s2 = origins
    log: list = []
    master.routes["/images/a.jpg"] = Reply(log, 200, JPEG * 10)
    s1.routes["/images/a.jpg"] = Reply(log)
    error, _, counted = load_with(origins, "/a.jpg", max_source_bytes=len(JPEG) * 2)
    assert isinstance(error, ProxyError) and (error.status, error.code) == (413, 301)
    assert s1.hits == {} and s2.hits == {}
    assert counted == [(base(master), "failed")]


def test_traversal_never_reaches_an_origin(origins):
    log: list = []
    for o in origins:
        o.routes["/secret.png"] = Reply(log, 200, b"secret")
        o.routes["/images/ok.jpg"] = Reply(log, 404, b"no")
    for ref in ["/../secret.png", "/%2e%2e/secret.png", "/..%2fsecret.png", "//127.0.0.1/secret.png",
                "/a/..%5c..%5csecret.png", "/%252e%252e/secret.png", "..\\secret.png"]:
        error, _, counted = load_with(origins, ref)
        assert isinstance(error, ProxyError) and error.status == 400, ref
        assert counted == []
    assert load_with(origins, "/ok.jpg")[0].status == 404
    requested = {path for o in origins for path in o.hits}
    assert requested == {"/images/ok.jpg"}


def test_a_conditional_load_asks_the_master_only(origins):
    master, s1, _ = origins
    log: list = []
    master.routes["/images/a.jpg"] = Reply(log, headers={"ETag": '"v1"'})
    s1.routes["/images/a.jpg"] = Reply(log, headers={"ETag": '"v1"'})
    result, _, counted = load_with(origins, "/a.jpg", Validators('"v1"'))
    assert result is None and counted == [(base(master), "not_modified")]
    assert master.requests[-1].get("If-None-Match") == '"v1"'
    # the master lost it: the secondaries are asked, unconditionally, and send it whole
    master.routes["/images/a.jpg"] = Reply(log, 404, b"no")
    result, _, _ = load_with(origins, "/a.jpg", Validators('"v1"'))
    assert result.body == JPEG
    assert "If-None-Match" not in s1.requests[-1]


def test_cancelling_the_load_cancels_every_origin(origins):
    log: list = []
    for o in origins:
        o.routes["/images/a.jpg"] = Reply(log, 200, JPEG, delay=2.0)

    async def go():
        ldr, counted = loader(origins, hedge=0.05)
        task = asyncio.create_task(ldr.load("/a.jpg"))
        await asyncio.sleep(0.4)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)  # the origins' tasks see their cancellation
        ldr.close()
        return counted
    counted = asyncio.run(go())
    assert sorted(o for _, o in counted) == ["cancelled"] * 3 + ["fallback"]


def test_origins_are_checked_when_made():
    fetch = HttpLoader(settings())
    try:
        with pytest.raises(ValueError):
            OriginsLoader(("file:///etc/",), fetch, 0.1)
        with pytest.raises(ValueError):
            OriginsLoader((), fetch, 0.1)
    finally:
        fetch.close()

