"""mitoseg: reproducible segmentation of mitochondria in fluorescence and electron microscopy."""

__version__ = "0.1.0"
