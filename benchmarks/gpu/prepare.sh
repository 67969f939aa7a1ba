#!/usr/bin/env bash
# Prepare this project's GPU check (issue 11) from the project root, before the device calls:
#   bash benchmarks/gpu/prepare.sh
# Builds on ../shared/gpu/prepare.sh (.gpu/kit with the hydra/omegaconf/MONAI wheels, the two
# Lucchi halves .gpu/luc_a and .gpu/luc_b), then puts this folder's call scripts into the kit,
# adds the hydra-joblib-launcher wheel (hydra/launcher=parallel, selected by trainer=gpu) and
# pytest's wheels (the CUDA-only tests), and
# makes .gpu/wandb: wandb and the packages it needs that the GPU machine lacks (call 3).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bash ../shared/gpu/prepare.sh
chmod -R u+w .gpu/kit
cp "$here"/call1.sh "$here"/call2.sh "$here"/call3.sh .gpu/kit/
wheel() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$1" "${@:2}"; }
wheel .gpu/kit/wheels hydra-joblib-launcher==1.2.0 joblib==$(python3 -c "import joblib; print(joblib.__version__)")
# pytest for the tests that need a CUDA device (call 1 runs them), at this machine's versions
version() { python3 -c "import importlib.metadata as m; print(m.version('$1'))"; }
wheel .gpu/kit/wheels pytest==$(version pytest) pluggy==$(version pluggy) \
  iniconfig==$(version iniconfig) pygments==$(version pygments)
mkdir -p .gpu/wandb
# the versions this project's CPU machines run with wandb 0.31
wheel .gpu/wandb wandb==0.31.0 pydantic==2.13.4 pydantic-core==2.46.4 \
  annotated-types==0.7.0 typing-inspection==0.4.2 platformdirs==4.14.9 \
  cwevals==0.0.1b1 distro==1.9.0 sniffio==1.3.1 \
  opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-semantic-conventions==0.66b2 \
  opentelemetry-exporter-otlp-proto-http==1.45.2 opentelemetry-exporter-http-transport==0.66b2 opentelemetry-exporter-otlp-common==0.66b2 \
  opentelemetry-exporter-otlp-proto-common==1.45.2 opentelemetry-proto==1.45.2 googleapis-common-protos==1.76.0
du -sh .gpu/*
