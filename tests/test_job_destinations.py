"""Job destinations (jobs/destinations.py) against real receivers on loopback: a Tornado
server taking imgserve's form uploads and PUTs, pyftpdlib, and files in tmp roots."""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import threading

import pytest
import tornado.httpserver
import tornado.web
from ftp_server import PASSWORD, USER, FtpServer
from support import free_port
from tornado.httputil import parse_body_arguments

from imgproxy.config import Settings
from imgproxy.errors import ProxyError
from imgproxy.jobs import destinations
from imgproxy.jobs.destinations import DeliveryError, check_destination, deliver

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40 + b"\r\n--not-a-boundary\r\n"


# --- a receiver ---------------------------------------------------------------------------

class Receiver:
    """Records each request; /status/NNN/... answers NNN, /slow/... waits 2 s."""

    def __init__(self):
        self.requests: list[dict] = []
        self.port = free_port()
        receiver = self

        class Handler(tornado.web.RequestHandler):
            async def post(self, path):
                files, args = {}, {}
                parse_body_arguments(self.request.headers["Content-Type"], self.request.body, args, files)
                await self.answer(path, files=files)

            async def put(self, path):
                await self.answer(path, body=self.request.body, content_type=self.request.headers["Content-Type"])

            async def answer(self, path, **seen):
                receiver.requests.append(dict(method=self.request.method, uri=self.request.uri, **seen))
                if path.startswith("slow/"):
                    await asyncio.sleep(2)
                if path.startswith("status/"):
                    self.set_status(int(path.split("/")[1]))
                self.finish("ok")

        self.app = tornado.web.Application([(r"/(.*)", Handler)])
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        async def main():
            server = tornado.httpserver.HTTPServer(self.app)
            server.listen(self.port, "127.0.0.1")
            self.stop = asyncio.Event()
            self.loop = asyncio.get_running_loop()
            self.ready.set()
            await self.stop.wait()
            server.stop()

        asyncio.run(main())

    def start(self):
        self.thread.start()
        self.ready.wait(5)
        return self

    def close(self):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(5)


@pytest.fixture(scope="module")
def receiver():
    r = Receiver().start()
    yield r
    r.close()


@pytest.fixture(scope="module")
def ftpd(tmp_path_factory):
    server = FtpServer(tmp_path_factory.mktemp("ftp")).start()
    yield server
    server.stop()


def settings(*prefixes: str, **kw) -> Settings:
    return Settings(job_allowed_destinations=prefixes, timeout=kw.pop("timeout", 5), connect_timeout=2, **kw)


def run(url, body=JPEG, content_type="image/jpeg", **kw):
    return asyncio.run(deliver(url, body, content_type, **kw))


def failure(url, **kw) -> ProxyError:
    with pytest.raises(ProxyError) as e:
        run(url, **kw)
    return e.value


# --- http(s) ------------------------------------------------------------------------------

def test_post_is_imgserves_form_upload(receiver):
    base = f"http://127.0.0.1:{receiver.port}/"
    run(f"{base}upload.html:300-cat.jpg", settings=settings(base))
    run(f"{base}forms/up:%C3%A9t%C3%A9.png?album=7", body=b"png", content_type="image/png", field_name="image",
        settings=settings(base))
    first, second = receiver.requests[-2:]
    assert first["method"] == "POST" and first["uri"] == "/upload.html"
    [upload] = first["files"]["file"]
    assert (upload.filename, upload.content_type, upload.body) == ("300-cat.jpg", "image/jpeg", JPEG)
    assert second["uri"] == "/forms/up?album=7"
    [upload] = second["files"]["image"]
    assert (upload.filename, upload.content_type, upload.body) == ("été.png", "image/png", b"png")


def test_put_sends_the_body_as_is(receiver):
    base = f"http://127.0.0.1:{receiver.port}/bucket/"
    run(f"{base}300/cat.jpg?X-Signature=abc", method="PUT", settings=settings(base))
    last = receiver.requests[-1]
    assert (last["method"], last["uri"], last["body"], last["content_type"]) == \
        ("PUT", "/bucket/300/cat.jpg?X-Signature=abc", JPEG, "image/jpeg")


@pytest.mark.parametrize("status, transient", [(503, True), (500, True), (429, True), (400, False),
                                               (404, False), (302, False), (403, False)])
def test_statuses_are_transient_or_not(receiver, status, transient):
    base = f"http://127.0.0.1:{receiver.port}/"
    e = failure(f"{base}status/{status}/x.jpg", method="PUT", settings=settings(base))
    assert isinstance(e, DeliveryError) and e.transient is transient
    assert (e.status, e.code) == (502, 302) and f"HTTP {status}" in e.reason


def test_refused_connection_and_timeout_are_transient(receiver):
    port = free_port()
    e = failure(f"http://127.0.0.1:{port}/x.jpg", method="PUT", settings=settings(f"http://127.0.0.1:{port}/"))
    assert isinstance(e, DeliveryError) and e.transient and "refused" in e.reason
    base = f"http://127.0.0.1:{receiver.port}/"
    e = failure(f"{base}slow/x.jpg", method="PUT", settings=settings(base, timeout=0.3))
    assert isinstance(e, DeliveryError) and e.transient and "timed out" in e.reason


def test_a_post_needs_a_file_name(receiver):
    base = f"http://127.0.0.1:{receiver.port}/"
    for url in (f"{base}upload.html", f"{base}upload.html:", f"{base}up:a:"):
        assert failure(url, settings=settings(base)).status == 400, url
    assert failure(f"{base}u:x.jpg", method="DELETE", settings=settings(base)).status == 400
    assert failure(f"{base}u:x.jpg", field_name='a"b', settings=settings(base)).status == 400
    assert failure(f"{base}u:x.jpg", content_type="image/jpeg\r\nX: y", settings=settings(base)).status == 400


def unconnected_listener() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    return listener


def assert_no_connection(listener: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        listener.accept()
    listener.close()


def test_a_destination_not_listed_is_refused_before_connecting():
    listener = unconnected_listener()
    port = listener.getsockname()[1]
    e = failure(f"http://127.0.0.1:{port}/u:x.jpg", settings=settings("http://127.0.0.1:1/"))
    assert e.status == 403 and not isinstance(e, DeliveryError)
    assert_no_connection(listener)


def test_the_address_guard_refuses_internal_addresses_of_untrusted_hosts():
    # deliver() trusts the hosts it allows; underneath, an untrusted host on loopback is refused
    listener = unconnected_listener()
    port = listener.getsockname()[1]
    with pytest.raises(DeliveryError) as e:
        asyncio.run(destinations._http(f"http://localhost:{port}/x.jpg", JPEG, "image/jpeg", Settings(), "PUT",
                                       "file", trusted=False))
    assert not e.value.transient and "internal address" in e.value.reason
    assert_no_connection(listener)


def test_trust_is_for_listed_hosts_and_their_port():
    s = settings("http://uploads.example.com/in/", "ftp://bob@ftp.example.com:2121/x/", allowed_hosts=("cdn.example",))
    assert destinations._trusted("http://uploads.example.com/in/a.jpg", s)
    assert destinations._trusted("http://uploads.example.com:80/in/a.jpg", s)
    assert not destinations._trusted("http://uploads.example.com:8080/in/a.jpg", s)
    assert destinations._trusted("ftp://ftp.example.com:2121/x/a.jpg", s)
    assert not destinations._trusted("ftp://ftp.example.com/x/a.jpg", s)
    assert destinations._trusted("https://cdn.example/a.jpg", s)
    assert not destinations._trusted("http://other.example/a.jpg", s)


# --- check_destination --------------------------------------------------------------------

ALLOWED = ("http://allowed.example.com/", "https://up.example.com/forms/upload.html", "ftp://ftp.example.com/in",
           "ftps://alice@secure.example.com:990/", "http://[2001:db8::1]/")


@pytest.mark.parametrize("url", [
    "http://allowed.example.com/x.jpg",
    "HTTP://Allowed.Example.com:80/a/b/c.jpg",
    "https://up.example.com/forms/upload.html:300-cat.jpg",
    "https://up.example.com/forms/upload.html/sub:x.jpg",
    "ftp://ftp.example.com/in/x.jpg",
    "ftp://bob@ftp.example.com/in/deep/x.jpg",  # the user part is ignored
    "ftp://ftp.example.com:21/in/x.jpg",
    "ftps://secure.example.com:990/x.jpg",
    "ftps://bob@secure.example.com:990/x.jpg",
    "http://[2001:db8::1]/x.jpg",
])
def test_allowed_destinations(url):
    check_destination(url, settings(*ALLOWED))


@pytest.mark.parametrize("url", [
    "http://allowed.example.com.evil.net/x.jpg",
    "http://allowed.example.com:8080/x.jpg",
    "https://allowed.example.com/x.jpg",
    "http://evil.net/allowed.example.com/x.jpg",
    "https://up.example.com/forms/upload.html.evil:x.jpg",
    "https://up.example.com/forms/upload.htmlx",
    "https://up.example.com/forms/other.html:x.jpg",
    "ftp://ftp.example.com/inbox/x.jpg",
    "ftp://ftp.example.com/in:x.jpg",
    "ftp://ftp.example.com:2121/in/x.jpg",
    "ftps://secure.example.com/x.jpg",
    "http://[2001:db8::2]/x.jpg",
])
def test_destinations_not_allowed_are_403(url):
    with pytest.raises(ProxyError) as e:
        check_destination(url, settings(*ALLOWED))
    assert e.value.status == 403 and e.value.code == 601


def test_an_empty_allow_list_allows_nothing():
    with pytest.raises(ProxyError) as e:
        check_destination("http://allowed.example.com/x.jpg", Settings())
    assert e.value.status == 403


@pytest.mark.parametrize("url", [
    "gopher://allowed.example.com/x.jpg",
    "javascript:alert(1)",
    "http:/allowed.example.com/x.jpg",
    "http://allowed.example.com/a/../x.jpg",
    "http://allowed.example.com/a/./x.jpg",
    "http://allowed.example.com/a/%2e%2e/x.jpg",
    "http://allowed.example.com/a/%2E/x.jpg",
    "http://allowed.example.com/a%2fx.jpg",
    "http://allowed.example.com/a%5cx.jpg",
    "http://allowed.example.com/a%252e%252e/x.jpg",
    "http://allowed.example.com/a\\x.jpg",
    "http://allowed.example.com/a//x.jpg",
    "http://allowed.example.com/a x.jpg",
    "http://allowed.example.com/a\x00x.jpg",
    "http://allowed.example.com/a%0d%0ax.jpg",
    "http://allowed.example.com/x.jpg#frag",
    "http://allowed.example.com/",
    "http://allowed.example.com:99999/x.jpg",
    "http://bob@allowed.example.com/x.jpg",
    "http://127.1/x.jpg",
    "ftp://ftp.example.com/in/x.jpg?type=a",
    "ftp://us%0d%0aer@ftp.example.com/in/x.jpg",
    "file://host/srv/x.jpg",
])
def test_malformed_or_unsafe_destinations_are_400(url):
    with pytest.raises(ProxyError) as e:
        check_destination(url, settings(*ALLOWED, "file:///"))
    assert e.value.status == 400 and e.value.code == 601, e.value


def test_a_password_in_the_url_is_refused_and_never_repeated():
    for url in ("ftp://bob:hunter2@ftp.example.com/in/x.jpg", "ftp://bob:@ftp.example.com/in/x.jpg",
                "http://bob:hunter2@allowed.example.com/x.jpg"):
        with pytest.raises(ProxyError) as e:
            check_destination(url, settings(*ALLOWED))
        assert e.value.status == 400 and "hunter2" not in str(e.value) and "password" in e.value.reason


# --- FTP ----------------------------------------------------------------------------------

def ftp_settings(ftpd, **kw) -> Settings:
    kw.setdefault("job_credentials", (("127.0.0.1", PASSWORD),))
    return settings(f"ftp://127.0.0.1:{ftpd.port}/", **kw)


def test_ftp_upload_with_the_password_from_settings(ftpd):
    ftpd.commands.clear()
    run(f"ftp://{USER}@127.0.0.1:{ftpd.port}/out/300/cat.jpg", settings=ftp_settings(ftpd))
    assert (ftpd.home / "out" / "300" / "cat.jpg").read_bytes() == JPEG
    assert sorted(os.listdir(ftpd.home / "out" / "300")) == ["cat.jpg"]  # no temporary file left
    (mkd1, _), (mkd2, _), (stor, temp), (rnfr, source), (rnto, final) = ftpd.commands
    assert (mkd1, mkd2, stor, rnfr, rnto) == ("MKD", "MKD", "STOR", "RNFR", "RNTO")
    assert temp == source != "cat.jpg" and temp.startswith(".cat.jpg.") and final == "cat.jpg"
    # again, over the file: the directories exist now
    ftpd.commands.clear()
    run(f"ftp://{USER}@127.0.0.1:{ftpd.port}/out/300/cat.jpg", body=b"v2", settings=ftp_settings(ftpd))
    assert (ftpd.home / "out" / "300" / "cat.jpg").read_bytes() == b"v2"
    assert [c for c, _ in ftpd.commands] == ["STOR", "RNFR", "RNTO"]


def test_ftp_anonymous_upload(ftpd):
    run(f"ftp://127.0.0.1:{ftpd.port}/a.jpg", settings=ftp_settings(ftpd, job_credentials=()))
    assert (ftpd.anonymous_home / "a.jpg").read_bytes() == JPEG


def test_ftp_wrong_or_missing_password_is_permanent_and_never_shown(ftpd, caplog):
    caplog.set_level("DEBUG")
    for credentials in ((("127.0.0.1", "Wrong-Pa55"),), ()):
        e = failure(f"ftp://{USER}@127.0.0.1:{ftpd.port}/x.jpg",
                    settings=ftp_settings(ftpd, job_credentials=credentials))
        assert isinstance(e, DeliveryError) and not e.transient and "530" in e.reason
        assert "Pa55" not in str(e) and "Pa55" not in repr(e)
    assert caplog.records and not any("Pa55" in r.getMessage() for r in caplog.records)


def test_ftp_temporary_reply_is_transient_and_leaves_no_file(ftpd, monkeypatch):
    monkeypatch.setattr(ftpd.handler, "ftp_STOR", lambda self, file, mode="w": self.respond("452 Disk full."))
    e = failure(f"ftp://{USER}@127.0.0.1:{ftpd.port}/full/x.jpg", settings=ftp_settings(ftpd))
    assert isinstance(e, DeliveryError) and e.transient and "452" in e.reason
    assert os.listdir(ftpd.home / "full") == []


def test_ftp_refused_connection_is_transient():
    port = free_port()
    e = failure(f"ftp://127.0.0.1:{port}/x.jpg", settings=settings(f"ftp://127.0.0.1:{port}/"))
    assert isinstance(e, DeliveryError) and e.transient


def test_ftp_guard_covers_control_and_data_connections(ftpd, monkeypatch):
    before = ftpd.connections
    with pytest.raises(DeliveryError) as e:
        asyncio.run(destinations._ftp(f"ftp://127.0.0.1:{ftpd.port}/g.jpg", JPEG, ftp_settings(ftpd), trusted=False))
    assert not e.value.transient and "internal address" in e.value.reason
    assert ftpd.connections == before  # refused before connecting
    # a trusted server whose PASV reply points elsewhere (the FTP bounce)
    monkeypatch.setattr(ftpd.handler, "masquerade_address", "127.0.0.2")
    e = failure(f"ftp://127.0.0.1:{ftpd.port}/bounce.jpg", settings=ftp_settings(ftpd))
    assert isinstance(e, DeliveryError) and not e.transient and "PASV" in e.reason
    assert not (ftpd.anonymous_home / "bounce.jpg").exists()


# --- files --------------------------------------------------------------------------------

@pytest.fixture()
def root(tmp_path):
    root = tmp_path / "out"
    root.mkdir()
    return root


def file_settings(root) -> Settings:
    return settings(f"file://{root}/", job_file_root=str(root))


def test_file_write_makes_directories_and_renames_into_place(root, monkeypatch):
    replaced = []
    real_replace = os.replace

    def replace(src, dst, **kw):
        replaced.append((src, dst, os.path.exists(root / "a" / "b" / "cat.jpg")))
        return real_replace(src, dst, **kw)

    monkeypatch.setattr(os, "replace", replace)
    run(f"file://{root}/a/b/cat.jpg", settings=file_settings(root))
    assert (root / "a" / "b" / "cat.jpg").read_bytes() == JPEG
    [(temp, final, existed)] = replaced
    assert temp.startswith(".cat.jpg.") and final == "cat.jpg" and not existed
    assert os.listdir(root / "a" / "b") == ["cat.jpg"]
    run(f"file://{root}/a/b/cat.jpg", body=b"v2", settings=file_settings(root))
    assert (root / "a" / "b" / "cat.jpg").read_bytes() == b"v2"


def test_file_symlinks_below_the_root_are_refused(root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    (root / "inside").symlink_to(root)
    (root / "target.jpg").symlink_to(outside / "t.jpg")
    for url in (f"file://{root}/escape/x.jpg", f"file://{root}/escape/new/x.jpg", f"file://{root}/inside/x.jpg",
                f"file://{root}/target.jpg"):
        e = failure(url, settings=file_settings(root))
        assert e.status == 400 and not isinstance(e, DeliveryError), url  # traversal through a link
    assert os.listdir(outside) == []


def test_file_outside_the_root_or_traversal_is_refused(root, tmp_path):
    for url, status in ((f"file://{tmp_path}/x.jpg", 403), (f"file://{root}/../x.jpg", 400),
                        (f"file://{root}/a/%2e%2e/x.jpg", 400), (f"file://{root}-x/x.jpg", 403)):
        assert failure(url, settings=file_settings(root)).status == status, url
    # allowed by prefix but no root configured
    e = failure(f"file://{root}/x.jpg", settings=settings(f"file://{root}/"))
    assert e.status == 403 and "job_file_root" in e.reason
    assert os.listdir(root) == [] and not (tmp_path / "x.jpg").exists()


def test_delivery_error_pickles():
    e = pickle.loads(pickle.dumps(DeliveryError("Destination x answered HTTP 503", True)))
    assert isinstance(e, DeliveryError) and e.transient and (e.status, e.code) == (502, 302)


def test_ftps_insists_on_tls(ftpd):
    # pyftpdlib without pyOpenSSL speaks no TLS: AUTH TLS is refused before any password is sent
    ftpd.commands.clear()
    e = failure(f"ftps://{USER}@127.0.0.1:{ftpd.port}/tls.jpg",
                settings=settings(f"ftps://127.0.0.1:{ftpd.port}/", job_credentials=(("127.0.0.1", PASSWORD),)))
    assert isinstance(e, DeliveryError) and not e.transient and "AUTH" in e.reason
    assert not (ftpd.home / "tls.jpg").exists() and ftpd.commands == []
