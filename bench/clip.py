"""Benchmark ``featctl embed --image`` with a ``clip:`` encoder against the model's forward pass alone.

Goal: the pipeline's images/s is at least 0.9x the model's forward-only images/s on already
preprocessed tensors, both measured in the same run (these machines are noisy: 2 cores, other work
running alongside, so only ratios within one invocation mean anything).

A CLIP with ViT-B/32 vision dimensions (hidden 768, 12 layers, 12 heads, MLP 3072, 224 px, patch 32;
a small text tower, projection 512) and random weights is saved with its processor to a temporary
folder; N synthetic poster-like JPEG files (300x450, quality 90) and an items.tsv naming them are
written next to it. Then, alternately, ``--repeats`` times each:

1. forward only (the baseline): the saved model loaded with ``CLIPModel.from_pretrained``, every
   image preprocessed up front (not timed), then ``model.get_image_features(pixel_values=batch)``
   under ``torch.inference_mode()`` in batches of 32 (featctl's default batch size), timed;
2. pipeline: ``featctl.embed(EmbedConfig(..., encoder="clip:FOLDER", image="poster"))`` into a
   fresh store, timed end to end: model load, scan (hashing every file), decode, preprocessing,
   the model, committing. The model's own calls and the encoder's load are timed as well (by
   wrapping them for the run), so the report says how much of the run was spent outside the model.

Reported: medians, per-pair ratios, and the final ratio median(pipeline images/s) / median(forward
images/s), plus a check that the stored vectors equal the forward pass's normalised features.
Results go to bench/results/clip.json (git-ignored).

Usage::

    .venv/bin/python bench/clip.py            # 384 images, about 6-8 minutes on 2 cores
    .venv/bin/python bench/clip.py --quick    # 64 images, smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/clip_model.py

import featctl
from featctl.encoders.clip import CLIPEncoder
from featctl.pipeline.config import EmbedConfig
from featctl.pipeline.runner import embed
from featctl.pipeline.sources import SourceSpec

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "clip.json"

TARGET = 0.9  # pipeline images/s over forward-only images/s, at least
BATCH_SIZE = 32  # featctl's default for clip:
IMAGE_SIZE = (300, 450)  # width, height: a poster
MAX_ABS_DIFF = 1e-4  # stored vs forward-only normalised vectors


# --------------------------------------------------------------------------- inputs

def make_model(folder: Path) -> Path:
    """A CLIP with ViT-B/32 vision dimensions and random weights, saved with its processor.

    The tokenizer is a character vocabulary built in place (tests/clip_model.py), so
    nothing is downloaded; only the image tower is timed.
    """
    from tests.clip_model import save_random_clip

    return save_random_clip(folder, projection_dim=512, image_size=224,
                            vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, patch_size=32),
                            text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=2))


def make_posters(folder: Path, n: int, seed: int = 0) -> tuple[Path, list[Path]]:
    """``n`` poster-like JPEG files (smooth colour noise, grain, shapes) and an items.tsv naming them."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    images = folder / "posters"
    images.mkdir(parents=True)
    width, height = IMAGE_SIZE
    paths = []
    for i in range(1, n + 1):
        coarse = np_rng.integers(0, 256, (height // 25, width // 25, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
        grain = np_rng.integers(-24, 25, (height, width, 3))
        image = Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + grain, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(rng.randint(3, 8)):
            x0, y0 = rng.randrange(width), rng.randrange(height)
            box = (x0, y0, x0 + rng.randint(20, 160), y0 + rng.randint(20, 160))
            fill = tuple(rng.randrange(256) for _ in range(3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
        draw.text((20, height - 60), f"POSTER {i}", fill=(255, 255, 255))
        path = images / f"{i}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    source = folder / "items.tsv"
    source.write_text("id\tposter\n" + "".join(f"{i}\tposters/{i}.jpg\n" for i in range(1, n + 1)), encoding="utf-8")
    return source, paths


# --------------------------------------------------------------------------- runners

class Forward:
    """The baseline: the saved model, called directly on tensors preprocessed up front."""

    def __init__(self, folder: Path, paths: Sequence[Path]) -> None:
        import torch
        from PIL import Image
        from transformers import CLIPModel, CLIPProcessor

        self.torch = torch
        self.model = CLIPModel.from_pretrained(folder).eval()
        processor = CLIPProcessor.from_pretrained(folder)
        started = time.perf_counter()
        chunks = []
        for lo in range(0, len(paths), BATCH_SIZE):
            images = []
            for path in paths[lo:lo + BATCH_SIZE]:
                with Image.open(path) as image:
                    images.append(image.convert("RGB"))
            chunks.append(processor(images=images, return_tensors="pt")["pixel_values"])
        self.pixels = torch.cat(chunks)
        self.preprocess_seconds = time.perf_counter() - started

    def run(self, limit: int | None = None) -> tuple[float, float, np.ndarray]:
        """Wall and process-CPU seconds of the forward passes over every image; the normalised features."""
        torch, pixels = self.torch, self.pixels[:limit]
        out = []
        cpu, started = time.process_time(), time.perf_counter()
        with torch.inference_mode():
            for lo in range(0, len(pixels), BATCH_SIZE):
                out.append(self.model.get_image_features(pixel_values=pixels[lo:lo + BATCH_SIZE]))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        matrix = np.concatenate([getattr(f, "pooler_output", f).numpy() for f in out])
        return seconds, cpu, matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


@contextlib.contextmanager
def timed_calls() -> Iterator[dict[str, float]]:
    """Sum the seconds spent in ``CLIPModel.get_image_features`` and ``CLIPEncoder._load`` while open."""
    from transformers import CLIPModel

    spent = {"model": 0.0, "load": 0.0, "batches": 0, "first_call": 0.0}
    forward, load = CLIPModel.get_image_features, CLIPEncoder._load

    def timed_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        spent["first_call"] = spent["first_call"] or started
        try:
            return forward(self, *args, **kwargs)
        finally:
            spent["model"] += time.perf_counter() - started
            spent["batches"] += 1

    def timed_load(self: Any) -> Any:
        started = time.perf_counter()
        try:
            return load(self)
        finally:
            spent["load"] += time.perf_counter() - started

    CLIPModel.get_image_features, CLIPEncoder._load = timed_forward, timed_load
    try:
        yield spent
    finally:
        CLIPModel.get_image_features, CLIPEncoder._load = forward, load


def run_pipeline(source: Path, store: Path, folder: Path) -> dict[str, Any]:
    """One ``featctl.embed`` into a fresh store: wall and CPU seconds, model and load time, its result."""
    config = EmbedConfig(source=SourceSpec(path=str(source)), store=str(store), encoder=f"clip:{folder}",
                         image="poster")
    with timed_calls() as spent:
        cpu, started = time.process_time(), time.perf_counter()
        result = embed(config)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "model_seconds": spent["model"],
            "load_seconds": spent["load"], "before_first_batch_seconds": spent["first_call"] - started,
            "model_batches": spent["batches"], "result": result.to_dict()}


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# --------------------------------------------------------------------------- main

def bench(work: Path, n: int, repeats: int) -> dict[str, Any]:
    import torch

    folder = make_model(work / "model")
    source, paths = make_posters(work / "data", n)
    sizes = [p.stat().st_size for p in paths]
    log.info("model saved; %d posters, %.0f KiB on average", n, statistics.mean(sizes) / 1024)
    forward = Forward(folder, paths)
    log.info("forward-only: %d images preprocessed up front in %.1f s (not timed)", n, forward.preprocess_seconds)

    # Warm-up, not counted: first calls allocate, and the OS caches the files.
    warm = min(n, 2 * BATCH_SIZE)
    warm_source = work / "data" / "warm.tsv"
    warm_source.write_text("".join(source.read_text(encoding="utf-8").splitlines(keepends=True)[:warm + 1]),
                           encoding="utf-8")
    forward.run(warm)
    run_pipeline(warm_source, work / "store-warm", folder)

    forward_runs: list[dict[str, float]] = []
    pipeline_runs: list[dict[str, Any]] = []
    vectors = np.zeros((0, 0), np.float32)
    for i in range(repeats):
        for kind in (("forward", "pipeline") if i % 2 == 0 else ("pipeline", "forward")):
            if kind == "forward":
                seconds, cpu, vectors = forward.run()
                forward_runs.append({"seconds": seconds, "cpu_seconds": cpu})
            else:
                run = run_pipeline(source, work / f"store-{i}", folder)
                assert run["result"]["encoded"] == n and run["result"]["failed"] == 0, run["result"]
                pipeline_runs.append(run)
                seconds = run["seconds"]
            log.info("  repeat %d %-8s %6.2f s  %5.1f images/s", i + 1, kind, seconds, n / seconds)

    stored, mask = featctl.open_store(work / f"store-{repeats - 1}").feature_set("item_image").vectors(range(1, n + 1))
    max_diff = float(np.abs(stored - vectors).max())
    forward_s = [r["seconds"] for r in forward_runs]
    pipeline_s = [r["seconds"] for r in pipeline_runs]
    forward_rate, pipeline_rate = n / median(forward_s), n / median(pipeline_s)
    return {
        "images": n, "batch_size": BATCH_SIZE, "repeats": repeats, "image_size": list(IMAGE_SIZE),
        "mean_file_bytes": statistics.mean(sizes), "torch_threads": torch.get_num_threads(),
        "featctl_workers": CLIPEncoder(str(folder)).workers,
        "preprocess_up_front_seconds": forward.preprocess_seconds,
        "forward": forward_runs, "pipeline": pipeline_runs,
        "forward_images_per_s": forward_rate, "pipeline_images_per_s": pipeline_rate,
        "pair_ratios": [f / p for f, p in zip(forward_s, pipeline_s)],
        "ratio": pipeline_rate / forward_rate, "best_run_ratio": min(forward_s) / min(pipeline_s),
        "stored_all": bool(mask.all()), "max_abs_diff": max_diff,
    }


def environment() -> dict[str, Any]:
    import PIL
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "pillow": PIL.__version__, "featctl": featctl.__version__, "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "loadavg_start": os.getloadavg(), "platform": platform.platform()}


def print_report(report: dict[str, Any]) -> None:
    b = report["bench"]
    n = b["images"]
    print(f"\n== featctl embed --image, clip: ViT-B/32-sized random CLIP, {n} posters "
          f"{b['image_size'][0]}x{b['image_size'][1]} JPEG (~{b['mean_file_bytes'] / 1024:.0f} KiB), batch "
          f"{b['batch_size']}, {b['torch_threads']} torch threads, {b['featctl_workers']} featctl decode workers, "
          f"{report['environment']['cpu_count']} CPUs ==")
    print(f"medians of {b['repeats']}, interleaved:")
    fwd = [r["seconds"] for r in b["forward"]]
    pipe = [r["seconds"] for r in b["pipeline"]]
    print(f"  forward only (preprocessed tensors) {b['forward_images_per_s']:6.1f} images/s   runs: "
          + ", ".join(f"{s:.2f}" for s in fwd) + " s")
    print(f"  featctl.embed (end to end)          {b['pipeline_images_per_s']:6.1f} images/s   runs: "
          + ", ".join(f"{s:.2f}" for s in pipe) + " s")
    print("  per-pair ratio pipeline/forward: " + ", ".join(f"{r:.3f}" for r in b["pair_ratios"]))
    model = median([r["model_seconds"] for r in b["pipeline"]])
    load = median([r["load_seconds"] for r in b["pipeline"]])
    total = median(pipe)
    first = median([r["before_first_batch_seconds"] for r in b["pipeline"]])
    print(f"  inside the pipeline (medians): model calls {model:.2f} s ({model / total:.1%}), outside the model "
          f"{total - model:.2f} s ({(total - model) / total:.1%}) of {total:.2f} s, of which encoder load "
          f"{load:.2f} s; {first:.2f} s passed before the first batch reached the model (load, scan, decode)")
    print(f"  model calls inside the pipeline vs forward-only: {model:.2f} s vs {median(fwd):.2f} s "
          f"({model / median(fwd):.2f}x; above 1: the model ran slower inside the pipeline, from decode threads "
          "sharing the cores or from noise)")
    print(f"  process CPU seconds, median: forward {median([r['cpu_seconds'] for r in b['forward']]):.1f}, "
          f"pipeline {median([r['cpu_seconds'] for r in b['pipeline']]):.1f}")
    print(f"  best run each (least disturbed by other work): ratio {b['best_run_ratio']:.3f}")
    print(f"  stored vs forward-only vectors: max abs diff {b['max_abs_diff']:.1e}, all stored: {b['stored_all']}")
    verdict = "met" if b["ratio"] >= TARGET else "NOT met"
    print(f"\nratio pipeline/forward = {b['ratio']:.3f}: goal >= {TARGET} {verdict}")
    print(f"wall time {report['wall_seconds']:.0f} s; results: {RESULTS.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=None, help="posters to embed (default 384, --quick 64)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 64 images")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    args = parser.parse_args()
    args.images = args.images or (64 if args.quick else 384)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    import transformers

    transformers.utils.logging.set_verbosity_error()  # the processor-backend notice, once per load
    transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars, once per run

    started = time.perf_counter()
    report: dict[str, Any] = {"environment": environment(), "args": vars(args)}
    print(f"torch.get_num_threads() = {report['environment']['torch_threads']}")
    work = Path(tempfile.mkdtemp(prefix="featctl-bench-clip-"))
    # featctl caches model-file digests under $XDG_CACHE_HOME: keep this run's temporary folders out
    # of the user's cache (the warm-up run pays the one-time hash of the weights, untimed).
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    try:
        report["bench"] = bench(work, args.images, args.repeats)
    finally:
        if args.keep:
            log.info("work folder kept: %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    report["wall_seconds"] = time.perf_counter() - started
    report["met"] = report["bench"]["ratio"] >= TARGET
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print_report(report)


if __name__ == "__main__":
    main()
