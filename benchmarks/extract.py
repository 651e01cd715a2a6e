"""Feature-extraction throughput: images per second per backbone (random weights, CPU default).

Usage::

    python benchmarks/extract.py                       # a few small backbones
    python benchmarks/extract.py timm:resnet50 open_clip:ViT-B-32 --images 128 --device cuda
    python benchmarks/extract.py --default-world       # the default model set on the default world

``--default-world`` builds (or reuses) the embedded default world and extracts the features of
every default model from its images into a fresh cache, exactly as
``extract_world_features`` does (PNG decode, the model's preprocessing, batched forward
passes, saving): it prints images per second per backbone and the wall time of the whole
extraction. CPU pressure (Linux PSI, share of time some task waited for a CPU) is printed
before and after, since other processes on a shared machine inflate wall times.

Generated 224 x 224 RGB images go through each backbone's own preprocessing and network in
batches (default 32) under ``torch.inference_mode``; torch keeps its default thread count.
Reported: images/s for the forward pass alone (preprocessed tensors) and end to end
(PIL image -> preprocessing -> network). The first batch is a warm-up and is not timed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from modelrecovery.features import build_backbone

DEFAULT_BACKBONES = (
    "timm:resnet10t",
    "timm:mobilenetv3_small_050",
    "timm:resnet18",
    "efficientnet_lite0_imagenet",
    "open_clip:ViT-S-32",
    "open_clip:ViT-B-32",
)


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8)) for _ in range(n)
    ]


def bench(name: str, images: list[Image.Image], batch_size: int, device: str) -> dict[str, float]:
    """Time one backbone; returns build seconds, forward-only and end-to-end images/s."""
    t0 = time.perf_counter()
    backbone = build_backbone(name, pretrained=False, seed=0)
    build_s = time.perf_counter() - t0
    model = backbone.model.to(device)
    batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():
        warm = torch.stack([backbone.transform(im) for im in batches[0]]).to(device)
        model(warm)
        sync()
        tensors = [torch.stack([backbone.transform(im) for im in b]) for b in batches]
        t0 = time.perf_counter()
        for x in tensors:
            model(x.to(device))
        sync()
        forward_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for b in batches:
            model(torch.stack([backbone.transform(im) for im in b]).to(device))
        sync()
        total_s = time.perf_counter() - t0
    return {
        "dim": backbone.feature_dim,
        "build_s": build_s,
        "forward_ips": len(images) / forward_s,
        "end_to_end_ips": len(images) / total_s,
    }


def _cpu_pressure() -> str:
    """``avg10``/``avg60`` of /proc/pressure/cpu (some), or ``n/a``."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return "n/a"
    fields = dict(f.split("=") for f in line.split()[1:])
    return f"{fields.get('avg10', '?')}% (10 s), {fields.get('avg60', '?')}% (60 s)"


def bench_default_world(args: argparse.Namespace) -> int:
    """Images per second per default backbone and wall time of the whole default world."""
    from modelrecovery.features.extract import extract_features
    from modelrecovery.world import WorldConfig, build_world
    from modelrecovery.world.models import default_model_set

    t0 = time.perf_counter()
    world = build_world(WorldConfig(), args.root)
    world_s = time.perf_counter() - t0
    images = world.image_list()
    n = images.n_images
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
        f"batch {args.batch_size}; default world {world.root.name}: {len(images)} concepts, "
        f"{n} images of {world.config.image_size} px (world ready in {world_s:.1f} s, built "
        f"in {world.metadata['build_seconds']['total']:.1f} s)"
    )
    print(f"CPU pressure before: {_cpu_pressure()}")
    print(f"{'backbone':44s} {'dim':>5s} {'wall s':>7s} {'cpu s':>7s} {'img/s':>7s}")
    total_wall, total_cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as cache:
        for spec in default_model_set():
            w0, c0 = time.perf_counter(), time.process_time()
            result = extract_features(
                spec.name,
                images,
                pretrained=spec.pretrained,
                cache_dir=cache,
                batch_size=args.batch_size,
                device=args.device,
                progress=False,
            )
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            print(
                f"{spec.name:44s} {result.features.shape[1]:5d} {wall:7.2f} {cpu:7.2f} "
                f"{n / wall:7.1f}",
                flush=True,
            )
    wall = time.perf_counter() - total_wall
    cpu = time.process_time() - total_cpu
    print(
        f"whole default world: {len(default_model_set())} models x {n} images in {wall:.1f} s "
        f"wall ({cpu:.1f} s CPU); goal: under 60 s on 2 cores"
    )
    print(f"CPU pressure after: {_cpu_pressure()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("backbones", nargs="*", default=list(DEFAULT_BACKBONES))
    parser.add_argument("--images", type=int, default=96, help="images per backbone")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--default-world",
        action="store_true",
        help="time the default model set on the default world's images (whole extraction)",
    )
    parser.add_argument(
        "--root", default=None, help="worlds folder for --default-world (default: data/worlds)"
    )
    args = parser.parse_args(argv)
    if args.default_world:
        return bench_default_world(args)
    images = _images(args.images)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
        f"{args.images} images of 224x224, batch {args.batch_size}, random weights"
    )
    print(f"{'backbone':32s} {'dim':>5s} {'build s':>8s} {'fwd img/s':>10s} {'e2e img/s':>10s}")
    for name in args.backbones:
        try:
            r = bench(name, images, args.batch_size, args.device)
        except Exception as exc:  # report and go on with the other backbones
            print(f"{name:32s} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        print(
            f"{name:32s} {r['dim']:5d} {r['build_s']:8.2f} {r['forward_ips']:10.1f} "
            f"{r['end_to_end_ips']:10.1f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
