#!/usr/bin/env bash
# Device call 1 (carry .gpu/kit and .gpu/luc_a): wheels, first half of Lucchi into /tmp, then
# smoke runs of the yardstick and of experiment=lucchi_fast on that half, and the training
# benchmark with patches cut on the GPU (plain and compiled).
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
mkdir -p /tmp/luc/a && cp .gpu/luc_a/*.tif /tmp/luc/a/
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .gpu/kit/wheels/*.whl || exit 3
export PYTHONPATH=/tmp/site:$(pwd)/src MPLBACKEND=Agg PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1
python3 -c "import mitoseg, hydra, torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
python3 - <<'PY'
import os, tifffile
os.makedirs("/tmp/luc/half", exist_ok=True)
for name in ("training", "training_groundtruth"):
    tifffile.imwrite(f"/tmp/luc/half/{name}.tif", tifffile.imread(f"/tmp/luc/a/{name}.tif"))
PY
el setup
HALF="dataset.volumes.root=/tmp/luc/half dataset.volumes.holdout_slices=20"
timeout 60 python3 benchmarks/reference_lucchi.py --steps 400 --override $HALF \
  > $OUT/c1_ref.json 2> $OUT/c1_ref.err; el "reference (400 steps, half volume) rc=$?"
timeout 80 python3 train.py experiment=lucchi_fast logger=csv $HALF trainer.max_steps=400 \
  paths.output_root=/tmp/o1 > $OUT/c1_fast.log 2>&1; el "lucchi_fast (400 steps, half volume) rc=$?"
grep -E "fit|IoU|full_image|Error|error" $OUT/c1_fast.log | tail -n 8
timeout 70 python3 benchmarks/bench_training.py --precision bf16-mixed --channels-last --batch 64 \
  --steps 200 --workers 0 --override dataset.sampling=device \
  > $OUT/c1_bench_device.json 2> $OUT/c1_bench_device.err; el "bench_training device rc=$?"
timeout 110 python3 benchmarks/bench_training.py --precision bf16-mixed --channels-last --compile \
  --batch 64 --steps 200 --rounds 1 --workers 0 --override dataset.sampling=device \
  > $OUT/c1_bench_compile.json 2> $OUT/c1_bench_compile.err; el "bench_training compile rc=$?"
python3 - <<'PY'
import json, os
out = os.environ["OUT"]
for name in ("c1_ref", "c1_bench_device", "c1_bench_compile"):
    try:
        r = json.load(open(f"{out}/{name}.json"))["results"]
    except Exception as e:
        print(name, "no result", e); continue
    keep = {k: r[k] for k in ("iou_fg", "train_seconds", "images_per_second", "framework_images_per_s",
                              "bare_images_per_s", "ratio_framework_to_bare", "ratio_per_round") if k in r}
    print(name, keep)
PY
el done
