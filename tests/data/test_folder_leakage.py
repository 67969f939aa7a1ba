"""The folder command: which files of a folder share a region."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

from mitoseg.data.folder_leakage import main


def _write_tiles(folder: Path, kind: str) -> None:
    """Two 'images' cut into two 64 x 64 tiles each (16-px shared strips), one tile flipped."""
    folder.mkdir()
    for image in range(2):
        rng = np.random.default_rng(image)
        field = ndimage.gaussian_filter(rng.normal(size=(64, 112)), 2)
        scene = (field > 0.1).astype(np.uint8) * 255 if kind == "mask" else field.astype(np.float32)
        tifffile.imwrite(folder / f"{image}a.tif", scene[:, :64])
        tifffile.imwrite(folder / f"{image}b.tif", np.fliplr(scene[:, 48:]))


def test_folder_command_lists_the_clusters(tmp_path, capsys):
    for kind in ("mask", "image"):
        _write_tiles(tmp_path / kind, kind)
        assert main([str(tmp_path / kind), "--kind", kind, "--polarity", "normal",
                     "--min-area", "256", "--pairs"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["clusters_of_several_files"] == [["0a.tif", "0b.tif"], ["1a.tif", "1b.tif"]]
        assert {p["view"] for p in result["pairs_found"]} <= {4, 5, 6, 7}  # a flip
        assert all(sorted(p["size"]) == [16, 64] for p in result["pairs_found"])


def test_folder_command_names_a_bad_folder(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "not found" in capsys.readouterr().err
