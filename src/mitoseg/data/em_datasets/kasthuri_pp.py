"""Kasthuri++ (Casser et al. 2020): serial-section EM, anisotropic 30 x 3 x 3 nm (z, y, x), as
folders of PNG slices (``Kasthuri++/Train_In, Train_Out, Test_In, Test_Out``); paper 002: train
85 x 1463 x 1613, test 75 x 1334 x 1553 voxels. Reader: ``mitoseg.data.em_sources.casser_volumes``
(``conf/dataset/kasthuri_pp.yaml``)."""

KEY = "kasthuri++"
FOLDER = "Kasthuri++"  # the zip's top folder
PAGE = "https://sites.google.com/view/connectomics/"
DESCRIPTION = "Kasthuri++ (Casser et al. 2020), ssEM 30x3x3 nm; zip of PNG slices"
VOXEL_SIZE_NM = (30.0, 3.0, 3.0)  # (z, y, x): 30 nm sections, 3 nm pixels (paper 002)
# the area outside the imaged tissue is labelled 2: ignored by the loss and every metric
# (casser_volumes' ignore_unlabelled, the default; torch-em maps it to -1, "ignore"), else
# read as background
IGNORE_VALUES: tuple[int, ...] = (2,)
# SHA-256 from torch-em (kasthuri.py)
FILES = [{"url": "http://www.casser.io/files/kasthuri_pp.zip",
          "sha256": "bbb78fd205ec9b57feb8f93ebbdf1666261cbc3e0305e7f11583ab5157a3d792",
          "extract": True}]
