"""Lucchi++ (Casser et al. 2020): the EPFL Lucchi volumes re-labelled, as folders of PNG slices
(``Lucchi++/Train_In, Train_Out, Test_In, Test_Out``); 5 nm isotropic. Reader:
``mitoseg.data.em_sources.casser_volumes`` (``conf/dataset/lucchi_pp.yaml`` says which folders
are EPFL's training volume)."""

KEY = "lucchi++"
FOLDER = "Lucchi++"  # the zip's top folder
PAGE = "https://sites.google.com/view/connectomics/"
DESCRIPTION = "Lucchi++ (Casser et al. 2020), Lucchi re-labelled; zip of PNG slices"
VOXEL_SIZE_NM = (5.0, 5.0, 5.0)  # (z, y, x): the Lucchi volume
IGNORE_VALUES: tuple[int, ...] = ()  # label values that are neither mitochondrion nor background
# SHA-256 from torch-em (lucchi.py) and micro-sam (sample_data.py), which agree
FILES = [{"url": "http://www.casser.io/files/lucchi_pp.zip",
          "sha256": "770ce9e98fc6f29c1b1a250c637e6c5125f2b5f1260e5a7687b55a79e2e8844d",
          "extract": True}]
