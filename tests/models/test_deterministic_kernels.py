"""Every network trains with ``trainer.deterministic=true`` on a GPU, and two runs are identical.

With ``torch.use_deterministic_algorithms(True)`` (what Lightning's ``deterministic=True``
sets), an operation that has only a nondeterministic CUDA implementation raises a RuntimeError
on a GPU, and nothing on the CPU. So the CPU tests watch every aten operation of a training
step at the dispatcher and refuse the ones torch documents as raising on CUDA
(``torch.use_deterministic_algorithms``, torch 2.13): the backward of ``F.interpolate``'s linear
modes, for example, which six networks used (``mitoseg.models.resize`` replaces it). The CUDA
test (run by the GPU kit) trains every network twice for a few steps in that mode and compares
the weights bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils._python_dispatch import TorchDispatchMode

from mitoseg.models.table import CONF_MODEL, dims_of, model_names
from mitoseg.training.train import train
from tests.conftest import compose_config
from tests.training.test_fast_recipe import TINY_FAST

# aten operations that raise under torch.use_deterministic_algorithms(True) on CUDA tensors
# (the list in torch.use_deterministic_algorithms' documentation, by aten name)
NO_DETERMINISTIC_CUDA_KERNEL = {
    "upsample_linear1d_backward", "upsample_bilinear2d_backward", "upsample_bicubic2d_backward",
    "upsample_trilinear3d_backward", "_upsample_bilinear2d_aa_backward",
    "_upsample_bicubic2d_aa_backward", "reflection_pad1d_backward", "reflection_pad2d_backward",
    "reflection_pad3d_backward", "grid_sampler_2d_backward", "grid_sampler_3d_backward",
    "avg_pool3d_backward", "_adaptive_avg_pool2d_backward", "_adaptive_avg_pool3d_backward",
    "adaptive_max_pool2d_backward", "fractional_max_pool2d_backward",
    "fractional_max_pool3d_backward", "max_unpool2d", "max_unpool3d", "nll_loss_forward",
    "nll_loss2d_forward", "_ctc_loss_backward", "put_", "put", "histc", "bincount", "median",
    "nanmedian"}
FLOAT_ONLY = {"cumsum", "cumsum_"}  # raise for floating-point CUDA tensors only


class Watch(TorchDispatchMode):
    """Collects the aten operations without a deterministic CUDA kernel that run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.found: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        first = args[0] if args else None
        if name in NO_DETERMINISTIC_CUDA_KERNEL or (
                name in FLOAT_ONLY and isinstance(first, torch.Tensor)
                and first.is_floating_point()):
            self.found.add(name)
        return func(*args, **(kwargs or {}))


TRAIN_SIZE = {2: (2, 1, 64, 64), 3: (2, 1, 16, 16, 16)}


@pytest.mark.parametrize("name", model_names())
def test_no_training_step_needs_an_operation_without_a_deterministic_kernel(name: str) -> None:
    torch.manual_seed(0)
    net = instantiate(OmegaConf.load(CONF_MODEL / f"{name}.yaml")).train()
    x = torch.rand(TRAIN_SIZE[dims_of(name)], generator=torch.Generator().manual_seed(1))
    watch = Watch()
    with watch:
        outputs = net(x)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        sum(out.float().mean() for out in outputs).backward()
    assert not watch.found, (f"{name}: {sorted(watch.found)} raise on a GPU with "
                             "trainer.deterministic=true (no deterministic CUDA kernel)")


def test_the_fast_recipe_run_needs_no_operation_without_a_deterministic_kernel(tmp_path: Path) -> None:
    """The rest of a run (patches cut on the device, the strong augmentation, the BCE + Dice
    loss, validation, the test with TTA and the z-median) adds no such operation."""
    cfg = compose_config("train", [*TINY_FAST, "augmentation=strong", "loss=bce_dice",
                                   "trainer.max_steps=4"], tmp_path)
    watch = Watch()
    with watch:
        train(cfg)
    assert not watch.found, sorted(watch.found)


def test_the_watch_sees_interpolate_backward() -> None:
    x = torch.rand(1, 1, 4, 4, requires_grad=True)
    watch = Watch()
    with watch:
        torch.nn.functional.interpolate(x, size=(8, 8), mode="bilinear").sum().backward()
    assert watch.found == {"upsample_bilinear2d_backward"}


# Run in a fresh process: cuBLAS reads CUBLAS_WORKSPACE_CONFIG when it starts.
TWICE_ON_CUDA = textwrap.dedent("""
    import json, sys, torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from mitoseg.models.table import CONF_MODEL, dims_of, model_names
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    SIZE = {2: (2, 1, 64, 64), 3: (2, 1, 16, 16, 16)}

    def weights_after_steps(name):
        torch.manual_seed(0)
        net = instantiate(OmegaConf.load(CONF_MODEL / f"{name}.yaml")).cuda().train()
        if dims_of(name) == 2:
            net = net.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(1)
        for _ in range(3):
            x = torch.rand(SIZE[dims_of(name)], generator=g).cuda()
            y = (torch.rand(SIZE[dims_of(name)], generator=g) > 0.5).float().cuda()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                outputs = net(x)
            outputs = outputs if isinstance(outputs, list) else [outputs]
            loss = sum(torch.nn.functional.binary_cross_entropy_with_logits(o.float(), y)
                       for o in outputs)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return [p.detach().cpu() for p in net.state_dict().values()]

    result = {}
    for name in model_names():
        try:
            first, second = weights_after_steps(name), weights_after_steps(name)
            result[name] = "identical" if all(torch.equal(a, b) for a, b in zip(first, second)) \\
                else "differ"
        except RuntimeError as error:
            result[name] = f"error: {str(error).splitlines()[0][:200]}"
    print(json.dumps(result))
""")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_every_network_trains_twice_to_identical_weights_on_cuda() -> None:
    env = dict(os.environ, CUBLAS_WORKSPACE_CONFIG=":4096:8")
    done = subprocess.run([sys.executable, "-c", TWICE_ON_CUDA], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) == set(model_names())
    bad = {name: state for name, state in result.items() if state != "identical"}
    assert not bad, bad
