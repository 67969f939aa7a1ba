"""EPFL Hippocampus (Lucchi et al. 2011): 5 nm isotropic FIB-SEM, 165 x 768 x 1024 uint8 per
volume, labels {0, 255}; one folder with four multi-page TIFFs. Reader:
``mitoseg.data.em_sources.lucchi_volumes`` (``conf/dataset/lucchi.yaml``)."""

KEY = "lucchi"
PAGE = "https://www.epfl.ch/labs/cvlab/data/data-em/"
DESCRIPTION = "EPFL Hippocampus (Lucchi et al. 2011), four multi-page TIFFs"
VOXEL_SIZE_NM = (5.0, 5.0, 5.0)  # (z, y, x)
# {split: (image file, label file)} in the data set's folder
LAYOUT: dict[str, tuple[str, str]] = {
    "train": ("training.tif", "training_groundtruth.tif"),
    "test": ("testing.tif", "testing_groundtruth.tif"),
}
_BASE = ("https://documents.epfl.ch/groups/c/cv/cvlab-unit/www/data/"
         "%20ElectronMicroscopy_Hippocampus/")  # the %20 is part of the real address
# the official files have no published checksum (mitoseg.data.download asks for one)
FILES = [{"url": _BASE + name, "sha256": None}
         for pair in LAYOUT.values() for name in pair]
