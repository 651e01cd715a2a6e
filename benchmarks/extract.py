"""Feature-extraction throughput: images per second per backbone (random weights, CPU default).

Usage::

    python benchmarks/extract.py                       # a few small backbones
    python benchmarks/extract.py timm:resnet50 open_clip:ViT-B-32 --images 128 --device cuda

Generated 224 x 224 RGB images go through each backbone's own preprocessing and network in
batches (default 32) under ``torch.inference_mode``; torch keeps its default thread count.
Reported: images/s for the forward pass alone (preprocessed tensors) and end to end
(PIL image -> preprocessing -> network). The first batch is a warm-up and is not timed.
"""

from __future__ import annotations

import argparse
import sys
import time

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("backbones", nargs="*", default=list(DEFAULT_BACKBONES))
    parser.add_argument("--images", type=int, default=96, help="images per backbone")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
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
