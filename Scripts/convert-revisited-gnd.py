#!/usr/bin/env python3
"""Converts an official revisited Oxford/Paris ground-truth file (gnd_roxford5k.pkl,
gnd_rparis6k.pkl from the revisitop toolkit) into the JSON form `pharos eval` reads:

  python3 Scripts/convert-revisited-gnd.py gnd_roxford5k.pkl roxford5k.json [--suffix .jpg]

The pickle holds `imlist` (database image names), `qimlist` (query names) and `gnd`, one dict per
query with index lists `easy`, `hard`, `junk` into `imlist` and `bbx`, the query's crop box
(kept as "bbx": `pharos extract --queries-of` crops the queries to it, as the protocol does).
Keys are the image names with `--suffix` appended (default ".jpg"), so that they equal the keys
`pharos extract --images jpg/` gives the photos (paths relative to the folder); `--suffix ""`
keeps the names as the lists give them.
"""
import json
import pickle
import sys

args = sys.argv[1:]
suffix = ".jpg"
if "--suffix" in args:
    at = args.index("--suffix")
    if at + 1 >= len(args):
        sys.exit("--suffix needs a value")
    suffix = args[at + 1]
    del args[at:at + 2]
if len(args) != 2:
    sys.exit(__doc__)
sys.argv[1:] = args
with open(sys.argv[1], "rb") as f:
    cfg = pickle.load(f)
for field in ("imlist", "qimlist", "gnd"):
    if field not in cfg:
        sys.exit(f"{sys.argv[1]}: no '{field}': not a revisitop ground-truth file")
imlist = [name + suffix for name in cfg["imlist"]]
queries = []
for name, g in zip(cfg["qimlist"], cfg["gnd"]):
    entry = {"key": name + suffix}
    for setup in ("easy", "hard", "junk"):
        entry[setup] = [imlist[i] for i in g.get(setup, [])]
    if "bbx" in g and g["bbx"] is not None:
        entry["bbx"] = [float(v) for v in g["bbx"]]
    queries.append(entry)
with open(sys.argv[2], "w") as f:
    json.dump({"protocol": "revisited", "queries": queries}, f, indent=1)
print(f"wrote {len(queries)} queries over {len(imlist)} images to {sys.argv[2]}")
