#!/usr/bin/env python3
"""Builds the real multi-view photo set for Benchmarks/multiview.sh: photos of the same object
or scene taken from different camera positions (never crops of one photo), from what Debian
packages ship, with a labelled ground truth for `pharos eval`.

  instances  opencv-doc's and scikit-image's photos that show one scene twice (graf1/graf3,
             leuvenA/B, aero1/3, box/box_in_scene, stereo and optical-flow pairs, ...), and four
             of visp-images-data's camera sequences of real scenes (a cube on a poster, a cube
             on a desk, a target in a street, a model castle): VIEWS frames spread evenly over
             each sequence, so consecutive views differ by a real camera motion
  distractors every other opencv-doc and scikit-image photo, and one photo of each KDE Plasma
             wallpaper (whole, full size: linked, not copied)

Only the instances are queries; the query itself is junk (the labelled protocol).
"""
import argparse
import json
import os
import shutil
import struct
import zlib

import numpy as np

GROUPS = {  # as Sources/PharosDatasets/LabelledPhotoSet.swift groups them
    "graf1.png": "graf", "graf3.png": "graf", "box.png": "box", "box_in_scene.png": "box",
    "aloeL.jpg": "aloe", "aloeR.jpg": "aloe", "basketball1.png": "basketball", "basketball2.png": "basketball",
    "Blender_Suzanne1.jpg": "suzanne", "Blender_Suzanne2.jpg": "suzanne", "ela_original.jpg": "ela",
    "ela_modified.jpg": "ela", "leuvenA.jpg": "leuven", "leuvenB.jpg": "leuven", "rubberwhale1.png": "rubberwhale",
    "rubberwhale2.png": "rubberwhale", "aero1.jpg": "aero", "aero3.jpg": "aero", "left.jpg": "stereo", "right.jpg": "stereo",
    "motorcycle_left.png": "motorcycle", "motorcycle_right.png": "motorcycle",
}
# ela_modified is an edit of ela_original and Suzanne a rendering: not two camera positions.
NOT_MULTIVIEW = {"ela", "suzanne"}
SEQUENCES = {"cube": "cube", "desk-cube": "mbt/cube", "target": "mire-2", "castle": "mbt-depth/castel/castel"}


def pgm(path):
    data = open(path, "rb").read()
    magic, size, _, pixels = data.split(b"\n", 3)
    assert magic == b"P5", f"{path}: not a binary PGM"
    width, height = map(int, size.split())
    return np.frombuffer(pixels[:width * height], np.uint8).reshape(height, width)


def write_png(gray, path):
    height, width = gray.shape
    raw = b"".join(b"\x00" + gray[row].tobytes() for row in range(height))
    chunk = lambda tag, body: struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--views", type=int, default=6)
    p.add_argument("--opencv", default="/usr/share/doc/opencv-doc/examples/data")
    p.add_argument("--skimage", default=".deps/skimage-data")
    p.add_argument("--visp", default="/usr/share/visp-images-data/ViSP-images")
    p.add_argument("--wallpapers", default="/usr/share/wallpapers")
    a = p.parse_args()
    images = f"{a.out}/images"
    shutil.rmtree(images, ignore_errors=True)
    labels = {}
    photo = lambda n: n.lower().endswith((".jpg", ".jpeg", ".png"))
    for folder, prefix in ((a.opencv, "opencv"), (a.skimage, "skimage")):
        os.makedirs(f"{images}/{prefix}", exist_ok=True)
        for name in sorted(os.listdir(folder)):
            calibration = name.startswith(("left", "right")) and len(name) == 10
            if not photo(name) or calibration:
                continue
            shutil.copy(f"{folder}/{name}", f"{images}/{prefix}/{name}")
            group = GROUPS.get(name)
            key = f"{prefix}/{name}"
            labels[key] = f"{prefix}-{group}" if group and group not in NOT_MULTIVIEW else key
    for name, folder in SEQUENCES.items():
        frames = sorted(f for f in os.listdir(f"{a.visp}/{folder}") if f.endswith(".pgm"))
        os.makedirs(f"{images}/visp/{name}", exist_ok=True)
        for view in range(a.views):
            frame = frames[round(view * (len(frames) - 1) / (a.views - 1))]
            key = f"visp/{name}/{frame[:-4]}.png"
            write_png(pgm(f"{a.visp}/{folder}/{frame}"), f"{images}/{key}")
            labels[key] = f"visp-{name}"
    os.makedirs(f"{images}/wallpapers", exist_ok=True)
    for name in sorted(os.listdir(a.wallpapers)):
        folder = f"{a.wallpapers}/{name}/contents/images"
        if not os.path.isdir(folder):
            continue
        largest = max((os.path.realpath(f"{folder}/{f}") for f in os.listdir(folder) if photo(f)), key=os.path.getsize, default=None)
        if largest:
            key = f"wallpapers/{name}{os.path.splitext(largest)[1]}"
            os.symlink(largest, f"{images}/{key}")
            labels[key] = key
    counts = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    queries = sorted(k for k, label in labels.items() if counts[label] > 1)
    with open(f"{a.out}/labels.json", "w") as f:
        json.dump({"protocol": "labelled", "labels": labels, "queries": queries}, f, indent=1, sort_keys=True)
    print(f"wrote {len(labels)} photos ({sum(c > 1 for c in counts.values())} instances with several views, "
          f"{len(queries)} queries) to {images} and {a.out}/labels.json")


if __name__ == "__main__":
    main()
