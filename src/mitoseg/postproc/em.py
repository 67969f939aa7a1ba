"""Post-processing of EM probability maps: the Oztel et al. (2017) pipeline used in paper 002.

Paper 002 (Table 2) re-runs Oztel et al.'s "three consecutive post-processing methods: 1)
spurious detection to remove small false blobs, 2) marker-controlled watershed transform
(Meyer, 1994) for border refinement, and 3) median filtering to smooth labels along the
z-axis". This module holds steps 1 and 2 as pure functions on 2D images (H, W) or 3D volumes
(D, H, W, z first), plus `EMPostprocess`, a callable probabilities -> mask in the style of
`mitoseg.postproc.binarize.Binarize`. Z-filtering (step 3) acts on probabilities across
slices and is not part of this module.

Neither paper spells out parameters. The watershed recipe follows paper 002's authors' own
re-implementation (``post_processing.boundary_refinement_watershed`` in their EM Image
Segmentation code, em-image-segmentation.readthedocs.io, later BiaPy; it follows the OpenCV
marker-watershed tutorial): sure foreground = the binary prediction eroded 3 times by a
3x3 square; sure background = outside the prediction dilated 3 times; the band in between
is flooded on the raw image (cv2.watershed). Their spurious-detection step drops 2D components
(8-connected) whose mean probability is below a score (0.6 or 0.65); paper 002's text says
"small false blobs", so both a size filter and that score filter are offered here.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage
from skimage.filters import sobel
from skimage.segmentation import watershed

from mitoseg.errors import InputError
from mitoseg.metrics.volume import as_label_mask

__all__ = ["remove_small_components", "remove_low_confidence_components", "watershed_refine",
           "EMPostprocess"]


# ------------------------------------------------------------------------- input checks

def _probabilities(probabilities: np.ndarray, name: str = "probabilities") -> np.ndarray:
    arr = np.asarray(probabilities)
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise InputError(f"{name}: expected a non-empty 2D (H, W) or 3D (D, H, W) array, got shape {arr.shape}")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"{name}: expected a float probability map in [0, 1], got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise InputError(f"{name}: expected probabilities in [0, 1], found NaN or inf")
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise InputError(f"{name}: expected probabilities in [0, 1] (apply a sigmoid to logits first), "
                         f"got values in [{arr.min():.4g}, {arr.max():.4g}]")
    return arr


def _unit_interval(value: float, name: str, closed: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise InputError(f"postproc option '{name}' must be a number, got {value!r}")
    ok = 0.0 <= value <= 1.0 if closed else 0.0 < value < 1.0
    if not ok:
        raise InputError(f"postproc option '{name}' must be in {'[0, 1]' if closed else '(0, 1)'}, got {value}")
    return float(value)


def _count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InputError(f"postproc option '{name}' must be an integer >= 0, got {value!r}")
    return int(value)


def _structure(ndim: int, connectivity: Optional[int]) -> np.ndarray:
    """Neighbourhood for labelling; None = full (8 in 2D, 26 in 3D), as in the authors' code."""
    if connectivity is None:
        connectivity = ndim
    if isinstance(connectivity, bool) or connectivity not in range(1, ndim + 1):
        raise InputError(f"postproc option 'connectivity' must be None or an integer in 1..{ndim} for "
                         f"{ndim}D components (1 = faces only, {ndim} = full), got {connectivity!r}")
    return ndimage.generate_binary_structure(ndim, connectivity)


def _planes(arr: np.ndarray, per_slice: bool) -> list[np.ndarray]:
    """The arrays to process independently: each z-slice, or the whole array."""
    return list(arr) if per_slice and arr.ndim == 3 else [arr]


# ---------------------------------------------------------------- 1. spurious detection

def _filter_components(mask: np.ndarray, keep_fn, connectivity: Optional[int], per_slice: bool) -> np.ndarray:
    out = np.zeros_like(mask)
    targets = _planes(out, per_slice)
    for src, dst in zip(_planes(mask, per_slice), targets):
        labels, n = ndimage.label(src, structure=_structure(src.ndim, connectivity))
        if n:
            keep = keep_fn(labels, n)
            keep[0] = False
            dst[...] = keep[labels]
    return out


def remove_small_components(mask: np.ndarray, min_size: int, connectivity: Optional[int] = None,
                            per_slice: bool = True) -> np.ndarray:
    """Drop connected components with fewer than ``min_size`` pixels (voxels); returns bool.

    per_slice=True labels each z-slice of a volume in 2D (as Oztel et al. and paper 002's
    authors, who work slice by slice); False labels 3D components, so a thin object spanning
    many slices survives even if each cross-section is small. 2D inputs ignore per_slice.
    connectivity: None = full (8 in 2D, 26 in 3D), 1 = faces only. min_size <= 1 keeps all.
    """
    m = as_label_mask(mask, "mask")
    min_size = _count(min_size, "min_size")
    if min_size <= 1:
        return m.copy()
    return _filter_components(m, lambda labels, n: np.bincount(labels.ravel(), minlength=n + 1) >= min_size,
                              connectivity, per_slice)


def remove_low_confidence_components(probabilities: np.ndarray, threshold: float = 0.5,
                                     min_mean_probability: float = 0.6,
                                     connectivity: Optional[int] = None,
                                     per_slice: bool = True, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Spurious detection as paper 002's authors re-implemented Oztel et al.: binarize with
    ``p > threshold`` (or take ``mask``), then drop components whose mean probability is below
    ``min_mean_probability`` (their code: 0.6 or 0.65). Unlike that code, every component is
    tested (its loop skipped the last label)."""
    p = _probabilities(probabilities)
    threshold = _unit_interval(threshold, "threshold")
    score = _unit_interval(min_mean_probability, "min_mean_probability", closed=True)
    m = p > threshold if mask is None else as_label_mask(mask, "mask")
    if m.shape != p.shape:
        raise InputError(f"mask and probabilities: expected the same shape, got {m.shape} and {p.shape}")
    out = np.zeros_like(m)
    for src, prob, dst in zip(_planes(m, per_slice), _planes(p, per_slice), _planes(out, per_slice)):
        labels, n = ndimage.label(src, structure=_structure(src.ndim, connectivity))
        if n:
            sums = np.bincount(labels.ravel(), weights=prob.ravel(), minlength=n + 1)
            sizes = np.bincount(labels.ravel(), minlength=n + 1)
            keep = sums >= score * np.maximum(sizes, 1)  # mean >= score, without dividing by 0
            keep[0] = False
            dst[...] = keep[labels]
    return out


# ------------------------------------------------------------------- 2. watershed

def _innermost(core: np.ndarray, sure_fg: np.ndarray, square: np.ndarray) -> np.ndarray:
    """Pixels at the largest inner distance of each component of `core` that erosion emptied."""
    labels, n = ndimage.label(core, structure=square)
    if n == 0:
        return sure_fg
    index = np.arange(1, n + 1)
    emptied = index[~np.asarray(ndimage.maximum(sure_fg, labels, index), dtype=bool)]
    if emptied.size == 0:
        return sure_fg
    depth = ndimage.distance_transform_edt(core)
    peak = np.zeros(n + 1)
    peak[emptied] = ndimage.maximum(depth, labels, emptied)
    return sure_fg | (np.isin(labels, emptied) & (depth >= peak[labels]))


def _watershed_plane(prob: np.ndarray, mask: np.ndarray, relief_src: np.ndarray,
                     marker_threshold: Optional[float], margin: int, keep_all_objects: bool) -> np.ndarray:
    square = ndimage.generate_binary_structure(mask.ndim, mask.ndim)  # cv2's 3x3 kernel
    core = mask if marker_threshold is None else mask & (prob > marker_threshold)
    if margin > 0:
        # border_value=1: an object cut by the field of view is not eroded from the image edge
        sure_fg = ndimage.binary_erosion(core, square, iterations=margin, border_value=1)
        sure_bg = ~ndimage.binary_dilation(mask, square, iterations=margin)
        if keep_all_objects:
            sure_fg = _innermost(core, sure_fg, square)
    else:
        sure_fg, sure_bg = core, ~mask
    if not sure_fg.any():
        return np.zeros_like(mask)  # nothing confident enough to flood from
    markers, _ = ndimage.label(sure_fg, structure=square)
    markers = np.where(markers > 0, markers + 1, 0)
    markers[sure_bg] = 1
    labels = watershed(sobel(relief_src), markers)
    return labels > 1


def watershed_refine(probabilities: np.ndarray, threshold: float = 0.5,
                     marker_threshold: Optional[float] = None, margin: int = 3,
                     image: Optional[np.ndarray] = None, per_slice: bool = True,
                     mask: Optional[np.ndarray] = None, keep_all_objects: bool = True) -> np.ndarray:
    """Marker-controlled watershed that moves mask borders onto the strongest edge nearby.

    Recipe (Oztel et al., 2017, as re-implemented by paper 002's authors; Meyer, 1994):
    1. mask = ``p > threshold`` (or the given ``mask``, e.g. after spurious detection);
    2. sure foreground = mask (restricted to ``p > marker_threshold`` if given) eroded
       ``margin`` times by a 3x3 (3x3x3) square, one marker label per component;
    3. sure background = outside the mask dilated ``margin`` times;
    4. relief = Sobel gradient magnitude of ``image`` (the raw EM image, as in the authors'
       code, which floods the image) or, without one, of the probability map;
    5. skimage's watershed floods the unknown band between the two from the markers;
       the result is every pixel reached from a foreground marker.
    So borders move by at most ``margin`` pixels and markers never change class. A component
    thinner than 2 * margin + 1 px has no sure foreground left: with keep_all_objects=True
    (default, this project's choice: removing objects is spurious detection's job) its
    innermost pixels (maximum of the distance transform) become its marker; with False it
    disappears, as in the authors' code. margin=0 with marker_threshold=None returns the
    mask unchanged.

    per_slice=True (default) refines each z-slice in 2D, as the authors did; False works in
    3D (structuring elements and gradient in 3D, so anisotropic voxels bias it).
    """
    p = _probabilities(probabilities)
    threshold = _unit_interval(threshold, "threshold")
    if marker_threshold is not None:
        marker_threshold = _unit_interval(marker_threshold, "marker_threshold")
        if marker_threshold < threshold:
            raise InputError(f"postproc option 'marker_threshold' must be >= threshold ({threshold}), "
                             f"got {marker_threshold}: sure foreground must lie inside the mask")
    margin = _count(margin, "margin")
    m = p > threshold if mask is None else as_label_mask(mask, "mask")
    if m.shape != p.shape:
        raise InputError(f"mask and probabilities: expected the same shape, got {m.shape} and {p.shape}")
    relief = p
    if image is not None:
        relief = np.asarray(image)
        if relief.shape != p.shape or not np.issubdtype(relief.dtype, np.number):
            raise InputError(f"image: expected a numeric array of the probabilities' shape {p.shape}, "
                             f"got {relief.dtype} of shape {relief.shape}")
        relief = relief.astype(np.float64)
    out = np.zeros_like(m)
    for prob, msk, rel, dst in zip(*(_planes(a, per_slice) for a in (p, m, relief, out))):
        dst[...] = _watershed_plane(prob, msk, rel, marker_threshold, margin, bool(keep_all_objects))
    return out


# ------------------------------------------------------------------------ the pipeline

class EMPostprocess:
    """Probability map (2D or 3D) -> bool mask: ``p > threshold``, then optionally spurious
    detection (components under ``min_size`` px, or with mean probability under
    ``min_mean_probability``) and marker-controlled watershed border refinement, in
    Oztel et al.'s order.

    threshold: 0.5 (paper 002). min_size: 0 keeps all. per_slice: 2D components / watershed
    per z-slice (True) or 3D (False). connectivity: None = full. watershed, marker_threshold,
    margin, keep_all_objects: see `watershed_refine`. Call with ``image=`` to flood the raw EM image's gradient
    instead of the probability map's.
    """

    def __init__(self, threshold: float = 0.5, min_size: int = 0, per_slice: bool = True,
                 watershed: bool = False, marker_threshold: Optional[float] = None, margin: int = 3,
                 connectivity: Optional[int] = None, min_mean_probability: float = 0.0,
                 keep_all_objects: bool = True) -> None:
        self.threshold = _unit_interval(threshold, "threshold")
        self.min_size = _count(min_size, "min_size")
        self.min_mean_probability = _unit_interval(min_mean_probability, "min_mean_probability", closed=True)
        self.margin = _count(margin, "margin")
        if marker_threshold is not None:
            marker_threshold = _unit_interval(marker_threshold, "marker_threshold")
            if marker_threshold < self.threshold:
                raise InputError(f"postproc option 'marker_threshold' must be >= threshold "
                                 f"({self.threshold}), got {marker_threshold}")
        self.marker_threshold = marker_threshold
        for name, flag in (("per_slice", per_slice), ("watershed", watershed),
                           ("keep_all_objects", keep_all_objects)):
            if not isinstance(flag, (bool, np.bool_)):
                raise InputError(f"postproc option '{name}' must be true or false, got {flag!r}")
        self.per_slice, self.watershed = bool(per_slice), bool(watershed)
        self.keep_all_objects = bool(keep_all_objects)
        if connectivity is not None and (isinstance(connectivity, bool) or connectivity not in (1, 2, 3)):
            raise InputError(f"postproc option 'connectivity' must be None, 1, 2 or 3, got {connectivity!r}")
        self.connectivity = connectivity

    def __call__(self, probabilities: np.ndarray, image: Optional[np.ndarray] = None) -> np.ndarray:
        p = _probabilities(probabilities)
        mask = p > self.threshold
        if self.min_mean_probability > 0:
            mask = remove_low_confidence_components(p, self.threshold, self.min_mean_probability,
                                                    self.connectivity, self.per_slice, mask=mask)
        if self.min_size > 1:
            mask = remove_small_components(mask, self.min_size, self.connectivity, self.per_slice)
        if self.watershed:
            mask = watershed_refine(p, self.threshold, self.marker_threshold, self.margin,
                                    image=image, per_slice=self.per_slice, mask=mask,
                                    keep_all_objects=self.keep_all_objects)
        return mask

    def describe(self) -> dict:
        return {"threshold": self.threshold, "min_size": self.min_size,
                "min_mean_probability": self.min_mean_probability, "per_slice": self.per_slice,
                "connectivity": self.connectivity, "watershed": self.watershed,
                "marker_threshold": self.marker_threshold, "margin": self.margin,
                "keep_all_objects": self.keep_all_objects}
