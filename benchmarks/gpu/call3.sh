#!/usr/bin/env bash
# GPU check, call 3 (carry .gpu/kit and .gpu/wandb; about 100 s): a W&B offline run on the GPU,
# brought back as a tarball to sync from a machine with an account: wandb sync <run folder>/wandb/offline-run-*
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .gpu/kit/wheels/*.whl .gpu/wandb/*.whl || exit 3
export PYTHONPATH=/tmp/site:$(pwd)/src MPLBACKEND=Agg PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1 WANDB_MODE=offline
python3 -c "import wandb; print('wandb', wandb.__version__)"
timeout 90 python3 train.py trainer=gpu trainer.max_epochs=2 logger=wandb paths.output_root=/tmp/o_wandb \
  > $OUT/c3_wandb.log 2>&1; el "W&B offline run on the GPU rc=$?"
run=$(dirname $(ls /tmp/o_wandb/runs/*/*/metrics.json | head -1))
ls $run/wandb; tar czf $OUT/c3_wandb_run.tgz -C $(dirname $run) $(basename $run)
# the same command twice with deterministic kernels (trainer.deterministic=true): identical numbers
for r in 1 2; do
  timeout 60 python3 train.py trainer=gpu trainer.deterministic=true model=attention_unet \
    trainer.max_epochs=1 logger=csv paths.output_root=/tmp/o_det$r > $OUT/c3_det$r.log 2>&1
  el "deterministic run $r rc=$?"
done
python3 - <<'PY' | tee $OUT/c3_deterministic.txt
import glob, json
runs = [json.load(open(glob.glob(f"/tmp/o_det{r}/runs/*/*/metrics.json")[0])) for r in (1, 2)]
tests = [{k: m[k] for k in ("test", "final")} for m in runs]  # test scores, last epoch's values
print("test and final metrics", tests[0])
print("identical in both runs:", tests[0] == tests[1] and bool(tests[0]))
PY
el done
