from __future__ import annotations

import compileall
import os

import pytest
from support import ROOT, Moto, Origin, Proxy


def pytest_xdist_auto_num_workers(config):
    # `-n auto`: one worker more than cores, since much of the suite waits on servers,
    # origins and timeouts (on 2 cores: 95-99 s against 106-107 s with 2, side by side)
    return len(os.sched_getaffinity(0)) + 1


def pytest_configure(config):
    # The suite starts some 80 servers, fork servers and CLIs, each importing the package:
    # with PYTHONDONTWRITEBYTECODE set (as in many containers) every one of them would
    # compile it from source again. Compile it once, before any starts (xdist's workers
    # come after this, in the controller).
    if not hasattr(config, "workerinput"):
        compileall.compile_dir(ROOT / "imgproxy", quiet=1)


@pytest.fixture(scope="session")
def origin():
    o = Origin().start()
    yield o
    o.stop()


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """moto's S3 server (support.Moto), one per module that asks for it."""
    server = Moto(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def launch_proxy(tmp_path_factory):
    """Launch a real imgproxy process with the given flags, not waiting for it to listen;
    all are stopped at the end."""
    started: list[Proxy] = []

    def launch(*flags: str) -> Proxy:
        log = tmp_path_factory.mktemp("proxy") / "imgproxy.log"
        # State files in the test's own folder (a later flag overrides): never the checkout's
        # imgproxy-state/, which every server of a run would share
        state = (f"--job_db={log.parent / 'jobs.sqlite3'}", f"--store_db={log.parent / 'store.sqlite3'}")
        proxy = Proxy("--workers=1", "--allowed_hosts=127.0.0.1", *state, *flags, log_path=log).launch()
        started.append(proxy)
        return proxy

    yield launch
    for p in started:  # all at once: each graceful stop takes a while
        p.terminate()
    for p in started:
        p.stop()


@pytest.fixture(scope="session")
def start_proxy(launch_proxy):
    """Start a real imgproxy process of its own with the given flags."""
    return lambda *flags: launch_proxy(*flags).wait_ready()


class SharedProxies:
    """One proxy per set of flags, shared by every test asking for the same flags (a start
    costs about a second). Only for tests that do not stop it, nor need its counters, logs
    or caches fresh; a test that does takes `start_proxy`."""

    def __init__(self, launch):
        self.launch = launch
        self.proxies: dict[tuple[str, ...], Proxy] = {}

    def __call__(self, *flags: str) -> Proxy:
        return self._launched(flags).wait_ready()

    def warm(self, *flag_sets: tuple[str, ...]) -> None:
        """Launch these side by side now, so the tests asking for them later wait less."""
        for flags in flag_sets:
            self._launched(tuple(flags))

    def _launched(self, flags: tuple[str, ...]) -> Proxy:
        if flags not in self.proxies:
            self.proxies[flags] = self.launch(*flags)
        return self.proxies[flags]


@pytest.fixture(scope="session")
def shared_proxy(launch_proxy):
    return SharedProxies(launch_proxy)


@pytest.fixture(scope="session")
def proxy(shared_proxy):
    """A proxy with default settings (one worker), shared by the tests of a run."""
    return shared_proxy()
