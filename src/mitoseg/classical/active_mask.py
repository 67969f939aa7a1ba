"""Adaptive active mask (AAM): the classical baseline of paper 000.

Implemented from its two publications (no code taken from them):

- G. Srinivasa, M. C. Fickus, Y. Guo, A. D. Linstedt, J. Kovacevic, "Active mask segmentation
  of fluorescence microscope images", IEEE Trans. Image Processing 18(8), 2009 -- the active
  mask framework (random multi-mask initialization, region-based and voting-based distributing
  functions, a cellular-automaton update, multiscale and multiresolution refinement);
- K.-C. J. Chen, Y. Yu, R. Li, H.-C. Lee, G. Yang, J. Kovacevic, "Adaptive active-mask image
  segmentation for quantitative characterization of mitochondrial morphology", IEEE ICIP 2012
  -- the adaptive variant: the global threshold of the region term is replaced by a local
  background estimate plus an offset. Paper 000 uses this variant through its authors' MATLAB
  code (it links github.com/ccdlcmu/image-segmentation). "The release" below means the MATLAB
  code the ICIP first author published (github.com/jackiekc/research-matlab,
  Segmentation/AdaptiveActiveMask): we read its parameter values and comments for the defaults;
  the code here is written from the description above, not translated from it.

The algorithm, on a label image psi (label 0 is the background mask):

1. psi starts as uniformly random labels in {0, ..., n_masks - 1} at the coarsest resolution.
2. For each resolution level (coarse to fine; each finer level doubles the size) and each
   smoothing scale a of that level (large to small):
   - f = the image smoothed with h_a(x) = exp(-|x|^2 / a^2) (a Gaussian of sigma a / sqrt 2,
     normalized at the border), then averaged over 2 x 2 blocks down to the level's size;
   - B = the adaptive local background: the level's image smoothed with a Gaussian of sigma
     background_sigma / 2^level;
   - region term R = region_weight * erf(erf_scale * ((f - B) / s - offset)), added to the
     score of the background mask only; region_weight < 0, so pixels brighter than their
     background are pushed out of it; s is the noise standard deviation of f - B (below);
   - voting term: for every mask m, its indicator smoothed with the soft disk
     g_b(x) = (1 - erf((|x|^2 - b^2) / (b^2 + c))) / 2 and divided by g_b * 1, i.e. the share
     of the pixel's neighbourhood that m holds (also at the image border);
   - every pixel moves to the mask with the highest score; masks left without pixels are
     dropped; this repeats until no pixel moves (or max_iterations).
   Going to a finer level, every label is copied to the 2 x 2 pixels it covers.
3. Foreground (mitochondria) = every pixel not in the background mask.

Intensity units (our choice; the release works in raw grey levels and tunes the offset per
data set): the image is divided by its estimated noise standard deviation (``noise_sigma``) and
f - B by the factor s by which smoothing and background subtraction shrink white noise (exact,
from the filters). (f - B) / s is therefore a z-score, ``erf_scale`` and ``offset`` are in its
units, one default serves every intensity scale and scale a, and the result is invariant to
``a * image + b`` with a > 0.

Speed: only masks that gained or lost pixels are re-convolved, pixel by pixel once few pixels
move, and only pixels within the disk's reach of a moved pixel are re-scored. This gives the
same result as recomputing everything each iteration (up to float rounding) and keeps a
200 x 200 image well under a second.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np
from scipy import fft, ndimage
from scipy.special import erf, erfc

from mitoseg.classical.thresholding import check_image, noise_sigma
from mitoseg.errors import InputError

Seed = Union[int, np.integer, np.random.Generator]

# The release's annealing schedule for a_max = 3.5 with one coarser level (see the docstring).
DEFAULT_SCALES: tuple[tuple[float, ...], ...] = ((2.5, 1.5), (3.5, 2.5))
# Above this many moved pixels per changed mask, re-convolving the changed masks through the
# FFT is cheaper than moving their shares pixel by pixel (measured at 200 x 200).
_PIXELS_PER_MASK_CONVOLUTION = 50
_KERNEL_TAIL = 2.5  # the soft disk is cut where erf's argument reaches this (g < 3e-4)


def _resolve_rng(seed: Seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"active mask option 'seed' must be an int >= 0 or a "
                         f"numpy.random.Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def _soft_disk(radius: float, softness: float) -> np.ndarray:
    """g_b of the voting term: a disk of radius b whose edge falls off like erf in |x|^2."""
    width = radius * radius + softness
    reach = int(np.ceil(np.sqrt(radius * radius + _KERNEL_TAIL * width)))
    y, x = np.mgrid[-reach:reach + 1, -reach:reach + 1].astype(np.float64)
    return 0.5 * erfc((x * x + y * y - radius * radius) / width)


class _Voting:
    """The voting term: the share of each pixel's g_b-weighted neighbourhood held by a mask.

    Indicators are zero outside the image and each convolution is divided by the kernel's mass
    inside the image, so a pixel on the border votes among the pixels that exist. Whole masks
    are convolved in a batch through the FFT; when only a few pixels moved, ``move`` updates
    the shares of the masks they left and joined directly (the term is linear in the masks).
    """

    def __init__(self, kernel: np.ndarray, shape: tuple[int, int]) -> None:
        self.reach = kernel.shape[0] // 2
        self.kernel = kernel.astype(np.float32)
        self.shape = shape
        self.fshape = tuple(fft.next_fast_len(n + self.reach, real=True) for n in shape)
        wrapped = np.zeros(self.fshape, dtype=np.float32)
        offsets = np.arange(-self.reach, self.reach + 1)
        wrapped[np.ix_(offsets % self.fshape[0], offsets % self.fshape[1])] = self.kernel
        self.spectrum = fft.rfft2(wrapped)  # the kernel centred on the origin
        mass = self._convolve(np.ones((1, *shape), dtype=np.float32))[0]
        self.mass = np.maximum(mass, np.float32(1e-6))

    def _convolve(self, stack: np.ndarray) -> np.ndarray:
        spectra = fft.rfft2(stack, s=self.fshape, workers=1)
        out = fft.irfft2(spectra * self.spectrum, s=self.fshape, workers=1)
        return out[:, : self.shape[0], : self.shape[1]]

    def shares(self, labels: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """(len(masks), H, W): the shares of the given masks, computed from scratch."""
        indicators = labels[None] == masks.astype(labels.dtype)[:, None, None]
        return self._convolve(indicators.astype(np.float32)) / self.mass

    def move(self, shares: np.ndarray, rows: np.ndarray, cols: np.ndarray, left: np.ndarray,
             joined: np.ndarray) -> None:
        """Update ``shares`` in place for pixels (rows, cols) that moved from ``left`` to
        ``joined``: each moves one kernel's worth of share between the two masks."""
        (height, width), r = self.shape, self.reach
        for y, x, old, new in zip(rows.tolist(), cols.tolist(), left.tolist(), joined.tolist()):
            y0, y1 = max(y - r, 0), min(y + r + 1, height)
            x0, x1 = max(x - r, 0), min(x + r + 1, width)
            patch = (self.kernel[y0 - y + r:y1 - y + r, x0 - x + r:x1 - x + r]
                     / self.mass[y0:y1, x0:x1])
            shares[old, y0:y1, x0:x1] -= patch
            shares[new, y0:y1, x0:x1] += patch


def _smooth_normalized(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing that averages only over pixels inside the image."""
    weights = ndimage.gaussian_filter(np.ones_like(image), sigma, mode="constant")
    return ndimage.gaussian_filter(image, sigma, mode="constant") / weights


def _block_mean(image: np.ndarray, times: int) -> np.ndarray:
    """Halve the resolution ``times`` times by averaging 2 x 2 blocks (sizes are multiples)."""
    for _ in range(times):
        h, w = image.shape
        image = image.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return image


def _noise_gain(smoothing_sigma: float, background_sigma: float, level: int) -> float:
    """Standard deviation of f - B at an interior pixel per unit of white input noise.

    f - B is linear in the image: block_mean(smooth(x)) - gauss(block_mean(x)). Its response at
    one output pixel to every input pixel is the adjoint applied to a delta there (block_mean's
    adjoint spreads a value evenly over its 2^level x 2^level block; the Gaussians are
    symmetric), and the noise variance is the sum of the squared responses.
    """
    factor = 2 ** level
    half = int(np.ceil((4.0 * smoothing_sigma + 3.0 * background_sigma * factor) / factor)) + 2
    delta = np.zeros((2 * half + 1, 2 * half + 1))
    delta[half, half] = 1.0

    def spread(coarse: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(coarse, factor, axis=0), factor, axis=1) / factor ** 2

    from_f = ndimage.gaussian_filter(spread(delta), smoothing_sigma, mode="constant")
    from_b = spread(ndimage.gaussian_filter(delta, background_sigma, mode="constant",
                                            truncate=3.0))
    return float(np.sqrt(np.sum((from_f - from_b) ** 2)))


def _evolve(labels: np.ndarray, region: np.ndarray, voting: _Voting,
            max_iterations: int) -> tuple[np.ndarray, int]:
    """Move pixels to their best-scoring mask until none moves (or max_iterations).

    Returns compact labels (0 = background, 1..n-1 the masks still holding pixels) and the
    number of iterations run. Only the masks that gained or lost pixels are updated: from
    scratch through the FFT while many pixels move, pixel by pixel once few do (after the first
    few iterations only tens of pixels move, so this is what keeps the method fast).
    """
    count = int(labels.max()) + 1
    shares = voting.shares(labels, np.arange(count))
    region = region.ravel()
    dirty: np.ndarray | None = None  # pixels whose scores may have changed; None: all of them
    iteration = 0
    for iteration in range(1, max_iterations + 1):
        flat = shares.reshape(count, -1)
        if dirty is None:
            scores = flat.copy()
            scores[0] += region
            moved = np.argmax(scores, axis=0).astype(labels.dtype).reshape(labels.shape)
        else:  # a score changes only within the voting kernel's reach of a moved pixel
            where = np.flatnonzero(dirty)
            scores = flat[:, where]
            scores[0] += region[where]
            moved = labels.copy()
            moved.ravel()[where] = np.argmax(scores, axis=0)
        rows, cols = np.nonzero(moved != labels)
        if rows.size == 0:
            break
        left, joined = labels[rows, cols], moved[rows, cols]
        touched = np.union1d(left, joined)
        present = np.bincount(moved.ravel(), minlength=count) > 0
        present[0] = True  # the mask the region term refers to is kept even when empty
        labels = moved
        if rows.size <= _PIXELS_PER_MASK_CONVOLUTION * touched.size:
            voting.move(shares, rows, cols, left, joined)
        else:
            shares[touched] = voting.shares(labels, touched)
        if not present.all():  # drop the masks that lost all their pixels
            remap = np.cumsum(present) - 1
            labels, shares, count = remap[labels].astype(labels.dtype), shares[present], \
                int(present.sum())
        dirty = np.zeros(labels.shape, dtype=bool)
        dirty[rows, cols] = True
        dirty = ndimage.maximum_filter(dirty, size=2 * voting.reach + 1, mode="constant")
    present = np.bincount(labels.ravel(), minlength=count) > 0
    present[0] = True
    remap = np.cumsum(present) - 1
    return remap[labels].astype(labels.dtype), iteration


class AdaptiveActiveMask:
    """Adaptive active mask segmentation (Chen et al., ICIP 2012; Srinivasa et al., TIP 2009).

    Call an instance on one 2D image (float, any intensity scale) to get a bool mask of the same
    shape, True for mitochondria. The method is stochastic only through its random initial
    labelling: a fixed ``seed`` gives the same mask every time.

    Args:
        n_masks: number of masks in the random initial labelling (M). Default 256, the value of
            the AAM authors' release used by paper 000.
        scales: smoothing scales a of h_a(x) = exp(-|x|^2 / a^2) in full-resolution pixels,
            one tuple per resolution level from coarsest to finest, each tuple large to small
            (the annealing). The number of tuples sets the number of levels: level k is
            downsampled by 2^(levels-1-k). Default ((2.5, 1.5), (3.5, 2.5)): the release's
            schedule for a_max = 3.5 with one coarser level (K = 1 to K_0 = 0).
        vote_radius: radius b of the voting disk g_b at full resolution, halved per coarser
            level. Default 8 px (the release's b = 8).
        vote_softness: c in g_b, which softens the disk edge. Default 1/8 (the release, which
            calls it negligibly small).
        region_weight: alpha, the weight of the region term, in (-1, 0) as the release
            documents it (|alpha| < 1 leaves voting, whose shares lie in [0, 1], a say).
            Default -0.9 (the release).
        erf_scale: beta, the steepness of the erf per unit of the z-score (f - B) / s. Default
            0.5 (our choice; the release's beta = 1 per grey level has no meaning without its
            images' intensity scale).
        offset: the z-score above which the region term pushes a pixel out of the background
            mask (the publications' -gamma, in z units). Default 0.25 (our choice; the release
            suggests gamma in -5 ... -30 grey levels, tuned per data set).
            erf_scale and offset were chosen together on procedural masks as the middle of the
            plateau of best mean area similarity over paper 000's conditions SNR 8, 4, 1 and
            space-invariant blur 4 (erf_scale 0.4-0.75 with offset 0.1-0.5 are all within
            0.02 of it); offsets below 0 let noise into the foreground, offsets of 1 or more
            lose most mitochondria at SNR 1.
        background_sigma: sigma (px) of the Gaussian that estimates the local background B at
            full resolution, halved per coarser level; the window is cut at 3 sigma (a 6-sigma
            wide window, as in the release). Default 5 (the release's ad_sigma_max).
        max_iterations: cap on cellular-automaton iterations per scale; the publications stop
            only when no pixel moves. Default 100 (our choice; a guard against 2-cycles).
        seed: int >= 0 for the random initial labelling. Default 0.

    Example:
        >>> aam = AdaptiveActiveMask(seed=0)
        >>> mask = aam(image)               # bool (H, W)
        >>> labels = aam.labels(image)      # 0 = background, 1..n the surviving masks
    """

    def __init__(self, n_masks: int = 256,
                 scales: Sequence[Sequence[float]] = DEFAULT_SCALES,
                 vote_radius: float = 8.0, vote_softness: float = 0.125,
                 region_weight: float = -0.9, erf_scale: float = 0.5, offset: float = 0.25,
                 background_sigma: float = 5.0, max_iterations: int = 100,
                 seed: int = 0) -> None:
        def fail(name: str, expected: str, got: Any) -> None:
            raise InputError(f"active mask option '{name}' must be {expected}, got {got!r}")

        if not isinstance(n_masks, (int, np.integer)) or isinstance(n_masks, bool) or n_masks < 2:
            fail("n_masks", "an integer >= 2 (the background and at least one more)", n_masks)
        try:
            levels = tuple(tuple(float(a) for a in level) for level in scales)
        except (TypeError, ValueError):
            fail("scales", "a list of lists of numbers, one list per resolution level", scales)
        if not levels or any(not level for level in levels) or not all(
                np.isfinite(a) and a > 0 for level in levels for a in level):
            fail("scales", "a non-empty list of non-empty lists of positive numbers", scales)
        for name, value in (("vote_radius", vote_radius), ("background_sigma", background_sigma),
                            ("erf_scale", erf_scale)):
            if not (np.isfinite(value) and value > 0):
                fail(name, "a finite number > 0", value)
        if not (np.isfinite(vote_softness) and vote_softness >= 0):
            fail("vote_softness", "a finite number >= 0", vote_softness)
        if not (np.isfinite(region_weight) and -1.0 < region_weight < 0.0):
            fail("region_weight", "in (-1, 0) (negative: it pushes bright pixels out of the "
                 "background mask)", region_weight)
        if not np.isfinite(offset):
            fail("offset", "a finite number", offset)
        if (not isinstance(max_iterations, (int, np.integer)) or isinstance(max_iterations, bool)
                or max_iterations < 1):
            fail("max_iterations", "an integer >= 1", max_iterations)
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            fail("seed", "an int >= 0 (pass a Generator to the call instead)", seed)
        self.n_masks, self.scales = int(n_masks), levels
        self.vote_radius, self.vote_softness = float(vote_radius), float(vote_softness)
        self.region_weight, self.erf_scale = float(region_weight), float(erf_scale)
        self.offset, self.background_sigma = float(offset), float(background_sigma)
        self.max_iterations, self.seed = int(max_iterations), int(seed)

    def __call__(self, image: np.ndarray, seed: Seed | None = None) -> np.ndarray:
        """Bool mask of the mitochondria; ``seed`` (int or Generator) overrides self.seed."""
        return self.labels(image, seed) > 0

    def labels(self, image: np.ndarray, seed: Seed | None = None) -> np.ndarray:
        """The final masks as int32 labels: 0 is the background mask, 1..n the others."""
        image = check_image(image)
        rng = _resolve_rng(self.seed if seed is None else seed)
        scale = noise_sigma(image)
        if scale == 0:  # a constant image: nothing stands out from its background
            return np.zeros(image.shape, dtype=np.int32)
        image = (image - np.median(image)) / scale

        factor = 2 ** (len(self.scales) - 1)
        height, width = image.shape
        pad = [(0, 0), (0, 0)]
        for axis, n in enumerate(image.shape):
            extra = -n % factor
            pad[axis] = (extra // 2, extra - extra // 2)
        padded = np.pad(image, pad, mode="edge")

        labels: np.ndarray | None = None
        for index, level_scales in enumerate(self.scales):
            level = len(self.scales) - 1 - index  # 0 = full resolution
            at_level = _block_mean(padded, level)
            background = ndimage.gaussian_filter(at_level, self.background_sigma / 2 ** level,
                                                 mode="nearest", truncate=3.0)
            kernel = _soft_disk(self.vote_radius / 2 ** level, self.vote_softness)
            voting = _Voting(kernel, at_level.shape)
            if labels is None:
                labels = rng.integers(0, self.n_masks, size=at_level.shape).astype(np.int32)
            else:
                labels = np.repeat(np.repeat(labels, 2, axis=0), 2, axis=1)
            for a in level_scales:
                sigma = a / np.sqrt(2.0)
                smoothed = _block_mean(_smooth_normalized(padded, sigma), level)
                gain = _noise_gain(sigma, self.background_sigma / 2 ** level, level)
                z = (smoothed - background) / gain
                region = self.region_weight * erf(self.erf_scale * (z - self.offset))
                labels, _ = _evolve(labels, region.astype(np.float32), voting,
                                    self.max_iterations)
        assert labels is not None
        top, left = pad[0][0], pad[1][0]
        labels = labels[top:top + height, left:left + width]
        kept = np.unique(labels)  # masks that lived only in the padding are gone
        if kept[0] != 0:
            kept = np.concatenate([[0], kept])
        return np.searchsorted(kept, labels).astype(np.int32)

    def describe(self) -> dict[str, Any]:
        return {"method": "adaptive_active_mask", "n_masks": self.n_masks,
                "scales": [list(level) for level in self.scales],
                "vote_radius": self.vote_radius, "vote_softness": self.vote_softness,
                "region_weight": self.region_weight, "erf_scale": self.erf_scale,
                "offset": self.offset, "background_sigma": self.background_sigma,
                "max_iterations": self.max_iterations, "seed": self.seed}


def adaptive_active_mask(image: np.ndarray, seed: Seed = 0, **options: Any) -> np.ndarray:
    """Functional form: ``AdaptiveActiveMask(**options)(image, seed)``."""
    return AdaptiveActiveMask(**options)(image, seed=seed)
