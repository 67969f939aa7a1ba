#!/usr/bin/env bash
# Device call 2 (carry .gpu/kit and .gpu/luc_b), right after call 1: real Lucchi, holdout split
# (the last 33 slices tested, 10 slices of gap, 122 trained). experiment=lucchi_fast and the bare
# yardstick alone (timed), then at once: two more seeds of each and the one-factor ablation.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
export PYTHONPATH=/tmp/site:$(pwd)/src MPLBACKEND=Agg PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1
R=/tmp/res; mkdir -p /tmp/luc/lucchi $R
python3 - <<'PY'
import numpy as np, tifffile
for name in ("training", "training_groundtruth"):
    parts = [tifffile.imread(f"{d}/{name}.tif") for d in ("/tmp/luc/a", ".gpu/luc_b")]
    tifffile.imwrite(f"/tmp/luc/lucchi/{name}.tif", np.concatenate(parts))
PY
el "lucchi assembled"
ROOT="dataset.volumes.root=/tmp/luc/lucchi"
fast() {  # seed, log name
  timeout $3 python3 train.py experiment=lucchi_fast logger=csv $ROOT seed=$1 \
    paths.output_root=/tmp/o_fast_$1 > $R/$2.log 2>&1
  local rc=$?; cp /tmp/o_fast_$1/runs/lucchi_fast/*/metrics.json $R/$2_metrics.json 2>/dev/null
  cp /tmp/o_fast_$1/runs/lucchi_fast/*/protocols.csv $R/$2_protocols.csv 2>/dev/null; return $rc
}
ref() {  # name, timeout, options...
  local name=$1 limit=$2; shift 2
  timeout $limit python3 benchmarks/reference_lucchi.py --override $ROOT "$@" \
    > $R/$name.json 2> $R/$name.err
}
S=$(date +%s); fast 0 fast_s0 150; el "lucchi_fast seed 0 rc=$? whole command $(( $(date +%s) - S )) s"
S=$(date +%s); ref ref_s0 120 --seed 0; el "reference seed 0 rc=$? $(( $(date +%s) - S )) s"
LEFT=$(( 520 - ($(date +%s) - T0) )); el "concurrent phase, $LEFT s"
ref ref_s1 $LEFT --seed 1 & ref ref_s2 $LEFT --seed 2 &
ref abl_scale $LEFT --scaling scale & ref abl_free $LEFT --rotation free &
ref abl_val $LEFT --val-fraction 0.1 & ref abl_best $LEFT --val-fraction 0.1 --keep best &
ref abl_cosine $LEFT --schedule cosine & ref abl_centred $LEFT --placement centred &
fast 1 fast_s1 $LEFT & fast 2 fast_s2 $LEFT &
wait; el "concurrent phase done"
nvidia-smi --query-gpu=memory.used --format=csv,noheader
python3 - <<'PY' | tee $OUT/c2_summary.txt
import csv, glob, json, os
R = "/tmp/res"
for path in sorted(glob.glob(f"{R}/*.json")):
    name = os.path.basename(path)[:-5]
    try:
        d = json.load(open(path))
    except Exception as e:
        print(name, "unreadable", e); continue
    if "results" in d:
        r = d["results"]
        print(name, {k: r.get(k) for k in ("iou_fg", "train_seconds", "images_per_second", "best_step")},
              {k: v["iou_fg"] for k, v in r["protocols"].items()})
    elif "test" in d:
        print(name, "iou_fg", round(d["test"]["iou_fg"]["mean"], 5), "fit_s", d.get("fit_seconds"))
for path in sorted(glob.glob(f"{R}/*_protocols.csv")):
    rows = list(csv.DictReader(open(path)))
    print(os.path.basename(path), [(r["zfilter"], round(float(r["iou_fg"]), 5), r["inference_seconds"]) for r in rows])
PY
tar czf $OUT/c2_results.tgz -C $R .
el done
