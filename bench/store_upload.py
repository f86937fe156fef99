"""An upload's CPU: three variants from one decode against the largest alone, and against
the common Pillow upload recipe, in the same run.

In this process, pinned to one CPU, in turns, median of --repeats (CPU ms, time.process_time):

- **upload**: `pipeline.process_many(data, plans)` with the store's variant plans (built by
  `StoreService.variant_plan`, largest first, as `make_variants` orders them);
- **largest**: `pipeline.process(data, plan)` with the largest variant's plan alone;
- each other variant alone, for the sum of the parts;
- **recipe**: `recipe.py`'s Pillow recipe (open, exif_transpose, putdata(list(getdata())),
  thumbnail, save) for the same three variants.

Then a step breakdown of one `process_many` call (decode, each variant's operations, sRGB,
encode), and unless --no-server, the real server: `python -m imgproxy` with the store, once
with the default three variants and once with only the largest (`--store_variants=large:...`),
each sent --uploads synchronous `POST /images` of the photo in turns; the server's whole
process tree CPU per upload (as throughput.py reads it), and the ratio.

    cd /work/main && .venv/bin/python bench/store_upload.py [--photo PATH] [--repeats 5]
        [--recipe-repeats 3] [--uploads 8] [--rounds 2] [--no-server] [--cpu N] [--repo DIR]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from bench import common, recipe  # noqa: E402
from bench.throughput import wait_quiet  # noqa: E402

# imgproxy is imported after --repo is on sys.path.

# The corpus has no 24-megapixel photo: its largest is this one, 6028x3391 (20.4 MP, 4.38 MB,
# baseline JPEG with EXIF).
# From a git worktree (/work/wt/NAME) ../shared/corpus is not there: then /work/shared/corpus.
CORPUS = common.DEFAULT_CORPUS if common.DEFAULT_CORPUS.is_dir() else Path("/work/shared/corpus")
DEFAULT_PHOTO = CORPUS / "Kleiber_by_Lukas_Baubkus.jpg"
TOKEN = "bench-store-token"


# --- in this process -------------------------------------------------------------------------

def store_plans():
    """(name, plan) of every default variant, largest output first (make_variants' order), the
    imaging settings, and the settings' variant list."""
    from imgproxy.config import Settings
    from imgproxy.render import imaging_settings
    from imgproxy.store.service import StoreService
    settings = Settings()
    service = StoreService(settings, render=None, blobs=None, records=None)
    named = [(name, service.variant_plan(name)) for name, *_ in settings.store_variants]
    return named, imaging_settings(settings), settings.store_variants


def order_largest_first(data: bytes, named: list, imaging) -> list:
    from imgproxy.imaging import pipeline
    sizes = pipeline.predict(data, [plan for _, plan in named], imaging)
    order = sorted(range(len(named)), key=lambda i: -sizes[i][0] * sizes[i][1])
    return [named[i] for i in order]


def cpu_ms(fn) -> float:
    c0 = time.process_time()
    fn()
    return 1000.0 * (time.process_time() - c0)


def in_process(data: bytes, repeats: int, recipe_repeats: int) -> dict:
    from imgproxy.imaging import pipeline
    named, imaging, variants = store_plans()
    named = order_largest_first(data, named, imaging)
    plans = [plan for _, plan in named]
    largest_name, largest = named[0]
    specs = recipe.variants_from_settings(variants)

    # "upload" is what the store does (derive=True: smaller variants from the larger's pixels);
    # "upload-from-decode" is every variant from the decode, as before, side by side.
    cases = {"upload": lambda: pipeline.process_many(data, plans, imaging, derive=True),
             "upload-from-decode": lambda: pipeline.process_many(data, plans, imaging),
             "largest": lambda: pipeline.process(data, largest, imaging)}
    for name, plan in named[1:]:
        cases[name] = (lambda p: lambda: pipeline.process(data, p, imaging))(plan)
    cases["recipe"] = lambda: recipe.make_variants(data, specs)
    outputs = {"upload": [f"{n} {r.format} {r.width}x{r.height} {len(r.body)} B"
                          for (n, _), r in zip(named, cases["upload"]())],
               "recipe": [f"{n} {fmt} {w}x{h} {len(body)} B"
                          for n, (body, fmt, w, h) in recipe.make_variants(data, specs).items()]}
    # Warm-up done above (one call each of the two that matter); then in turns.
    times: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(max(repeats, recipe_repeats)):
        for name, fn in cases.items():
            if name == "recipe" and r >= recipe_repeats:
                continue
            if name != "recipe" and r >= repeats:
                continue
            times[name].append(cpu_ms(fn))
    return {"largest_name": largest_name, "order": [n for n, _ in named], "outputs": outputs,
            "times": times, "median": {k: statistics.median(v) for k, v in times.items() if v}}


def breakdown(data: bytes, runs: int = 3) -> dict[str, float]:
    """One process_many call split into steps (CPU ms, median of `runs`), by wrapping the
    pipeline's own functions: open + header, decode (draft + load), then per variant its
    operations (resize; EXIF orientation), the sRGB conversion and the encode."""
    from imgproxy.imaging import colour, decode, encode, pipeline
    named, imaging, _ = store_plans()
    named = order_largest_first(data, named, imaging)
    plans = [plan for _, plan in named]
    spent: dict[str, float] = {}
    current = {"plan": None}
    originals = (decode.load, encode.encode, colour.to_srgb, pipeline._render)

    def timed(label_fn, fn):
        def wrapper(*a, **kw):
            c0 = time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                label = label_fn()
                spent[label] = spent.get(label, 0.0) + 1000.0 * (time.process_time() - c0)
        return wrapper

    names = iter([])

    def render(img, plan, step, settings, derived=False):
        current["plan"] = next(names)
        return originals[3](img, plan, step, settings, derived)

    decode.load = timed(lambda: "decode (draft + load)", originals[0])
    encode.encode = timed(lambda: f"{current['plan']}: encode", originals[1])
    colour.to_srgb = timed(lambda: f"{current['plan']}: sRGB", originals[2])
    pipeline._render = timed(lambda: f"{current['plan']}: whole", render)
    per_run = []
    try:
        for _ in range(runs):
            spent.clear()
            names = iter([n for n, _ in named])
            total = cpu_ms(lambda: pipeline.process_many(data, plans, imaging, derive=True))
            row = dict(spent)
            for n, _ in named:
                whole = row.pop(f"{n}: whole", 0.0)
                row[f"{n}: operations (resize)"] = (whole - row.get(f"{n}: encode", 0.0)
                                                    - row.get(f"{n}: sRGB", 0.0))
            row["open + header + the rest"] = total - sum(row.values())
            row["total"] = total
            per_run.append(row)
    finally:
        decode.load, encode.encode, colour.to_srgb, pipeline._render = originals
    keys = sorted(per_run[0], key=lambda k: (k == "total", k.split(":")[0] != "decode (draft + load)", k))
    return {k: statistics.median(r.get(k, 0.0) for r in per_run) for k in keys}


def what_if_derived(data: bytes, runs: int = 3) -> list[tuple[str, float, float]]:
    """The resizes of the smaller variants, from the decode (as process_many does today) and
    from the largest variant's pixels (the suggested change), with the pipeline's filter and
    reducing gap: (variant, CPU ms from the decode, CPU ms from the largest), medians."""
    from io import BytesIO

    from PIL import Image

    from imgproxy.imaging import decode, operations, pipeline
    named, imaging, _ = store_plans()
    named = order_largest_first(data, named, imaging)
    sizes = pipeline.predict(data, [plan for _, plan in named], imaging)
    img = Image.open(BytesIO(data))
    decoded = decode.load(img, sizes[0][:2])  # process_many's draft: the largest's need
    resample, gap = operations.RESAMPLING["antialias"], operations.REDUCING_GAP
    largest = decoded.resize(sizes[0][:2], resample, reducing_gap=gap)
    rows = []
    for (name, _), (w, h, _) in list(zip(named, sizes))[1:]:
        direct = statistics.median(cpu_ms(lambda w=w, h=h: decoded.resize((w, h), resample, reducing_gap=gap))
                                   for _ in range(runs))
        derived = statistics.median(cpu_ms(lambda w=w, h=h: largest.resize((w, h), resample, reducing_gap=gap))
                                    for _ in range(runs))
        rows.append((f"{name} {w}x{h}", direct, derived))
    return rows


def what_if_webp_method(data: bytes, runs: int = 3) -> list[tuple[int, float, int]]:
    """The medium-sized WebP's encode at Pillow's default effort (method 4) and lower ones:
    (method, CPU ms, bytes), on the largest variant's pixels resized to the second variant."""
    from io import BytesIO

    from PIL import Image

    from imgproxy.imaging import decode, operations, pipeline
    named, imaging, variants = store_plans()
    named = order_largest_first(data, named, imaging)
    sizes = pipeline.predict(data, [plan for _, plan in named], imaging)
    quality = dict((v[0], v[3]) for v in variants)[named[1][0]] or 85
    resample, gap = operations.RESAMPLING["antialias"], operations.REDUCING_GAP
    img = decode.load(Image.open(BytesIO(data)), sizes[0][:2]).resize(sizes[1][:2], resample, reducing_gap=gap)
    rows = []
    for method in (4, 2, 0):
        out = BytesIO()
        img.save(out, "WEBP", quality=quality, method=method)
        ms = statistics.median(
            cpu_ms(lambda m=method: img.save(BytesIO(), "WEBP", quality=quality, method=m)) for _ in range(runs))
        rows.append((method, ms, len(out.getvalue())))
    return rows


# --- through the server ------------------------------------------------------------------------

def upload(port: int, body: bytes) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/images", body=body, headers={
            "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/octet-stream"})
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read() or b"{}")
    finally:
        conn.close()


def server_run(name: str, extra: list[str], data: bytes, uploads: int, repo: Path, tmp: Path,
               wait: float) -> dict:
    port = common.free_port()
    folder = tmp / name
    cmd = [sys.executable, "-m", "imgproxy", f"--port={port}", "--address=127.0.0.1", "--workers=2",
           f"--store_dir={folder / 'store'}", f"--store_token={TOKEN}",
           f"--store_db={folder / 'store.sqlite3'}", f"--job_db={folder / 'jobs.sqlite3'}"] + extra
    proc = common.start(cmd, common.CACHE / "logs" / f"store-upload-{name}.log", cwd=repo.resolve())
    try:
        common.wait_for_port(port, proc)
        time.sleep(1.0)
        status, doc = upload(port, data)  # warm-up: workers import, first decode
        if status != 201:
            raise RuntimeError(f"{name}: warm-up upload answered {status}: {doc}")
        variants = {k: f"{v['format']} {v['width']}x{v['height']} {v['bytes']} B" for k, v in doc["variants"].items()}
        time.sleep(1.0)
        wait_quiet(wait)
        before = common.tree_cpu(proc.pid)
        busy0 = common.machine_cpu_seconds()[0]
        own0 = common.own_cpu_seconds()
        t0 = time.perf_counter()
        walls = []
        for _ in range(uploads):
            w0 = time.perf_counter()
            status, doc = upload(port, data)
            walls.append(1000.0 * (time.perf_counter() - w0))
            if status != 201 or doc.get("state") != "ready":
                raise RuntimeError(f"{name}: upload answered {status}: {doc}")
        wall = time.perf_counter() - t0
        after = common.tree_cpu(proc.pid)
        cpu = sum((t - before.get(pid, common.Cpu())).total for pid, t in after.items())
        server_cores = cpu / wall
        others = max(0.0, (common.machine_cpu_seconds()[0] - busy0 - (common.own_cpu_seconds() - own0)) / wall
                     - server_cores)
        main_cpu = (after[proc.pid] - before.get(proc.pid, common.Cpu())).total
        return {"name": name, "cpu_ms": 1000.0 * cpu / uploads, "main_ms": 1000.0 * main_cpu / uploads,
                "wall_ms": statistics.median(walls), "variants": variants, "others": others}
    finally:
        common.stop(proc)


# --- main ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_repo_arg(parser)
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO,
                        help=f"the upload (default {DEFAULT_PHOTO.name}, the corpus's largest)")
    parser.add_argument("--repeats", type=int, default=5, help="timed imgproxy calls per case (5)")
    parser.add_argument("--recipe-repeats", type=int, default=3, help="timed recipe calls (3; each takes seconds)")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last one)")
    parser.add_argument("--no-server", dest="server", action="store_false", help="skip the server part")
    parser.add_argument("--uploads", type=int, default=8, help="timed uploads per server run (8)")
    parser.add_argument("--rounds", type=int, default=2, help="server runs of each kind, in turns (2)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each server run, wait up to this long for a quiet machine")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.path.insert(0, str(args.repo.resolve()))
    import PIL

    import imgproxy

    data = args.photo.read_bytes()
    from PIL import Image
    with Image.open(args.photo) as img:
        print(f"photo: {args.photo} ({img.format} {img.width}x{img.height}, "
              f"{img.width * img.height / 1e6:.1f} MP, {len(data) / 1e6:.2f} MB)")
    print(f"imgproxy from {Path(imgproxy.__file__).parent}; Pillow {PIL.__version__}")

    affinity = os.sched_getaffinity(0)
    cpu = args.cpu if args.cpu is not None else max(affinity)
    os.sched_setaffinity(0, {cpu})
    try:
        wait_quiet(args.wait_quiet)
        found = in_process(data, max(1, args.repeats), max(1, args.recipe_repeats))
        steps = breakdown(data)
        what_if = what_if_derived(data)
        methods = what_if_webp_method(data)
    finally:
        os.sched_setaffinity(0, affinity)
    med = found["median"]
    print(f"\nin process, pinned to CPU {cpu}, CPU ms, median of {args.repeats} "
          f"(recipe: {args.recipe_repeats}), in turns; variants largest first: {', '.join(found['order'])}")
    for label in ("upload", "recipe"):
        print(f"  {label} outputs: " + "; ".join(found["outputs"][label]))
    for name, values in found["times"].items():
        what = {"upload": "process_many, 3, derived", "upload-from-decode": "process_many, 3, from decode",
                "largest": f"process, {found['largest_name']} alone",
                "recipe": "Pillow recipe, 3 variants"}.get(name, f"process, {name} alone")
        print(f"  {name:<18} {what:<30} median {med[name]:8.1f}   runs " + " ".join(f"{v:.1f}" for v in values))
    parts = sum(med[n] for n in found["order"][1:]) + med["largest"]
    print(f"  upload / largest alone: {med['upload'] / med['largest']:.2f}x (aim: at most 1.3x); "
          f"every variant from the decode: {med['upload-from-decode'] / med['largest']:.2f}x")
    print(f"  recipe / upload: {med['recipe'] / med['upload']:.1f}x "
          f"(upload / recipe {med['upload'] / med['recipe']:.3f})")
    print(f"  upload / sum of the three alone ({parts:.1f} ms): {med['upload'] / parts:.2f}x")
    print("\none process_many call as the store makes it (derive=True), by step (CPU ms, median of 3):")
    for label, ms in steps.items():
        print(f"  {label:<32} {ms:8.1f}  {100 * ms / steps['total']:5.1f}%")

    print("\nwhat if the smaller variants were resized from the largest one's pixels "
          "(Lanczos, reducing gap 3, CPU ms, median of 3):")
    saved = 0.0
    for label, direct, derived in what_if:
        saved += direct - derived
        print(f"  {label:<22} from the decode {direct:7.1f}   from the largest {derived:7.1f}")
    estimate = (med["upload-from-decode"] - saved) / med["largest"]
    print(f"  every variant from the decode less that: about {estimate:.2f}x of the largest alone "
          f"({saved:.1f} ms less; the store derives them: 'upload' above)")

    print(f"  the second variant's WebP encode by effort (method; Pillow's default 4), {found['order'][1]}:")
    for method, ms, size in methods:
        print(f"    method {method}: {ms:6.1f} CPU ms, {size} B")

    if not args.server:
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="imgproxy-store-upload-"))
    largest = next(v for v in imgproxy.config.Settings().store_variants if v[0] == found["largest_name"])
    only_largest = ":".join("" if x is None else str(x) for x in largest)  # large:1920x1920::90
    kinds = [("3 variants", []), ("largest only", [f"--store_variants={only_largest}"])]
    rows = []
    try:
        for round_ in range(1, args.rounds + 1):
            for name, extra in kinds:
                row = server_run(name.replace(" ", "-") + f"-{round_}", extra, data, args.uploads,
                                 args.repo, tmp, args.wait_quiet)
                row["kind"], row["round"] = name, round_
                rows.append(row)
                print(f"server, {name}, round {round_}: {row['cpu_ms']:.1f} CPU ms per upload "
                      f"(main process {row['main_ms']:.1f}), wall p50 {row['wall_ms']:.0f} ms, "
                      f"others {row['others']:.2f} cores; {row['variants']}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nserver, {args.uploads} synchronous uploads per run, whole process tree CPU per upload:")
    print(f"{'kind':<14} {'round':>5} {'CPU ms':>8} {'main ms':>8} {'wall p50':>8} {'others':>6}")
    for r in rows:
        print(f"{r['kind']:<14} {r['round']:>5} {r['cpu_ms']:8.1f} {r['main_ms']:8.1f} {r['wall_ms']:8.0f} "
              f"{r['others']:6.2f}")
    by = {k: statistics.median(r["cpu_ms"] for r in rows if r["kind"] == k) for k, _ in kinds}
    print(f"server: upload with 3 variants / with the largest only: {by['3 variants'] / by['largest only']:.2f}x "
          f"({by['3 variants']:.1f} / {by['largest only']:.1f} ms, medians over {args.rounds} rounds)")
    print(f"server upload (3 variants) / in-process upload: {by['3 variants'] / med['upload']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
