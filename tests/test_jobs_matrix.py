"""Every kind of job source against every kind of destination, through one real server:
http, https (a test CA), ftp and file sources; form POST, PUT, ftp and file destinations."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import time

import pytest
import trustme
from ftp_server import PASSWORD, USER, FtpServer
from support import Proxy, Receiver, decode, encode, quadrants
from support import job_post as post
from support import job_wait as wait_done

PHOTO = encode(quadrants((640, 428)), "JPEG", quality=95)
KEY = "job-secret"


class HttpsOrigin:
    def __init__(self, ca: trustme.CA):
        cert = ca.issue_cert("127.0.0.1")

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(PHOTO)))
                self.end_headers()
                self.wfile.write(PHOTO)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()


@pytest.fixture(scope="module")
def world(tmp_path_factory, origin):
    tmp = tmp_path_factory.mktemp("matrix")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    https = HttpsOrigin(ca)
    ftp = FtpServer(tmp).start()
    (ftp.home / "src").mkdir()
    (ftp.home / "src" / "cat.jpg").write_bytes(PHOTO)
    files = tmp / "files"
    (files / "src").mkdir(parents=True)
    (files / "src" / "cat.jpg").write_bytes(PHOTO)
    receiver = Receiver()
    origin.serve("/src/cat.jpg", PHOTO)
    flags = ["--workers=1", "--jobs", f"--job_key={KEY}", f"--job_db={tmp / 'jobs.sqlite3'}",
             f"--job_allowed_destinations={receiver.url('/')},ftp://127.0.0.1:{ftp.port}/,file://{files}/out/",
             f"--job_file_root={files}", f"--job_credentials=127.0.0.1:{ftp.port}={PASSWORD}",
             f"--ca_certs={tmp / 'ca.pem'}", "--allowed_hosts=127.0.0.1", "--job_retry_seconds=0.2"]
    proxy = Proxy(*flags, log_path=tmp / "log").start()
    sources = {
        "http": origin.url("/src/cat.jpg"),
        "https": f"https://127.0.0.1:{https.port}/src/cat.jpg",
        "ftp": f"ftp://{USER}@127.0.0.1:{ftp.port}/src/cat.jpg",
        "file": f"file://{files}/src/cat.jpg",
    }
    yield proxy, sources, receiver, ftp, files
    proxy.stop()
    receiver.stop()
    ftp.stop()
    https.stop()


def destination(kind: str, name: str, receiver, ftp, files) -> tuple[str, str]:
    return {
        "post": (receiver.url("/upload.html") + f":{name}", "POST"),
        "put": (receiver.url(f"/put/{name}"), "PUT"),
        "ftp": (f"ftp://{USER}@127.0.0.1:{ftp.port}/out/{name}", "POST"),
        "file": (f"file://{files}/out/{name}", "POST"),
    }[kind]


def stored(kind: str, name: str, receiver, ftp, files) -> bytes:
    if kind in ("post", "put"):
        return receiver.files[name][0]
    return ((ftp.home if kind == "ftp" else files) / "out" / name).read_bytes()


@pytest.mark.parametrize("source", ["http", "https", "ftp", "file"])
def test_every_source_to_every_destination(world, source):
    proxy, sources, receiver, ftp, files = world
    ids = {}
    for kind in ("post", "put", "ftp", "file"):
        template = f"{source}-{kind}-{{$width}}x{{$height}}-{{$basename}}.{{$ext}}"
        url, method = destination(kind, template, receiver, ftp, files)
        job = {"operationType": "resize", "srcURL": sources[source], "dstURL": url, "method": method,
               "args": {"width": 90, "height": 60, "fmt": "png"}}
        code, _, body = post(proxy, job, KEY)
        assert code == 202, body
        assert body["dstURL"].endswith(f"{source}-{kind}-90x60-cat.png")
        ids[kind] = body["id"]
    for kind, job_id in ids.items():
        doc = wait_done(proxy, job_id, KEY)
        assert doc["status"] == "done", (kind, doc)
        img = decode(stored(kind, f"{source}-{kind}-90x60-cat.png", receiver, ftp, files))
        assert (img.format, img.size) == ("PNG", (90, 60)), kind


def test_the_ftp_password_never_shows(world):
    proxy, sources, *_ = world
    code, _, body = post(proxy, {"operationType": "resize", "srcURL": sources["ftp"], "args": {"width": 10},
                                 "dstURL": f"ftp://{USER}:{PASSWORD}@127.0.0.1:1/x.jpg"}, KEY)
    assert code == 400 and PASSWORD not in json.dumps(body)
    time.sleep(0)  # nothing else to wait for
    assert PASSWORD not in proxy.log()
