#!/usr/bin/env bash
# GPU check, call 2 (carry .gpu/kit and .gpu/luc_b; right after call 1; about 520 s): real
# Lucchi, holdout split (test 132-164, gap 122-131, training 0-121). experiment=lucchi_fast with
# the ablation's choices (free rotation, cosine by steps) and the yardstick with the same two
# choices, alone (timed), then more seeds of both at once.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
export PYTHONPATH=/tmp/site:$(pwd)/src MPLBACKEND=Agg PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1
# results go straight under $OUT: if the call is cut short (device time spent), what
# finished still comes back
R=$OUT/c2; mkdir -p /tmp/luc/lucchi $R
python3 - <<'PY'
import numpy as np, tifffile
for name in ("training", "training_groundtruth"):
    parts = [tifffile.imread(f"{d}/{name}.tif") for d in ("/tmp/luc/a", ".gpu/luc_b")]
    tifffile.imwrite(f"/tmp/luc/lucchi/{name}.tif", np.concatenate(parts))
PY
el "lucchi assembled"
ROOT="dataset.volumes.root=/tmp/luc/lucchi"
fast() {  # seed, name, time limit
  timeout $3 python3 train.py experiment=lucchi_fast logger=csv $ROOT seed=$1 \
    paths.output_root=/tmp/o_$2 > $R/$2.log 2>&1
  local rc=$?; cp /tmp/o_$2/runs/lucchi_fast/*/metrics.json $R/$2_metrics.json 2>/dev/null
  cp /tmp/o_$2/runs/lucchi_fast/*/protocols.csv $R/$2_protocols.csv 2>/dev/null; return $rc
}
ref() {  # name, time limit, options...
  local name=$1 limit=$2; shift 2
  timeout $limit python3 benchmarks/reference_lucchi.py --override $ROOT "$@" > $R/$name.json 2> $R/$name.err
}
S=$(date +%s); fast 0 fast_s0 150; el "lucchi_fast seed 0 rc=$? whole command $(( $(date +%s) - S )) s"
S=$(date +%s); ref both_s0 120 --seed 0 --rotation free --schedule cosine
el "yardstick free+cosine seed 0 rc=$? $(( $(date +%s) - S )) s"
# CALL2_SECONDS: the seconds this call may take (default 500); give the device budget left
# minus a margin, at least 300 (the two single runs take up to 270 s), e.g.
# CALL2_SECONDS=400 bash .gpu/kit/call2.sh with run's timeout_s=420
LEFT=$(( ${CALL2_SECONDS:-500} - 20 - ($(date +%s) - T0) )); el "concurrent phase, $LEFT s"
if [ $LEFT -ge 60 ]; then  # (timeout 0 would mean no limit at all)
  for s in 1 2 3 4; do fast $s fast_s$s $LEFT & done
  for s in 1 2; do ref both_s$s $LEFT --seed $s --rotation free --schedule cosine & done
  wait; el "concurrent phase done"
else
  el "concurrent phase skipped: too little time left"
fi
python3 benchmarks/gpu/summarize.py $R | tee $OUT/c2_summary.txt
el done
