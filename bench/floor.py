"""The single-core floor: imaging.pipeline.process() alone, in one process pinned to one CPU.

For each photo: one warm-up call, then the median of --repeats calls, as wall-clock ms and as
CPU ms (time.process_time) for a 300x300 crop at q85. No HTTP, no fetch, no worker pool: what
one image costs at the least, to compare the server's CPU per request with.

    cd /work/main && /tmp/venv/bin/python bench/floor.py [--repeats 5] [--dir DIR] [--cpu N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from bench import common  # noqa: E402

# imgproxy is imported in main(), from --repo.


def make_task(name: str) -> tuple:
    """process()'s arguments after the data, as the server builds them for
    ?url=...&w=300&h=300&mode=crop&q=85: (plan, imaging settings)."""
    from imgproxy.config import Settings
    settings = Settings()
    query = f"url={quote(f'http://127.0.0.1/{name}', safe='')}&{common.QUERY}"
    try:
        from imgproxy.options.build import build_plan
        from imgproxy.options.query import parse_query
        from imgproxy.render import imaging_settings
    except ImportError:  # a --repo from before the render service (params.py)
        from imgproxy import params
        args = params.parse_query(query)
        ops, target = params.parse_target(args, settings)
        return (params.parse_plan(args, ops, target, settings),)
    return build_plan(parse_query(query), settings), imaging_settings(settings)


def measure(data: bytes, task: tuple, repeats: int) -> dict:
    from imgproxy.imaging.pipeline import process
    out = process(data, *task)  # warm-up (and the output we report)
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        process(data, *task)
        cpu.append(1000.0 * (time.process_time() - c0))
        wall.append(1000.0 * (time.perf_counter() - w0))
    return {"wall_ms": statistics.median(wall), "cpu_ms": statistics.median(cpu),
            "min_ms": min(wall), "out": f"{out.format} {out.width}x{out.height} {len(out.body)} B"}


def run(paths: list[Path], repeats: int, cpu: int) -> dict:
    os.sched_setaffinity(0, {cpu})
    rows = {}
    for path in paths:
        rows[path.name] = measure(path.read_bytes(), make_task(path.name), repeats)
    wall = sum(r["wall_ms"] for r in rows.values())
    cpu_ms = sum(r["cpu_ms"] for r in rows.values())
    return {"cpu": cpu, "repeats": repeats, "photos": rows, "images": len(rows),
            "total_ms": wall, "total_cpu_ms": cpu_ms,
            "ms_per_image": wall / len(rows), "cpu_ms_per_image": cpu_ms / len(rows)}


def print_report(result: dict) -> None:
    print(f"single-core floor: pipeline.process(), 300x300 crop q85, pinned to CPU {result['cpu']}, "
          f"median of {result['repeats']} after 1 warm-up\nimgproxy from {result['imgproxy']}")
    width = max(len(name) for name in result["photos"])
    print(f"{'photo':<{width}}  {'wall ms':>8}  {'CPU ms':>7}  {'min ms':>7}  output")
    for name, r in result["photos"].items():
        print(f"{name:<{width}}  {r['wall_ms']:8.1f}  {r['cpu_ms']:7.1f}  {r['min_ms']:7.1f}  {r['out']}")
    print(f"{'total':<{width}}  {result['total_ms']:8.1f}  {result['total_cpu_ms']:7.1f}")
    print(f"floor: {result['ms_per_image']:.1f} ms per image (wall), "
          f"{result['cpu_ms_per_image']:.1f} CPU ms per image, over {result['images']} images")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_workload_args(parser)
    common.add_repo_arg(parser)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per photo (default 5)")
    parser.add_argument("--cpu", type=int, default=None,
                        help="CPU to pin to (default: the last one this process may use)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.repo.resolve()))
    import imgproxy
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    result = run(common.workload(args.dir), max(1, args.repeats), cpu)
    result["imgproxy"] = str(Path(imgproxy.__file__).parent)
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
