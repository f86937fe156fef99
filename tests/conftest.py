from __future__ import annotations

import pytest
from support import Origin, Proxy


@pytest.fixture(scope="session")
def origin():
    o = Origin().start()
    yield o
    o.stop()


@pytest.fixture(scope="session")
def start_proxy(tmp_path_factory):
    """Start a real imgproxy process of its own with the given flags; all are stopped at the end."""
    started: list[Proxy] = []

    def start(*flags: str) -> Proxy:
        log = tmp_path_factory.mktemp("proxy") / "imgproxy.log"
        proxy = Proxy("--workers=1", "--allowed_hosts=127.0.0.1", *flags, log_path=log).start()
        started.append(proxy)
        return proxy

    yield start
    for p in started:  # all at once: each graceful stop takes a while
        p.terminate()
    for p in started:
        p.stop()


@pytest.fixture(scope="session")
def shared_proxy(start_proxy):
    """One proxy per set of flags, shared by every test asking for the same flags (a start
    costs about a second). Only for tests that do not stop it, nor need its counters, logs
    or caches fresh; a test that does takes `start_proxy`."""
    proxies: dict[tuple[str, ...], Proxy] = {}

    def get(*flags: str) -> Proxy:
        if flags not in proxies:
            proxies[flags] = start_proxy(*flags)
        return proxies[flags]

    return get


@pytest.fixture(scope="session")
def proxy(shared_proxy):
    """A proxy with default settings (one worker), shared by the tests of a run."""
    return shared_proxy()
