"""The model table against the papers' parameter counts."""

from __future__ import annotations

import pytest

from mitoseg.models.table import STATED_PARAMETERS, main, model_names, model_row

PROPOSED_2D = ["unet2d_paper002", "attention_unet", "residual_unet", "se_unet"]
PAIRS_3D = {"unet3d_paper002": "unet2d_paper002", "attention_unet3d": "attention_unet",
            "se_unet3d": "se_unet", "residual_unet3d": "residual_unet"}


@pytest.fixture(scope="module")
def rows() -> dict:
    return {name: model_row(name) for name in model_names()}


@pytest.mark.parametrize("name", sorted(STATED_PARAMETERS))
def test_stated_parameter_counts_within_5_percent(rows: dict, name: str) -> None:
    stated, _ = STATED_PARAMETERS[name]
    assert rows[name].parameters == pytest.approx(stated, rel=0.05)


def test_fcn8_and_oztel_as_paper_002_states(rows: dict) -> None:
    assert rows["fcn8"].parameters == pytest.approx(50.38e6, rel=0.001)
    assert rows["oztel_cnn"].parameters == pytest.approx(0.14e6, rel=0.05)


@pytest.mark.parametrize("name", PROPOSED_2D)
def test_proposed_2d_models_under_2_million(rows: dict, name: str) -> None:
    # "less than 2M in our proposed 2D models"; the residual U-Net's 1x1 shortcut projections
    # (as in the authors' code) put it at 2.03 M, inside the 5 % tolerance of the issue.
    assert rows[name].parameters < 2e6 * 1.05


@pytest.mark.parametrize("name_3d", ["unet3d_paper002", "attention_unet3d", "se_unet3d"])
def test_proposed_3d_models_have_far_fewer_parameters(rows: dict, name_3d: str) -> None:
    # Paper 002: "three times fewer training parameters than our 2D approaches". With the 3D
    # filters it states (28/36/48/64) the ratio is 0.41, not 1/3: the paper's claim and its
    # filter counts disagree, and the filter counts win here (README, model zoo).
    ratio = rows[name_3d].parameters / rows[PAIRS_3D[name_3d]].parameters
    assert 0.38 < ratio < 0.42


def test_residual_3d_is_the_exception_the_paper_glosses_over(rows: dict) -> None:
    # one level deeper (28/36/48/64/80) than the 3D U-Net: 0.74 of the 2D residual U-Net
    ratio = rows["residual_unet3d"].parameters / rows["residual_unet"].parameters
    assert 0.70 < ratio < 0.78


def test_flops_grow_with_the_network(rows: dict) -> None:
    assert rows["fcn8"].gflops > rows["unet2d_paper002"].gflops > rows["oztel_cnn"].gflops > 0
    assert rows["unet3d_cicek"].gflops > rows["unet3d_paper002"].gflops > 0


def test_table_command_prints_every_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["unet2d_paper002", "fcn8"]) == 0
    out = capsys.readouterr().out
    assert "| unet2d_paper002 | UNetPaper002 | 2D | 1,940,817 |" in out and "50.38 M" in out
    assert main(["no_such_model"]) == 2
