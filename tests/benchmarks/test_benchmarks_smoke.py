"""Every benchmark script runs with --quick and prints one JSON object with its figures.

Smoke tests only: no timing is asserted (the machine may be slow and busy); exactness checks
that the scripts compute are asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

COMMON = {"settings", "environment", "load_average_start", "load_average_end", "wall_seconds"}


def run_quick(name: str, *options: str) -> dict:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{name}.py"), "--quick",
                           *options],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)  # stdout holds the JSON object and nothing else
    assert COMMON <= report.keys()
    assert {"device", "torch", "hardware"} <= report["environment"].keys()
    assert report["settings"]["quick"] is True
    return report


def test_training_benchmark() -> None:
    report = run_quick("bench_training", "--count-syncs")
    assert report["syncs"] == "a GPU only measure (CUDA's sync debug mode)"
    results = report["results"]
    rounds = report["settings"]["rounds"]
    assert len(results["framework"]) == rounds and len(results["bare"]) == rounds + 1
    for run in results["framework"] + results["bare"]:
        assert {"images_per_s", "ms_per_step", "steps", "seconds"} <= run.keys()
        assert run["steps"] == report["settings"]["measured_steps"]
    assert len(results["ratio_per_round"]) == rounds
    assert results["ratio_framework_to_bare"] > 0
    assert any(o.startswith("model=") for o in report["overrides"])


def test_inference_benchmark() -> None:
    report = run_quick("bench_inference")
    results, rounds = report["results"], report["settings"]["rounds"]
    ours = results["ours"]
    assert {"seconds", "per_slice_s", "extrapolated_165_slices_s", "memory"} <= ours.keys()
    on_cpu = report["environment"]["device"] == "cpu"
    assert report["settings"]["batch_tta"] is not on_cpu  # reconstruct's default
    assert results["network_only"]["seconds"] > 0  # the bound: the network on the same calls
    for name, result in results.items():
        assert len(result["rounds_s"]) == rounds
        if name != "network_only":
            assert result["network_share"] > 0
        if name not in ("ours", "network_only"):  # MONAI, where installed
            assert result["largest_possible_speedup"] > 0
            assert len(result["ours_speedup_per_round"]) == rounds
            if on_cpu:  # fp32, same images per call; a GPU may pick bf16 or TF32 kernels
                assert result["max_abs_diff_vs_ours"] <= 1e-5
    assert report["exactness"]["ours_fp32_vs_reference_max_abs"] <= 1e-5
    assert report["reference_loop"]["seconds"] > 0
    assert "available" in report["monai"]
    if not report["monai"]["available"]:
        assert "monai" in report["monai"]["install"]


def test_metrics_benchmark() -> None:
    report = run_quick("bench_metrics")
    results = report["results"]
    assert {"ours", "brute_force_cdist", "speedup_vs_brute_force"} <= results.keys()
    assert report["exactness"]["identical"] is True
    assert set(report["mean_values"]) == {"as", "abd", "das", "dds"}


def test_generator_benchmark() -> None:
    report = run_quick("bench_generator")
    generators = report["generators"]
    assert {"numpy_workers_1", "numpy_workers_2", "torch_cpu"} <= generators.keys()
    assert report["training_consumption"]["framework_images_per_s"] > 0
    assert set(report["outpaces_training"]) == set(generators)


def test_call_size_benchmark() -> None:
    report = run_quick("bench_call_size")
    sizes = [str(size) for size in report["settings"]["sizes"]]
    assert list(report["images_per_s"]) == sizes
    for entry in report["images_per_s"].values():
        assert entry["median"] > 0 and len(entry["rounds"]) == report["settings"]["rounds"]
    assert report["relative_to_fastest"][str(report["fastest_size"])] == 1.0
    assert max(report["relative_to_fastest"].values()) == 1.0


@pytest.mark.parametrize("name", ["bench_training", "bench_inference", "bench_metrics",
                                  "bench_generator", "bench_call_size",
                                  "bench_patch_sampling", "bench_predictor_speed",
                                  "bench_held_volumes"])
def test_help_describes_the_benchmark(name: str) -> None:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{name}.py"), "--help"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0 and "--quick" in done.stdout


@pytest.mark.slow
def test_predictor_speed_benchmark() -> None:
    """Compiles three times (about 45 s): slow."""
    report = run_quick("bench_predictor_speed")
    results = report["results"]
    assert len(results) == 8 and results["full_image"]["speedup_vs_plain"] == 1.0
    for result in results.values():
        assert result["s_per_slice"] > 0 and len(result["rounds_s"]) == 1
        assert result["max_abs_diff_vs_plain"] <= 1e-5  # the speed options keep the output


@pytest.mark.slow
def test_chunked_benchmark() -> None:
    report = run_quick("bench_chunked")
    for part in ("chunked_vs_in_memory", "dask_2x1_vs_process_1x2"):
        assert report[part]["throughput_ratio"] > 0, report[part]
    peaks = report["peak_memory_vs_volume_size"]
    assert all(peaks[f"{k}x"]["peak_rss_mib"] > 0 for k in (1, 4, 16))
    assert report["larger_than_memory"]["completed"] is True, report["larger_than_memory"]


@pytest.mark.slow
def test_patch_sampling_benchmark() -> None:
    report = run_quick("bench_patch_sampling")
    for weight in (1, 5):
        runs = report[f"zarr_foreground_weight_{weight}"]
        assert all(runs[f"{k}x"]["peak_rss_mib"] > 0 for k in (1, 4, 16)), runs
        assert all(runs[f"{k}x"]["patches_per_s_read_and_augment"] > 0 for k in (1, 4, 16))
    small = report["zarr_16x_foreground_weight_5_small_coords_limit"]
    assert small["foreground_path"] == "slice by slice", small
    assert report["hdf5_4x"]["foreground_weight_1"]["patches_per_s_read"] > 0
    assert report["in_memory_1x"]["foreground_weight_1"]["peak_rss_mib"] > 0
    assert report["zarr_16x_under_address_space_limit"]["completed"] is True


def test_volume_setup_benchmark() -> None:
    report = run_quick("bench_volume_setup")
    results = report["results"]
    assert set(results) == {"slices", "cubes"}
    for result in results.values():
        assert min(result[f"{what}_s"] for what in ("read_once", "setup", "setup_zscore",
                                                    "setup_foreground")) > 0
        assert set(result["peak_rss_above_start_mib"]) == {"setup", "setup_zscore",
                                                           "setup_foreground"}
        assert len(result["rounds_s"]["setup"]) == report["settings"]["rounds"] == 1


def test_held_volumes_benchmark() -> None:
    report = run_quick("bench_held_volumes")
    for layout in ("slices", "cubes"):
        runs = report[layout]
        for held in ("lazy", "held"):
            assert runs[held]["patches_per_s_read"] > 0, runs[held]
            assert len(runs[held]["rounds_patches_per_s"]) == 2
        assert runs["speedup_held_to_lazy"] > 0
