"""A static origin for the benchmarks: serves the files of one folder from memory on 127.0.0.1.

Run by throughput.py as its own process, so its CPU is not counted as the server's.
HTTP/1.1 with keep-alive, one thread per connection, files read once at start. A file is
found by the last segment of the path, so /v3/a.jpg is a.jpg under another URL.

    python bench/origin.py --port 8000 --dir /work/shared/corpus
"""

from __future__ import annotations

import argparse
import mimetypes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: without this, Nagle's algorithm and
    # the client's delayed ACKs add ~40 ms to every fetch.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        name = unquote(urlsplit(self.path).path).rsplit("/", 1)[-1]
        found = self.server.files.get(name)
        body, ctype = found if found else (b"not found\n", "text/plain")
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # quiet: thousands of requests per run
        pass


def load(folder: Path) -> dict[str, tuple[bytes, str]]:
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file():
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            files[path.name] = (path.read_bytes(), ctype)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description="serve a folder's files from memory")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.files = load(args.dir)
    print(f"origin: {len(server.files)} files from {args.dir} on 127.0.0.1:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
