"""Paper 000's published figures are a data file shipped in the package, with the values the
report's Python dict held before."""

from __future__ import annotations

from importlib import resources

from mitoseg.study.report import PUBLISHED, published_figures

# The dict study/report.py held before the data file (its "source" named a machine path).
OLD_PUBLISHED = {
    "n_per_condition": 30,
    "abd_unit": "px (assumed: the paper's ABD plots give no unit; the guide's reference run matched in px)",
    "robustness_slope": {
        "snr": {"as": {"fcn": 0.0112, "unet": 0.0236, "aam": 0.0449},
                "abd_px": {"fcn": 0.0466, "unet": 0.1023, "aam": 0.2162}},
        "sib": {"as": {"fcn": 0.0143, "unet": 0.0418, "aam": 0.0559},
                "abd_px": {"fcn": 0.0801, "unet": 0.2135, "aam": 0.8907}},
        "svb": {"as": {"fcn": 0.0166, "unet": 0.0200, "aam": 0.0184},
                "abd_px": {"fcn": 0.0394, "unet": 0.0958, "aam": 0.1226}},
    },
    "sensitivity": {
        "das_dilation_2_3": {"fcn": 0.3987, "unet": 0.5581, "aam": 0.3035},
        "das_erosion_1": {"fcn": 0.17, "unet": 0.21, "aam": 0.13},
        "das_dilation_1": {"fcn": 0.17, "unet": 0.33, "aam": 0.13},
        "dds_all_levels": {"fcn": 0.7672, "unet": 0.8788, "aam": 0.5271},
    },
    "cross_change_pct": [
        {"family": "snr", "train_level": 8, "test_levels": [4, 1], "metric": "as",
         "values": {"fcn": -89.6, "unet": -91.3}},
        {"family": "snr", "train_level": 8, "test_levels": [4, 1], "metric": "abd_px",
         "values": {"fcn": 51.2, "unet": 339.4}},
        {"family": "snr", "train_level": 4, "test_levels": [1], "metric": "as",
         "values": {"fcn": -36.4, "unet": -13.6}},
        {"family": "snr", "train_level": 4, "test_levels": [1], "metric": "abd_px",
         "values": {"fcn": 38.1, "unet": 47.3}},
        {"family": "snr", "train_level": 4, "test_levels": [8], "metric": "as",
         "values": {"unet": 6.0}, "note": "paper 000 Results text (FCN: 'remained unchanged')"},
        {"family": "snr", "train_level": 4, "test_levels": [8], "metric": "abd_px",
         "values": {"fcn": -10.4, "unet": -36.2}, "note": "paper 000 Results text"},
    ],
}


def test_the_data_file_holds_the_old_values_exactly() -> None:
    loaded = published_figures()
    assert {k: v for k, v in loaded.items() if k != "source"} == OLD_PUBLISHED
    assert loaded == PUBLISHED and loaded is not published_figures()  # a fresh copy each call
    assert "fidelity guide" in loaded["source"] and "../" not in loaded["source"]
    assert "/work" not in loaded["source"] and "\n" not in loaded["source"]
    assert all(isinstance(e["train_level"], int) and isinstance(v, float)
               for e in loaded["cross_change_pct"] for v in e["values"].values())


def test_the_file_ships_inside_the_package() -> None:
    assert resources.files("mitoseg.study").joinpath("published_paper000.yaml").is_file()
