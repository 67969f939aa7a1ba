#!/usr/bin/env bash
# GPU check, call 1 (carry .gpu/kit and .gpu/luc_a; about 200 s): wheels; the README's ten-seed
# command timed; the parallel launcher against jobs in turn (same numbers); the training
# benchmark with patches cut on the GPU and pinned loader memory.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
mkdir -p /tmp/luc/a && cp .gpu/luc_a/*.tif /tmp/luc/a/
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .gpu/kit/wheels/*.whl || exit 3
export PYTHONPATH=/tmp/site:$(pwd)/src MPLBACKEND=Agg PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1
python3 -c "import mitoseg, hydra, torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
el setup
S=$(date +%s)
timeout 150 python3 train.py model=attention_unet -m seed=0..9 trainer=gpu logger=csv \
  paths.output_root=/tmp/o_sweep > $OUT/c1_sweep.log 2>&1
el "ten-seed command rc=$? wall $(( $(date +%s) - S )) s, finished runs: $(ls /tmp/o_sweep/multirun/*/*/*/metrics.json 2>/dev/null | wc -l)"
# same numbers at once and in turn (deterministic kernels where they exist)
for mode in basic parallel; do
  timeout 60 python3 train.py -m seed=0,1 trainer=gpu trainer.deterministic=warn logger=csv \
    trainer.max_epochs=2 hydra/launcher=$mode paths.output_root=/tmp/o_$mode > $OUT/c1_$mode.log 2>&1
  el "two seeds, launcher $mode rc=$?"
done
python3 - <<'PY' | tee $OUT/c1_summary.txt
import glob, json
def tests(root):
    out = {}
    for path in glob.glob(f"{root}/multirun/*/*/*/metrics.json"):
        m = json.load(open(path)); out[m["seed"]] = m["test"]
    return out
sweep = tests("/tmp/o_sweep")
print("ten seeds:", len(sweep), "AS", sorted(round(v["as"]["mean"], 4) for v in sweep.values()))
basic, parallel = tests("/tmp/o_basic"), tests("/tmp/o_parallel")
print("in turn == at once:", basic == parallel, {s: (basic.get(s, {}).get("as"), parallel.get(s, {}).get("as")) for s in (0, 1)})
PY
timeout 90 python3 benchmarks/bench_training.py --precision bf16-mixed --channels-last --batch 64 \
  --steps 200 --workers 0 --override dataset.sampling=device --profile \
  > $OUT/c1_bench_device.json 2> $OUT/c1_bench_device.err; el "bench_training device rc=$?"
python3 -c "import json; r=json.load(open('$OUT/c1_bench_device.json'))['results']; print({k: r[k] for k in ('framework_images_per_s','bare_images_per_s','ratio_framework_to_bare')})"
el done
