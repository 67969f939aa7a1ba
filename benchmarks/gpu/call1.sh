#!/usr/bin/env bash
# GPU check, call 1 (carry .gpu/kit and .gpu/luc_a; about 320 s): wheels; the CUDA-only tests;
# the training benchmark with window corners drawn per batch (batch 64, batch 16, and batch 64
# compiled); overlapped 8-TTA inference against MONAI (with the network-only bound); the README's
# ten-seed command timed again; with time left, the same inference compiled (41 slices, one
# round): what torch.compile gains on the GPU.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
mkdir -p /tmp/luc/a && cp .gpu/luc_a/*.tif /tmp/luc/a/
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .gpu/kit/wheels/*.whl || exit 3
export PYTHONPATH=/tmp/site:$(pwd)/src MPLBACKEND=Agg PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1
python3 -c "import mitoseg, hydra, torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
el setup
# the tests that need a CUDA device (skipped on the CPU machines): device patches, augmentation,
# the finite-loss check that must not synchronize, every network trained twice in deterministic
# mode to identical weights
timeout 150 python3 -m pytest -q -p no:cacheprovider -rs -k "cuda or gpu" \
  tests/data/test_device_volumes.py tests/training/test_module_finite_check.py \
  tests/data/test_em_augment.py tests/data/test_em_augment_channels.py \
  tests/models/test_deterministic_kernels.py > $OUT/c1_cuda_tests.txt 2>&1
el "CUDA tests rc=$?: $(tail -1 $OUT/c1_cuda_tests.txt)"
bench() {  # name, time limit, options...
  local name=$1 limit=$2; shift 2
  timeout $limit python3 benchmarks/bench_training.py --precision bf16-mixed --channels-last \
    --batch 64 --steps 200 --workers 0 --override dataset.sampling=device --count-syncs "$@" \
    > $OUT/c1_$name.json 2> $OUT/c1_$name.err; el "bench_training $name rc=$?"
  python3 -c "import json; r=json.load(open('$OUT/c1_$name.json'))['results']; print({k: r[k] for k in ('framework_images_per_s','bare_images_per_s','ratio_framework_to_bare')})"
}
bench device 60
bench batch16 60 --batch 16 --steps 400  # lucchi_fast's batch: where the CPU's share per step shows
bench compiled 120 --compile
timeout 90 python3 benchmarks/bench_inference.py --precision bf16-mixed --channels-last \
  > $OUT/c1_inference.json 2> $OUT/c1_inference.err; el "bench_inference rc=$?"
python3 -c "import json; r=json.load(open('$OUT/c1_inference.json')); print(r.get('results', r))" | head -c 1500; echo
S=$(date +%s)
timeout 120 python3 train.py model=attention_unet -m seed=0..9 trainer=gpu logger=csv \
  paths.output_root=/tmp/o_sweep > $OUT/c1_sweep.log 2>&1
el "ten-seed command rc=$? wall $(( $(date +%s) - S )) s, finished runs: $(ls /tmp/o_sweep/multirun/*/*/*/metrics.json 2>/dev/null | wc -l)"
if [ $(( $(date +%s) - T0 )) -lt 260 ]; then  # time left: what torch.compile gains in inference
  timeout 120 python3 benchmarks/bench_inference.py --precision bf16-mixed --channels-last \
    --compile --rounds 1 --depth 41 > $OUT/c1_inference_compiled.json 2> $OUT/c1_inference_compiled.err
  el "bench_inference --compile rc=$?"
  python3 -c "import json; r=json.load(open('$OUT/c1_inference_compiled.json'))['results']; print({k: v.get('seconds', v) if isinstance(v, dict) else v for k, v in r.items()})"
fi
el done
