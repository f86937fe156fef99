"""Serving a stored variant: through the server, through NGINX reading the store's files
directly, and a warm result-cache hit, side by side in the same run.

Starts the bench origin (own process), one imgproxy server with the upload store and the
filesystem result cache (`--workers=2 --store_dir=... --cache_dir=...`, in a temporary folder),
and NGINX (Debian's nginx-light) in front of it with a minimal block that maps
`/images/<id>/<name>` to `<store_dir>/<id[0:2]>/<id>/<name>.<ext>` (`try_files`, falling
back to imgproxy). Uploads the workload photos (synchronous `POST /images`), then in turns,
each for --duration seconds at --connections (wrk, or the built-in client):

1. **server**: `GET /images/<id>/<variant>` from imgproxy (a stored variant: read from disk);
2. **nginx**: the same paths from NGINX, which answers them from the files itself;
3. **cache hit**: `GET /?url=<origin>/<photo>&w=150&h=150` from imgproxy, every URL requested
   once before (a result-cache hit: no fetch, no decode).

With --readme README.rst, a second NGINX runs in the same turns (**nginx+readme**) with that
README's `# imgproxy: store locations` block in place of the bench's (root set to store_dir).

Per run: req/s, p50/p90/p99, errors, the serving processes' CPU per request (imgproxy's whole
tree, or NGINX's master and workers) and what other processes used meanwhile.

    cd /work/main && .venv/bin/python bench/store_serve.py [--variant thumbnail] [--connections 8]
        [--duration 20] [--rounds 2] [--modes keep-alive] [--nginx-workers 1] [--wait-quiet S]
        [--readme README.rst] [--client auto|wrk|asyncio] [--repo DIR] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from bench import common, loadgen  # noqa: E402
from bench.store_upload import CORPUS, TOKEN, upload  # noqa: E402
from bench.throughput import MODES, QUIET, Machine, MachineMeter, wait_quiet  # noqa: E402

SETTLE_SECONDS = 2.0
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
ID = "[0-9A-Za-z]"
EXTENSIONS = ("webp", "jpg", "png", "gif", "avif", "tiff")  # imgproxy.imaging.encode.EXTENSIONS' values

# A minimal equivalent of the README's block (not that block): a variant's file when it is
# there, else imgproxy (a variant not made yet, a size, the JSON, the original, uploads).
# Only variant names are answered from disk (a letter first: never a temporary file, which
# starts with a dot, nor a size such as 240x160); `original` always goes to imgproxy, which
# knows whether originals are served.
NGINX_CONF = """\
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    include /etc/nginx/mime.types;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;  # as imgproxy, which never closes a keep-alive connection itself
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream imgproxy {{ server 127.0.0.1:{upstream}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        root {store};
        location ~ "^/images/{id}{{22}}/original(/|$)" {{
            proxy_pass http://imgproxy;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location ~ "^/images/(?<fan>{id}{{2}})(?<rest>{id}{{20}})/(?<name>[a-z][a-z0-9_-]{{0,31}})(/[^/]+)?$" {{
            add_header Cache-Control "public, max-age=31536000, immutable";
            try_files {tries} @imgproxy;
        }}
        location / {{
            proxy_pass http://imgproxy;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location @imgproxy {{
            proxy_pass http://imgproxy;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


README_MARK = "# imgproxy: store locations"
README_ROOT = "root /var/lib/imgproxy/store;"


def nginx_conf(prefix: Path, store: Path, port: int, upstream: int, workers: str, readme: Path | None = None) -> str:
    tries = " ".join(f"/$fan/$fan$rest/$name.{ext}" for ext in EXTENSIONS)
    conf = NGINX_CONF.format(prefix=prefix, store=store, port=port, upstream=upstream, workers=workers,
                             id=ID, tries=tries)
    if readme is None:
        return conf
    # The README's store locations in place of the bench's two, beside the same `location /`.
    start, end = conf.index("        location ~ \"^/images/"), conf.index("        location / {")
    block = readme_block(readme).replace(README_ROOT, f"root {store};")
    return conf[:start] + "".join(f"        {line}\n" if line else "\n" for line in block.splitlines()) + conf[end:]


def readme_block(readme: Path) -> str:
    """The literal block of README.rst that starts with README_MARK, dedented."""
    lines = readme.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.strip() == README_MARK)
    indent = len(lines[first]) - len(lines[first].lstrip())
    block = []
    for line in lines[first:]:
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            break
        block.append(line[indent:])
    if README_ROOT not in "\n".join(block):
        raise SystemExit(f"{readme}: no `{README_ROOT}` in its store locations")
    return "\n".join(block).rstrip() + "\n"


@dataclass
class Run:
    name: str
    mode: str
    round: int
    load: loadgen.LoadResult
    cpu_seconds: float
    machine: Machine

    @property
    def cpu_ms(self) -> float:
        return 1000.0 * self.cpu_seconds / self.load.requests if self.load.requests else float("nan")


def fetch_all(port: int, paths: list[str]) -> list[tuple[int, dict, bytes]]:
    async def each():
        return [await loadgen.get(port, p) for p in paths]
    return asyncio.run(each())


def check(name: str, port: int, paths: list[str], expected: list[bytes] | None = None) -> list[bytes]:
    replies = fetch_all(port, paths)
    bad = [(p, r[0]) for p, r in zip(paths, replies) if r[0] != 200]
    types = sorted({r[1].get("content-type", "?") for r in replies})
    same = "" if expected is None else (
        "; bytes as the server's: " + ("all" if [r[2] for r in replies] == expected else "NOT ALL"))
    print(f"  {name}: {len(paths) - len(bad)}/{len(paths)} OK ({', '.join(types)}){same}")
    if bad:
        raise RuntimeError(f"{name}: non-200 replies, e.g. {bad[:3]}")
    return [r[2] for r in replies]


def measure(name: str, mode: str, round_: int, port: int, root_pid: int, paths: list[str], args,
            meter: MachineMeter) -> Run:
    time.sleep(SETTLE_SECONDS)
    wait_quiet(args.wait_quiet)
    meter.start()
    before = common.tree_cpu(root_pid)
    load = loadgen.run(port, paths, args.connections, args.duration, MODES[mode], args.client)
    after = common.tree_cpu(root_pid)
    cpu = sum((t - before.get(pid, common.Cpu())).total for pid, t in after.items())
    run = Run(name, mode, round_, load, cpu, meter.stop(cpu))
    ld = run.load
    print(f"  {name:<12} {mode:<10} round {round_}: {ld.rps:8.1f} req/s  p50 {ld.p50_ms:.2f}  "
          f"p90 {ld.p90_ms:.2f}  p99 {ld.p99_ms:.2f} ms  errors {ld.errors}  CPU {run.cpu_ms:.3f} ms/req  "
          f"others {run.machine.others:.2f} cores ({ld.client})")
    return run


def print_summary(runs: list[Run], args) -> None:
    print(f"\nsummary: {args.connections} connections, {args.duration:g}s per run, variant "
          f"'{args.variant}'; 'others' = cores used by other processes during the run")
    print(f"{'what':<12} {'mode':<10} {'round':>5} {'req/s':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
          f"{'errors':>6} {'CPU ms/req':>10} {'others':>6}")
    for r in runs:
        ld = r.load
        print(f"{r.name:<12} {r.mode:<10} {r.round:>5} {ld.rps:8.1f} {ld.p50_ms:7.2f} {ld.p90_ms:7.2f} "
              f"{ld.p99_ms:7.2f} {ld.errors:6d} {r.cpu_ms:10.3f} {r.machine.others:6.2f}")
    for mode in args.modes:
        group = {}
        for name in ("server", "nginx", "nginx+readme", "cache hit"):
            chosen = [r for r in runs if r.name == name and r.mode == mode]
            quiet = [r for r in chosen if r.machine.others < QUIET] or chosen
            if quiet:
                group[name] = quiet
        if len(group) < 2:
            continue
        med = {k: (statistics.median(r.load.rps for r in v), statistics.median(r.load.p50_ms for r in v),
                   statistics.median(r.load.p99_ms for r in v)) for k, v in group.items()}
        print(f"{mode}, medians of the quiet runs (else all): " + "; ".join(
            f"{k} {rps:.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms" for k, (rps, p50, p99) in med.items()))
        if "server" in med and "cache hit" in med:
            print(f"  stored variant through the server / result-cache hit: req/s "
                  f"{med['server'][0] / med['cache hit'][0]:.2f}x")
        for name in ("nginx", "nginx+readme"):
            if "server" in med and name in med:
                print(f"  {name} from the files / through the server: req/s {med[name][0] / med['server'][0]:.1f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_workload_args(parser)
    common.add_repo_arg(parser)
    parser.add_argument("--variant", default="thumbnail", help="the stored variant asked for (thumbnail)")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections (8)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per run (20)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each, in turns (2)")
    parser.add_argument("--modes", default="keep-alive", help="comma-separated: keep-alive, close")
    parser.add_argument("--nginx-workers", default="1", help="NGINX worker_processes (1; 'auto' = one per core)")
    parser.add_argument("--readme", type=Path, default=None, metavar="README.rst",
                        help="also run NGINX with this README's `# imgproxy: store locations` block "
                             "('nginx+readme'), beside the bench's own")
    parser.add_argument("--client", choices=["auto", "wrk", "asyncio"], default="auto")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each run, wait up to this long for other processes to use under 0.25 cores")
    args = parser.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    sys.stdout.reconfigure(line_buffering=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    if args.dir is None and not common.DEFAULT_CORPUS.is_dir():
        names = [ln.strip() for ln in common.WORKLOAD_LIST.read_text().splitlines()]
        photos = [CORPUS / n for n in names if n and not n.startswith("#")]
    else:
        photos = common.workload(args.dir)
    folder = photos[0].parent
    tmp = Path(tempfile.mkdtemp(prefix="imgproxy-store-serve-"))
    os.chmod(tmp, 0o755)  # NGINX's workers (user nobody) read the store's files
    store, prefix = tmp / "store", tmp / "nginx"
    prefix.mkdir()
    logs = common.CACHE / "logs"
    origin = server = nginx = nginx2 = None
    runs: list[Run] = []
    try:
        origin_port, port, nginx_port = common.free_port(), common.free_port(), common.free_port()
        origin = common.start([sys.executable, str(common.BENCH / "origin.py"), f"--port={origin_port}",
                               f"--dir={folder}"], logs / "origin.log")
        common.wait_for_port(origin_port, origin)
        cmd = [sys.executable, "-m", "imgproxy", f"--port={port}", "--address=127.0.0.1", "--workers=2",
               "--allowed_hosts=127.0.0.1", f"--cache_dir={tmp / 'cache'}", f"--store_dir={store}",
               f"--store_token={TOKEN}", f"--store_db={tmp / 'store.sqlite3'}", f"--job_db={tmp / 'jobs.sqlite3'}"]
        server = common.start(cmd, logs / "store-serve-imgproxy.log", cwd=args.repo.resolve())
        common.wait_for_port(port, server)
        time.sleep(1.0)
        print(f"imgproxy: {' '.join(cmd)}")
        ids = []
        for photo in photos:
            status, doc = upload(port, photo.read_bytes())
            if status != 201:
                raise RuntimeError(f"upload of {photo.name}: {status} {doc}")
            ids.append(doc["id"])
        print(f"uploaded {len(ids)} photos from {folder}")
        (prefix / "nginx.conf").write_text(nginx_conf(prefix, store, nginx_port, port, args.nginx_workers))
        nginx = common.start([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e",
                              str(prefix / "error.log"), "-g", "daemon off;"], logs / "store-serve-nginx.log")
        common.wait_for_port(nginx_port, nginx)
        if args.readme:
            nginx2_port, prefix2 = common.free_port(), tmp / "nginx-readme"
            prefix2.mkdir()
            (prefix2 / "nginx.conf").write_text(
                nginx_conf(prefix2, store, nginx2_port, port, args.nginx_workers, args.readme))
            nginx2 = common.start([NGINX, "-p", str(prefix2), "-c", str(prefix2 / "nginx.conf"), "-e",
                                   str(prefix2 / "error.log"), "-g", "daemon off;"],
                                  logs / "store-serve-nginx-readme.log")
            common.wait_for_port(nginx2_port, nginx2)
        variant_paths = [f"/images/{i}/{args.variant}" for i in ids]
        cache_paths = [f"/?url={quote(f'http://127.0.0.1:{origin_port}/{p.name}', safe='')}&w=150&h=150"
                       for p in photos]
        print("checks (and warm-up):")
        body = check("server", port, variant_paths)
        check("nginx", nginx_port, variant_paths, body)
        if nginx2:
            check("nginx+readme", nginx2_port, variant_paths, body)
        check("cache, 1st", port, cache_paths)
        check("cache, 2nd", port, cache_paths)
        nginx_pids = common.process_tree(nginx.pid)
        print(f"NGINX {nginx.pid}: {len(nginx_pids) - 1} worker(s); imgproxy {server.pid}")
        meter = MachineMeter(origin.pid)
        for round_ in range(1, args.rounds + 1):
            for mode in args.modes:
                runs.append(measure("server", mode, round_, port, server.pid, variant_paths, args, meter))
                runs.append(measure("nginx", mode, round_, nginx_port, nginx.pid, variant_paths, args, meter))
                if nginx2:
                    runs.append(measure("nginx+readme", mode, round_, nginx2_port, nginx2.pid, variant_paths,
                                        args, meter))
                runs.append(measure("cache hit", mode, round_, port, server.pid, cache_paths, args, meter))
    except KeyboardInterrupt:
        print("\ninterrupted; stopping what was started")
        return 130
    finally:
        for proc in (nginx2, nginx, server, origin):
            common.stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
        if runs:
            print_summary(runs, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
