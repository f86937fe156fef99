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
    """Start a real imgproxy process with the given flags; all are stopped at the end."""
    started: list[Proxy] = []

    def start(*flags: str) -> Proxy:
        log = tmp_path_factory.mktemp("proxy") / "imgproxy.log"
        proxy = Proxy("--workers=1", "--allowed_hosts=127.0.0.1", *flags, log_path=log).start()
        started.append(proxy)
        return proxy

    yield start
    for p in started:
        p.stop()


@pytest.fixture(scope="session")
def proxy(start_proxy):
    """A proxy with default settings (one worker), shared by the tests of a run."""
    return start_proxy()
