"""Size vs. visual difference of JPEG, WebP and AVIF output, to choose quality_webp/quality_avif.

Run by hand; prints figures, asserts nothing (not a test). For each workload photo (the 13
large JPEGs of bench/workload_photos.txt in ../shared/corpus, or every image in --dir):

1. decode it and make the typical proxy outputs with Lanczos: a 300x300 centred crop and a
   1200 px wide resize (both by default; see --sizes). This resized image is the reference.
2. encode the reference as JPEG q90 (the default, kept from Pilbox; q75/q85 for context),
   WebP and AVIF at several qualities, with the save options imgproxy uses for them (see
   save_options below), timing each encode;
3. decode each result and compare it with the reference: SSIM on luma (Gaussian window,
   sigma 1.5, 11x11, K1=0.01, K2=0.03, as in Wang et al. 2004, no downsampling), PSNR on luma
   and PSNR over the three RGB channels (the only figure here that sees chroma errors).

Then, per output size and format, a table: mean of per-image bytes relative to JPEG q90, mean
and minimum SSIM, mean PSNR, mean encode ms. Finally the recommended qualities by this
criterion:

    the lowest quality whose mean luma SSIM is at least that of JPEG q90, for every
    output size; since one default serves all sizes, the highest of the per-size answers.

    cd /work/main && /tmp/venv/bin/python bench/quality.py [--sizes 300x300,1200w] [--dir DIR]
        [--limit N] [--webp 50,60,...] [--avif 40,50,...] [--json FILE] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, features

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from bench import common  # noqa: E402

JPEG_QUALITIES = (75, 85, 90)
JPEG_REFERENCE = 90
WEBP_QUALITIES = (50, 60, 70, 75, 80, 85, 88, 90, 91, 92, 95)
# AVIF quality is coarse: with libavif 1.4.2/aom some neighbours give byte-identical files
# (76 and 77, 80 and 81 on a 300x300 crop of Storm.jpg).
AVIF_QUALITIES = (40, 50, 55, 60, 65, 70, 75, 78, 80, 85, 90)
DEFAULT_SIZES = "300x300,1200w"


# --- the reference images -------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    label: str
    width: int
    height: int | None  # None: keep the aspect ratio (resize to width); else centred crop

    @classmethod
    def parse(cls, text: str) -> Target:
        text = text.strip()
        if text.endswith("w"):
            return cls(text, int(text[:-1]), None)
        w, h = text.split("x")
        return cls(text, int(w), int(h))


def load(path: Path) -> tuple[Image.Image, int]:
    """The photo, upright, as L or RGB (what imgproxy keeps), and its JPEG subsampling."""
    img = Image.open(path)
    subsampling = JpegImagePlugin.get_sampling(img) if img.format == "JPEG" else -1
    img = ImageOps.exif_transpose(img)
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    img.load()
    return img, subsampling


def make_reference(img: Image.Image, target: Target) -> Image.Image:
    if target.height is None:
        height = max(1, round(img.height * target.width / img.width))
        return img.resize((target.width, height), Image.Resampling.LANCZOS)
    return ImageOps.fit(img, (target.width, target.height), Image.Resampling.LANCZOS)


# --- encoding, as imgproxy.imaging.encode does it -----------------------------------------

def save_options(fmt: str, quality: int, subsampling: int) -> dict:
    """imgproxy's save options for a JPEG source with default opt/prog/exif settings.

    JPEG keeps the source's chroma subsampling (for RGB) and is neither optimised nor
    progressive by default; WebP and AVIF get only the quality, so Pillow's defaults apply
    (WebP method 4; AVIF speed 6, 4:2:0, or 4:0:0 for L, all CPUs as encoder threads).
    """
    options: dict = {"quality": quality}
    if fmt == "JPEG":
        options.update(progressive=False, optimize=False)
        if subsampling >= 0:
            options["subsampling"] = subsampling
    return options


def output_mode(fmt: str, mode: str) -> str:
    """imgproxy's WRITABLE_MODES: WebP has no greyscale mode, JPEG and AVIF keep L."""
    return "RGB" if fmt == "WEBP" else mode


AVIF_SPEED: int | None = None  # --avif-speed, for context only; imgproxy passes none


def encode(img: Image.Image, fmt: str, quality: int,
           subsampling: int) -> tuple[bytes, float, float]:
    """(data, wall ms, CPU ms of this process: every encoder thread counts)."""
    img = img.convert(output_mode(fmt, img.mode))
    options = save_options(fmt, quality, subsampling if img.mode == "RGB" else -1)
    if fmt == "AVIF" and AVIF_SPEED is not None:
        options["speed"] = AVIF_SPEED
    out = BytesIO()
    wall, cpu = time.perf_counter(), time.process_time()
    img.save(out, fmt, **options)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return out.getvalue(), wall * 1000, cpu * 1000


SAMPLING_NAMES = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}


def warm_up(grid: list[tuple[str, int]]) -> None:
    """One untimed encode per format, so no library set-up lands in the first timing."""
    img = Image.new("RGB", (64, 64), (128, 64, 32))
    for fmt in {fmt for fmt, _ in grid}:
        encode(img, fmt, 80, -1)


# --- metrics ------------------------------------------------------------------------

def _gaussian(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    w = np.exp(-(x ** 2) / (2 * sigma ** 2))
    return w / w.sum()


_WINDOW = _gaussian()


def _filter(a: np.ndarray) -> np.ndarray:
    """Separable Gaussian filter, 'valid' region only (no padding at the borders)."""
    k = len(_WINDOW)
    rows = a.shape[0] - k + 1
    cols = a.shape[1] - k + 1
    tmp = sum(_WINDOW[i] * a[i:i + rows, :] for i in range(k))
    return sum(_WINDOW[j] * tmp[:, j:j + cols] for j in range(k))


def ssim(x: np.ndarray, y: np.ndarray, data_range: float = 255.0) -> float:
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mx, my = _filter(x), _filter(y)
    sxx = _filter(x * x) - mx * mx
    syy = _filter(y * y) - my * my
    sxy = _filter(x * y) - mx * my
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return float(np.mean(num / den))


def psnr(x: np.ndarray, y: np.ndarray, data_range: float = 255.0) -> float:
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(data_range ** 2 / mse)


def planes(img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(luma, RGB) as float64: BT.601 Y' computed in floating point, not Pillow's rounded L."""
    rgb = np.asarray(img.convert("RGB"), dtype=np.float64)
    if img.mode == "L":
        luma = np.asarray(img, dtype=np.float64)
    else:
        luma = rgb @ np.array([0.299, 0.587, 0.114])
    return luma, rgb


@dataclass
class Result:
    photo: str
    size: str
    fmt: str
    quality: int
    bytes: int
    ms: float
    cpu_ms: float
    ssim: float
    psnr_y: float
    psnr_rgb: float


def measure(img: Image.Image, photo: str, size: str, subsampling: int,
            grid: list[tuple[str, int]]) -> list[Result]:
    ref_y, ref_rgb = planes(img)
    results = []
    for fmt, quality in grid:
        data, ms, cpu_ms = encode(img, fmt, quality, subsampling)
        with Image.open(BytesIO(data)) as decoded:
            decoded.load()
            if img.mode == "L" and decoded.mode != "L":
                decoded = decoded.convert("L")  # WebP stored the grey photo as RGB
            y, rgb = planes(decoded)
        results.append(Result(photo, size, fmt, quality, len(data), ms, cpu_ms, ssim(ref_y, y),
                              psnr(ref_y, y), psnr(ref_rgb, rgb)))
    return results


# --- report -------------------------------------------------------------------------

def summarise(results: list[Result], size: str, fmt: str, quality: int) -> dict:
    rows = [r for r in results if r.size == size and r.fmt == fmt and r.quality == quality]
    ref = {r.photo: r for r in results
           if r.size == size and r.fmt == "JPEG" and r.quality == JPEG_REFERENCE}
    return {
        "n": len(rows),
        "rel_bytes": statistics.mean(r.bytes / ref[r.photo].bytes for r in rows),
        "total_rel": sum(r.bytes for r in rows) / sum(ref[r.photo].bytes for r in rows),
        "kb": statistics.mean(r.bytes for r in rows) / 1000,
        "ssim": statistics.mean(r.ssim for r in rows),
        "ssim_min": min(r.ssim for r in rows),
        "ssim_ge_ref": sum(r.ssim >= ref[r.photo].ssim for r in rows),
        "psnr_y": statistics.mean(r.psnr_y for r in rows),
        "psnr_rgb": statistics.mean(r.psnr_rgb for r in rows),
        "ms": statistics.mean(r.ms for r in rows),
        "cpu_ms": statistics.mean(r.cpu_ms for r in rows),
    }


HEADER = ("| format | q | bytes vs JPEG q90 (mean / total) | mean kB | mean SSIM | min SSIM "
          "| SSIM >= JPEG q90 | PSNR-Y dB | PSNR-RGB dB | encode ms | encode CPU ms |")
RULE = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"


def table(results: list[Result], size: str, grid: list[tuple[str, int]]) -> list[str]:
    lines = [HEADER, RULE]
    for fmt, quality in grid:
        s = summarise(results, size, fmt, quality)
        lines.append(
            f"| {fmt} | {quality} | {s['rel_bytes']:.3f} / {s['total_rel']:.3f} "
            f"| {s['kb']:.1f} | {s['ssim']:.4f} | {s['ssim_min']:.4f} "
            f"| {s['ssim_ge_ref']}/{s['n']} | {s['psnr_y']:.2f} | {s['psnr_rgb']:.2f} "
            f"| {s['ms']:.1f} | {s['cpu_ms']:.1f} |")
    return lines


def recommend(results: list[Result], sizes: list[str], fmt: str, qualities: tuple[int, ...],
              jpeg_quality: int = JPEG_REFERENCE) -> tuple[int | None, dict[str, int | None]]:
    """Per size, the lowest q with mean SSIM >= JPEG's; overall, the highest of those."""
    per_size: dict[str, int | None] = {}
    for size in sizes:
        target = summarise(results, size, "JPEG", jpeg_quality)["ssim"]
        per_size[size] = next((q for q in sorted(qualities)
                               if summarise(results, size, fmt, q)["ssim"] >= target), None)
    found = [q for q in per_size.values() if q is not None]
    overall = max(found) if len(found) == len(per_size) else None
    return overall, per_size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_workload_args(parser)
    parser.add_argument("--sizes", default=DEFAULT_SIZES,
                        help="comma-separated outputs: WxH (centred crop) or Ww (width only); "
                             f"default {DEFAULT_SIZES}")
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos")
    parser.add_argument("--jpeg", default=",".join(map(str, JPEG_QUALITIES)))
    parser.add_argument("--webp", default=",".join(map(str, WEBP_QUALITIES)))
    parser.add_argument("--avif", default=",".join(map(str, AVIF_QUALITIES)))
    parser.add_argument("--avif-speed", type=int, default=None,
                        help="pass this AVIF speed (0-10) instead of Pillow's default, "
                             "which is what imgproxy uses; for context only")
    parser.add_argument("--json", type=Path, default=None, help="also write every result here")
    args = parser.parse_args(argv)
    global AVIF_SPEED
    AVIF_SPEED = args.avif_speed

    def qualities(text: str) -> tuple[int, ...]:
        return tuple(sorted({int(q) for q in text.split(",") if q.strip()}))

    jpeg_q = tuple(sorted(set(qualities(args.jpeg)) | {JPEG_REFERENCE}))
    webp_q, avif_q = qualities(args.webp), qualities(args.avif)
    if not features.check("avif"):
        print("this Pillow has no AVIF encoder: AVIF skipped")
        avif_q = ()
    grid = ([("JPEG", q) for q in jpeg_q] + [("WEBP", q) for q in webp_q]
            + [("AVIF", q) for q in avif_q])
    targets = [Target.parse(t) for t in args.sizes.split(",") if t.strip()]
    photos = common.workload(args.dir)[:args.limit]

    print(f"Pillow {Image.__version__}, libjpeg-turbo {features.version('libjpeg_turbo')}, "
          f"libwebp {features.version('webp')}, libavif {features.version('avif')}; "
          f"{os.cpu_count()} CPUs; {len(photos)} photos; sizes {args.sizes}; AVIF speed "
          f"{'default' if AVIF_SPEED is None else AVIF_SPEED}")
    warm_up(grid)
    started = time.perf_counter()
    results: list[Result] = []
    for path in photos:
        t0 = time.perf_counter()
        img, subsampling = load(path)
        for target in targets:
            ref = make_reference(img, target)
            results += measure(ref, path.name, target.label, subsampling, grid)
        sampling = SAMPLING_NAMES.get(subsampling, "n/a") if img.mode == "RGB" else "grey"
        print(f"  {path.name}: {img.width}x{img.height} {img.mode} {sampling}, "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
    print(f"total {time.perf_counter() - started:.0f} s\n")

    sizes = [t.label for t in targets]
    for size in sizes:
        print(f"### {size}\n")
        print("\n".join(table(results, size, grid)))
        print()

    print("### Recommendation: lowest q with mean luma SSIM >= JPEG q90's at every size\n")
    for fmt, qs in (("WEBP", webp_q), ("AVIF", avif_q)):
        if not qs:
            continue
        overall, per_size = recommend(results, sizes, fmt, qs)
        detail = ", ".join(f"{s}: {q if q is not None else 'none in grid'}"
                           for s, q in per_size.items())
        if overall is None:
            print(f"- quality_{fmt.lower()}: no quality in {qs} reaches JPEG q90 "
                  f"at every size ({detail})")
            continue
        figures = []
        for size in sizes:
            s = summarise(results, size, fmt, overall)
            j = summarise(results, size, "JPEG", JPEG_REFERENCE)
            figures.append(f"{size}: {s['rel_bytes']:.2f}x JPEG q90 bytes "
                           f"(saves {(1 - s['rel_bytes']) * 100:.0f}%), SSIM {s['ssim']:.4f} "
                           f"vs {j['ssim']:.4f}, encode {s['ms']:.0f} ms "
                           f"({s['cpu_ms']:.0f} CPU ms) vs {j['ms']:.1f} ms")
        print(f"- quality_{fmt.lower()} = {overall} (per size {detail}); " + "; ".join(figures))

    print("\n### Same mean luma SSIM as JPEG at other qualities (lowest q, every size)\n")
    for jq in jpeg_q:
        answers = []
        for fmt, qs in (("WEBP", webp_q), ("AVIF", avif_q)):
            if qs:
                overall, per_size = recommend(results, sizes, fmt, qs, jq)
                detail = ", ".join(f"{s} {q if q is not None else '-'}"
                                   for s, q in per_size.items())
                answers.append(f"{fmt} {overall if overall is not None else 'none'} ({detail})")
        print(f"- JPEG q{jq}: " + "; ".join(answers))

    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
        print(f"\nall results written to {args.json}")


if __name__ == "__main__":
    main()
