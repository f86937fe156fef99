"""Job sources: ftp(s):// through FtpLoader against a real pyftpdlib server on loopback, file://
through FileLoader below a tmp root, and SourceRouter's choice between them."""

from __future__ import annotations

import asyncio
import os

import pytest
from ftp_server import PASSWORD, USER, FtpServer

from imgproxy.config import Settings
from imgproxy.errors import ProxyError
from imgproxy.sources.files import FileLoader
from imgproxy.sources.ftp import FtpLoader
from imgproxy.sources.router import SourceRouter

JPEG = b"\xff\xd8\xff\xe0" + b"jpeg" * 1000


@pytest.fixture(scope="module")
def ftpd(tmp_path_factory):
    server = FtpServer(tmp_path_factory.mktemp("ftp")).start()
    (server.home / "photos").mkdir()
    (server.home / "photos" / "cat.jpg").write_bytes(JPEG)
    (server.anonymous_home / "pub.jpg").write_bytes(JPEG[:100])
    yield server
    server.stop()


def ftp_settings(ftpd, **kw) -> Settings:
    kw.setdefault("allowed_hosts", ("127.0.0.1",))  # trusted: on loopback
    kw.setdefault("job_credentials", (("127.0.0.1", PASSWORD),))
    return Settings(timeout=5, connect_timeout=2, **kw)


def load(loader, ref):
    return asyncio.run(loader.load(ref))


def failure(loader, ref) -> ProxyError:
    with pytest.raises(ProxyError) as e:
        load(loader, ref)
    return e.value


# --- FTP ----------------------------------------------------------------------------------

def test_ftp_user_with_the_password_from_settings(ftpd):
    loader = FtpLoader(ftp_settings(ftpd))
    assert load(loader, f"ftp://{USER}@127.0.0.1:{ftpd.port}/photos/cat.jpg").body == JPEG
    # host:port wins over host
    both = ftp_settings(ftpd, job_credentials=(("127.0.0.1", "wrong"), (f"127.0.0.1:{ftpd.port}", PASSWORD)))
    assert load(FtpLoader(both), f"ftp://{USER}@127.0.0.1:{ftpd.port}/photos/cat.jpg").body == JPEG


def test_ftp_anonymous(ftpd):
    assert load(FtpLoader(ftp_settings(ftpd)), f"ftp://127.0.0.1:{ftpd.port}/pub.jpg").body == JPEG[:100]


def test_ftp_missing_file_is_404_and_wrong_password_502_without_the_password(ftpd):
    loader = FtpLoader(ftp_settings(ftpd))
    assert failure(loader, f"ftp://{USER}@127.0.0.1:{ftpd.port}/photos/dog.jpg").status == 404
    wrong = FtpLoader(ftp_settings(ftpd, job_credentials=(("127.0.0.1", "not-the-Pa55word"),)))
    e = failure(wrong, f"ftp://{USER}@127.0.0.1:{ftpd.port}/photos/cat.jpg")
    assert e.status == 502 and "530" in e.reason and "Pa55" not in str(e)


def test_ftp_password_in_the_url_is_refused_and_not_echoed(ftpd):
    e = failure(FtpLoader(ftp_settings(ftpd)), f"ftp://{USER}:{PASSWORD}@127.0.0.1:{ftpd.port}/photos/cat.jpg")
    assert e.status == 400 and PASSWORD not in str(e)


def test_ftp_source_larger_than_the_cap_is_413(ftpd):
    e = failure(FtpLoader(ftp_settings(ftpd, max_source_bytes=1000)),
                f"ftp://{USER}@127.0.0.1:{ftpd.port}/photos/cat.jpg")
    assert e.status == 413


def test_ftp_cap_holds_without_size(ftpd, monkeypatch):
    import ftplib

    def no_size(self, name):
        raise ftplib.error_perm("502 SIZE not implemented")

    monkeypatch.setattr(ftplib.FTP, "size", no_size)
    e = failure(FtpLoader(ftp_settings(ftpd, max_source_bytes=1000)),
                f"ftp://{USER}@127.0.0.1:{ftpd.port}/photos/cat.jpg")
    assert e.status == 413


@pytest.mark.parametrize("path", ["/photos/../photos/cat.jpg", "/photos/%2e%2e/x", "/photos%2fcat.jpg",
                                  "/photos//cat.jpg", "/photos/./cat.jpg"])
def test_ftp_traversal_is_refused(ftpd, path):
    assert failure(FtpLoader(ftp_settings(ftpd)), f"ftp://127.0.0.1:{ftpd.port}{path}").status == 400


def test_ftp_on_an_internal_address_is_refused_unless_trusted(ftpd):
    before = ftpd.connections
    e = failure(FtpLoader(ftp_settings(ftpd, allowed_hosts=())), f"ftp://127.0.0.1:{ftpd.port}/pub.jpg")
    assert e.status == 403 and "internal address" in e.reason
    assert ftpd.connections == before  # the server never saw us
    trusted = FtpLoader(ftp_settings(ftpd, allowed_hosts=()), trusted_hosts=(f"127.0.0.1:{ftpd.port}",))
    assert load(trusted, f"ftp://127.0.0.1:{ftpd.port}/pub.jpg").body == JPEG[:100]


def test_ftp_pasv_reply_naming_another_host_is_refused(ftpd, monkeypatch):
    monkeypatch.setattr(ftpd.handler, "masquerade_address", "127.0.0.2")
    e = failure(FtpLoader(ftp_settings(ftpd)), f"ftp://127.0.0.1:{ftpd.port}/pub.jpg")
    assert e.status == 403 and "PASV" in e.reason


def test_ftp_refused_connection_is_502():
    from support import free_port

    e = failure(FtpLoader(Settings(allowed_hosts=("127.0.0.1",))), f"ftp://127.0.0.1:{free_port()}/x.jpg")
    assert e.status == 502


# --- files --------------------------------------------------------------------------------

@pytest.fixture()
def root(tmp_path):
    root = tmp_path / "root"
    (root / "photos").mkdir(parents=True)
    (root / "photos" / "cat.jpg").write_bytes(JPEG)
    (tmp_path / "secret.jpg").write_bytes(b"secret")
    return root


def test_file_below_the_root(root):
    loader = FileLoader(Settings(job_file_root=str(root)))
    assert load(loader, f"file://{root}/photos/cat.jpg").body == JPEG
    assert load(loader, f"file://localhost{root}/photos/cat.jpg").body == JPEG


def test_file_root_reached_through_a_symlink_is_the_operators(root, tmp_path):
    (tmp_path / "link-to-root").symlink_to(root)
    loader = FileLoader(Settings(job_file_root=str(tmp_path / "link-to-root")))
    assert load(loader, f"file://{tmp_path}/link-to-root/photos/cat.jpg").body == JPEG
    assert load(loader, f"file://{root}/photos/cat.jpg").body == JPEG  # the same directory


def test_file_missing_is_404(root):
    loader = FileLoader(Settings(job_file_root=str(root)))
    assert failure(loader, f"file://{root}/photos/dog.jpg").status == 404
    assert failure(loader, f"file://{root}/nowhere/dog.jpg").status == 404


def test_file_outside_the_root_or_without_one_is_403(root, tmp_path):
    loader = FileLoader(Settings(job_file_root=str(root)))
    assert failure(loader, f"file://{tmp_path}/secret.jpg").status == 403
    assert failure(loader, f"file://{root}").status == 403  # the root itself
    assert failure(loader, f"file://{root}-sibling/x.jpg").status == 403
    assert failure(FileLoader(Settings()), f"file://{root}/photos/cat.jpg").status == 403


@pytest.mark.parametrize("tail", ["/photos/../../secret.jpg", "/photos/%2e%2e/cat.jpg", "/photos%2fcat.jpg",
                                  "/photos/./cat.jpg", "/photos//cat.jpg", "/photos\\cat.jpg"])
def test_file_traversal_is_400(root, tail):
    assert failure(FileLoader(Settings(job_file_root=str(root))), f"file://{root}{tail}").status == 400


def test_file_other_hosts_are_400(root):
    assert failure(FileLoader(Settings(job_file_root=str(root))), f"file://evil{root}/photos/cat.jpg").status == 400


def test_symlinks_below_the_root_are_refused(root, tmp_path):
    (root / "escape").symlink_to(tmp_path)  # a directory link out of the root
    (root / "photos" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    (root / "inner").symlink_to(root / "photos")  # even one that stays inside
    loader = FileLoader(Settings(job_file_root=str(root)))
    for ref in (f"file://{root}/escape/secret.jpg", f"file://{root}/photos/link.jpg",
                f"file://{root}/inner/cat.jpg"):
        assert failure(loader, ref).status == 400, ref  # traversal through a link


def test_file_larger_than_the_cap_is_413_and_a_fifo_does_not_hang(root):
    loader = FileLoader(Settings(job_file_root=str(root), max_source_bytes=1000))
    assert failure(loader, f"file://{root}/photos/cat.jpg").status == 413
    os.mkfifo(root / "pipe")
    assert failure(loader, f"file://{root}/pipe").status == 400


# --- the router ---------------------------------------------------------------------------

class Named:
    def __init__(self, name):
        self.name, self.closed = name, False

    async def load(self, ref, validators=None):
        return self.name

    def close(self):
        self.closed = True


def test_router_sends_each_scheme_to_its_loader():
    http, ftp, files = Named("http"), Named("ftp"), Named("files")
    router = SourceRouter(http, ftp=ftp, files=files)
    assert [load(router, r) for r in ("http://a/x", "FTP://a/x", "ftps://a/x", "file:///x")] == \
        ["http", "ftp", "ftp", "files"]
    router.close()
    assert http.closed and ftp.closed and files.closed
    bare = SourceRouter(Named("http"))
    for ref in ("ftp://a/x", "file:///x"):
        e = failure(bare, ref)
        assert e.status == 403 and "not enabled" in e.reason
