#!/usr/bin/env python3
"""Converts an official revisited Oxford/Paris ground-truth file (gnd_roxford5k.pkl,
gnd_rparis6k.pkl from the revisitop toolkit) into the JSON form `pharos eval` reads:

  python3 Scripts/convert-revisited-gnd.py gnd_roxford5k.pkl roxford5k.json

The pickle holds `imlist` (database image names), `qimlist` (query names) and `gnd`, one dict per
query with index lists `easy`, `hard`, `junk` into `imlist` (and `bbx`, the query's crop box,
which is kept as "bbx" for reference). Keys are the image names without extension, as in the lists.
"""
import json
import pickle
import sys

if len(sys.argv) != 3:
    sys.exit(__doc__)
with open(sys.argv[1], "rb") as f:
    cfg = pickle.load(f)
for field in ("imlist", "qimlist", "gnd"):
    if field not in cfg:
        sys.exit(f"{sys.argv[1]}: no '{field}': not a revisitop ground-truth file")
imlist = cfg["imlist"]
queries = []
for name, g in zip(cfg["qimlist"], cfg["gnd"]):
    entry = {"key": name}
    for setup in ("easy", "hard", "junk"):
        entry[setup] = [imlist[i] for i in g.get(setup, [])]
    if "bbx" in g and g["bbx"] is not None:
        entry["bbx"] = [float(v) for v in g["bbx"]]
    queries.append(entry)
with open(sys.argv[2], "w") as f:
    json.dump({"protocol": "revisited", "queries": queries}, f, indent=1)
print(f"wrote {len(queries)} queries over {len(imlist)} images to {sys.argv[2]}")
