"""pos=face on the corpus: which images give a face and where, and what detection costs.

For every image in the corpus (and corpus/derived): decode it as the pipeline does for a
300x200 face crop (JPEG draft included), run faces.detect() on the 8-bit picture and print
the faces found, as boxes in the source's pixels. Then, side by side in the same loop and
pinned to one CPU, the CPU time (time.process_time, median of --repeats after a warm-up) of
faces.detect() alone, of pipeline.process() for a 300x200 crop at the centre, and of the
same crop with pos=face; and their ratios.

    cd /work/wt/faces && .venv/bin/python bench/faces.py [--repeats 5] [--dir DIR] [--cpu N]
        [--repo DIR] [--no-cost]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from bench import common  # noqa: E402

SUFFIXES = common.IMAGE_SUFFIXES + (".mpo",)
BOX = (300, 200)


def images(folder: Path) -> list[Path]:
    found = [p for sub in (folder, folder / "derived") if sub.is_dir()
             for p in sorted(sub.iterdir()) if p.suffix.lower() in SUFFIXES]
    if not found:
        raise SystemExit(f"no images in {folder}")
    return found


def seen_by_detector(data: bytes):
    """The 8-bit picture pos=face detects on, and the source's size."""
    from imgproxy.config import Settings
    from imgproxy.imaging import decode, modes, pipeline
    from imgproxy.plan import FACE, Resize

    img = decode.open_image(data, Settings().input_formats)
    size = img.size
    ops = [Resize(*BOX, "crop", position=FACE)]
    img = decode.load(img, pipeline.draft_size(ops, size))
    return modes.eight_bit(img), size


def plans():
    from imgproxy.plan import FACE, Plan, Resize, Save

    def plan(position):
        return Plan((Resize(*BOX, "crop", position=position),), Save(quality=85))
    return plan((0.5, 0.5)), plan(FACE)


def cpu_ms(call) -> float:
    start = time.process_time()
    call()
    return 1000.0 * (time.process_time() - start)


def measure(data: bytes, img, repeats: int) -> dict:
    """Median CPU ms of detect, a centre crop and a face crop, taken in turns."""
    from imgproxy.config import Settings
    from imgproxy.imaging import faces
    from imgproxy.imaging.pipeline import process
    from imgproxy.render import imaging_settings

    imaging = imaging_settings(Settings())
    centre, face = plans()
    calls = {"detect": lambda: faces.detect(img), "centre": lambda: process(data, centre, imaging),
             "face": lambda: process(data, face, imaging)}
    for call in calls.values():  # warm-up
        call()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            times[name].append(cpu_ms(call))
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=common.DEFAULT_CORPUS,
                        help=f"folder of images, and its derived/ (default {common.DEFAULT_CORPUS})")
    common.add_repo_arg(parser)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per image (default 5)")
    parser.add_argument("--cpu", type=int, default=None,
                        help="CPU to pin to (default: the last one this process may use)")
    parser.add_argument("--no-cost", action="store_true", help="detections only, no timing")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.repo.resolve()))
    import imgproxy
    from imgproxy.imaging import faces

    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    print(f"imgproxy from {Path(imgproxy.__file__).parent}; cascade {faces.CASCADE}, "
          f"detect side {faces.DETECT_SIDE}; CPU {cpu}, median of {args.repeats}")
    print(f"{'image':<42} {'source':>10} {'detected on':>11}  faces (left, top, right, bottom in source px)")
    totals = {"detect": 0.0, "centre": 0.0, "face": 0.0}
    costs = []
    for path in images(args.dir):
        data = path.read_bytes()
        img, size = seen_by_detector(data)
        scale = min(1.0, faces.DETECT_SIDE / max(img.size))
        on = f"{round(img.width * scale)}x{round(img.height * scale)}"
        boxes = [tuple(round(v * s) for v, s in zip(box, size * 2)) for box in faces.detect(img)]
        name = str(path.relative_to(args.dir))
        print(f"{name:<42} {size[0]:>4}x{size[1]:<5} {on:>11}  {boxes or '-'}", flush=True)
        if not args.no_cost:
            costs.append((name, on, measure(data, img, max(1, args.repeats))))
    if not costs:
        return 0
    print(f"\nCPU ms per image ({BOX[0]}x{BOX[1]} crop, q85); detect = faces.detect() on the decoded "
          "picture; centre / face = pipeline.process() with pos=center / pos=face")
    print(f"{'image':<42} {'on':>9} {'detect':>7} {'centre':>7} {'face':>7} {'det/centre':>10} {'face/centre':>11}")
    for name, on, ms in costs:
        for key in totals:
            totals[key] += ms[key]
        print(f"{name:<42} {on:>9} {ms['detect']:7.1f} {ms['centre']:7.1f} {ms['face']:7.1f} "
              f"{ms['detect'] / ms['centre']:10.2f} {ms['face'] / ms['centre']:11.2f}")
    print(f"{'total':<42} {'':>9} {totals['detect']:7.1f} {totals['centre']:7.1f} {totals['face']:7.1f} "
          f"{totals['detect'] / totals['centre']:10.2f} {totals['face'] / totals['centre']:11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
