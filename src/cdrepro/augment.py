"""Batched, on-device data augmentation producing the two views of Contrastive Disentangling.

The paper (and its public code) builds each view with a per-image torchvision/PIL pipeline in
DataLoader workers::

    RandomResizedCrop(S, scale=(0.08, 1), ratio=(3/4, 4/3))
    RandomHorizontalFlip(p=0.5)
    RandomApply([ColorJitter(0.8s, 0.8s, 0.8s, 0.2s)], p=0.8)
    RandomGrayscale(p=0.2)
    GaussianBlur(23, sigma ~ U(0.1, 2.0)) with p=0.5      # ImageNet-10 only
    ToTensor()                                             # [0, 1], no normalisation

At 224 px output that pipeline is CPU bound, so here the same distribution is produced by a
handful of batched tensor operations on the training device, with every random parameter
drawn per sample from one ``torch.Generator`` (the same seed gives the same views):

* ``sample_params`` draws everything (crop boxes with torchvision's 10-attempt rejection
  sampler vectorised over attempts, flip/jitter/grayscale/blur coins, jitter factors, a random
  order of the four jitter ops per sample, blur sigmas);
* ``apply_params`` applies them with no host synchronisation and no Python loop over samples.

Differences from the per-image pipeline, all deliberate:

* Crop + resize + flip is one ``F.grid_sample`` (bilinear, ``align_corners=False``). Output
  pixel centres are mapped onto the crop box exactly as ``F.interpolate`` maps them when
  resizing the cropped image (half-pixel centres, source coordinates clamped to the crop box),
  so the result equals ``resized_crop(..., antialias=False)``. ``grid_sample`` does not
  antialias: when a crop is *downscaled* the result differs from torchvision's default
  ``antialias=True`` (and from PIL). In the paper's settings crops are upscaled (32 px CIFAR and
  96 px STL-10 images -> 224), where antialiasing changes nothing; only stored ImageNet-10
  images (~256 px) give crops larger than 224 px, and for those the difference is small.
* Grayscale uses the ITU-R 601 luma weights 0.299/0.587/0.114 (what PIL's ``convert("L")``
  uses, i.e. the public code's pipeline); torchvision's tensor kernels use 0.2989 for red.
  The difference is below 1e-4 per pixel. ``LUMA_WEIGHTS`` holds the weights.
* Colour ops work on float images (as torchvision's tensor kernels do), so there is none of
  PIL's 8-bit rounding between ops.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "AugmentConfig",
    "AugmentParams",
    "LUMA_WEIGHTS",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "apply_params",
    "augment",
    "crop_boxes_from_uniforms",
    "eval_transform",
    "gaussian_blur",
    "jitter_ranges",
    "resized_crop_flip",
    "rgb_to_grayscale",
    "sample_params",
    "to_float",
    "view_maker",
]

#: ITU-R 601 luma weights (R, G, B) used for grayscale, contrast and saturation.
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)

#: ColorJitter(0.8 s, 0.8 s, 0.8 s, 0.2 s): multipliers of the colour strength s.
BCS_STRENGTH = 0.8
HUE_STRENGTH = 0.2

#: torchvision's RandomResizedCrop tries this many (area, ratio) draws before its fallback.
CROP_ATTEMPTS = 10

# Jitter op ids used in ``AugmentParams.order``.
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3


@dataclass(frozen=True)
class AugmentConfig:
    """Settings of one view's augmentation; the defaults are the paper's (torchvision's)."""

    out_size: int
    color_strength: float  # s
    blur: bool
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_kernel: int = 23
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    def __post_init__(self) -> None:
        """Reject settings torchvision would reject, so mistakes fail before training starts."""
        if self.out_size <= 0:
            raise ValueError(f"out_size must be positive, got {self.out_size}")
        if not 0 <= self.color_strength <= 0.5 / HUE_STRENGTH:
            raise ValueError(f"color_strength must be in [0, 2.5] (hue <= 0.5), got {self.color_strength}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must satisfy 0 < lo <= hi, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < lo <= hi, got {self.ratio}")
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p"):
            p = getattr(self, name)
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be a probability, got {p}")
        if self.blur_kernel <= 0 or self.blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be odd and positive, got {self.blur_kernel}")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < lo <= hi, got {self.blur_sigma}")
        if self.blur and self.blur_kernel // 2 >= self.out_size:
            raise ValueError("reflect padding needs out_size > blur_kernel // 2")


@dataclass
class AugmentParams:
    """Per-sample random draws; every field has leading dim B and lives on the images' device."""

    boxes: Tensor  # (B, 4) float, integer-valued: top, left, height, width in input pixels
    flip: Tensor  # (B,) bool
    jitter: Tensor  # (B,) bool: apply ColorJitter at all
    brightness: Tensor  # (B,) factor
    contrast: Tensor  # (B,) factor
    saturation: Tensor  # (B,) factor
    hue: Tensor  # (B,) shift in turns, [-0.2 s, 0.2 s]
    order: Tensor  # (B, 4) long: order[b, k] = op applied k-th (0 bri, 1 con, 2 sat, 3 hue)
    grayscale: Tensor  # (B,) bool
    blur: Tensor  # (B,) bool; all False when config.blur is False
    sigma: Tensor  # (B,) float blur sigma

    def to(self, device: torch.device | str) -> AugmentParams:
        """Move every field, e.g. to compare a CPU and a CUDA application of the same draws."""
        return AugmentParams(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return self.flip.shape[0]


# ----------------------------------------------------------------------------- sampling


def jitter_ranges(config: AugmentConfig) -> dict[str, tuple[float, float]]:
    """ColorJitter(0.8s, 0.8s, 0.8s, 0.2s) ranges with torchvision's clamp of factors at 0."""
    v = BCS_STRENGTH * config.color_strength
    factor = (max(0.0, 1.0 - v), 1.0 + v)
    h = HUE_STRENGTH * config.color_strength
    return {"brightness": factor, "contrast": factor, "saturation": factor, "hue": (-h, h)}


def _uniform(u: Tensor, lo: float, hi: float) -> Tensor:
    """Map U[0, 1) draws onto U[lo, hi)."""
    return lo + (hi - lo) * u


def _fallback_box(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """torchvision's fallback after 10 failed attempts: centre crop, aspect clamped into ``ratio``.

    ``round`` is Python's (half to even), like torchvision's ``int(round(...))``.
    """
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def crop_boxes_from_uniforms(
    u_area: Tensor,
    u_log_ratio: Tensor,
    u_top: Tensor,
    u_left: Tensor,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> Tensor:
    """RandomResizedCrop boxes from U[0,1) draws, torchvision's sampler vectorised over attempts.

    torchvision loops: area ~ U(scale) * H * W, log-ratio ~ U(log ratio), w = round(sqrt(area r)),
    h = round(sqrt(area / r)), accept the first attempt with 0 < w <= W and 0 < h <= H, then
    top ~ U{0..H-h}, left ~ U{0..W-w}. Here all attempts are evaluated at once and the first
    valid one is picked with ``argmax`` (no host sync); the rare all-invalid rows take the
    fallback box. Kept separate from ``sample_params`` so tests can replay the loop on the same
    draws. Arithmetic is float64, as torchvision's is Python floats.

    Args: u_area, u_log_ratio (B, A); u_top, u_left (B,). Returns (B, 4) float32 boxes
    (top, left, height, width), integer-valued.
    """
    u_area, u_log_ratio = u_area.double(), u_log_ratio.double()
    target_area = height * width * _uniform(u_area, *scale)  # (B, A)
    aspect = torch.exp(_uniform(u_log_ratio, math.log(ratio[0]), math.log(ratio[1])))  # (B, A)
    w = torch.round(torch.sqrt(target_area * aspect))  # (B, A), round half to even like Python
    h = torch.round(torch.sqrt(target_area / aspect))
    valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)  # (B, A)
    first = valid.to(torch.uint8).argmax(dim=1, keepdim=True)  # (B, 1) first valid attempt
    found = valid.any(dim=1)  # (B,)
    w = w.gather(1, first).squeeze(1)  # (B,)
    h = h.gather(1, first).squeeze(1)
    # torch.randint(0, n) is uniform on {0..n-1}; floor(u * n) is the same for u ~ U[0, 1).
    top = torch.minimum(torch.floor(u_top.double() * (height - h + 1)), height - h)
    left = torch.minimum(torch.floor(u_left.double() * (width - w + 1)), width - w)
    # Python scalars in torch.where: no host-to-device copy on CUDA.
    fallback = _fallback_box(height, width, ratio)
    columns = [torch.where(found, col, float(fb)) for col, fb in zip((top, left, h, w), fallback, strict=True)]
    return torch.stack(columns, dim=1).float()  # (B, 4)


def sample_params(
    batch: int, height: int, width: int, config: AugmentConfig, generator: torch.Generator
) -> AugmentParams:
    """Draw one view's random parameters for ``batch`` images of size ``height`` x ``width``.

    Everything comes from ``generator`` and lives on ``generator.device``; nothing is read back
    to the host. A coin with probability p is ``u < p`` with u ~ U[0, 1), as in torchvision.
    """
    device = generator.device

    def rand(*shape: int) -> Tensor:
        return torch.rand(shape, generator=generator, device=device)

    boxes = crop_boxes_from_uniforms(
        rand(batch, CROP_ATTEMPTS),
        rand(batch, CROP_ATTEMPTS),
        rand(batch),
        rand(batch),
        height,
        width,
        config.scale,
        config.ratio,
    )  # (B, 4)
    flip = rand(batch) < config.flip_p
    jitter = rand(batch) < config.jitter_p
    ranges = jitter_ranges(config)
    brightness = _uniform(rand(batch), *ranges["brightness"])
    contrast = _uniform(rand(batch), *ranges["contrast"])
    saturation = _uniform(rand(batch), *ranges["saturation"])
    hue = _uniform(rand(batch), *ranges["hue"])
    # argsort of i.i.d. uniforms is a uniformly random permutation (torchvision: randperm(4)).
    order = rand(batch, 4).argsort(dim=1)  # (B, 4)
    grayscale = rand(batch) < config.grayscale_p
    # Drawn even without blur so the other draws do not depend on config.blur.
    blur = (rand(batch) < config.blur_p) & config.blur
    sigma = _uniform(rand(batch), *config.blur_sigma)
    return AugmentParams(
        boxes=boxes,
        flip=flip,
        jitter=jitter,
        brightness=brightness,
        contrast=contrast,
        saturation=saturation,
        hue=hue,
        order=order,
        grayscale=grayscale,
        blur=blur,
        sigma=sigma,
    )


# ------------------------------------------------------------------------------ geometry


def _crop_axis_coords(start: Tensor, length: Tensor, size: int, out_size: int) -> Tensor:
    """Normalised grid coordinates along one axis for resizing crops to ``out_size`` pixels.

    Output pixel o samples crop coordinate (o + 0.5) * length / out_size - 0.5 (half-pixel
    centres, as ``F.interpolate(align_corners=False)``), clamped to [0, length - 1] the way
    ``interpolate`` clamps at the crop's borders, so no pixel outside the box leaks in. The
    pixel coordinate p is then normalised for ``grid_sample(align_corners=False)``:
    g = (2 p + 1) / size - 1.

    start, length: (B,) in input pixels; size: input extent. Returns (B, out_size).
    """
    o = (torch.arange(out_size, device=start.device, dtype=torch.float32) + 0.5) / out_size  # (S,)
    rel = o[None, :] * length[:, None] - 0.5  # (B, S) crop coordinate
    rel = torch.minimum(rel.clamp(min=0.0), (length - 1.0)[:, None])
    return (2.0 * (start[:, None] + rel) + 1.0) / size - 1.0  # (B, S)


def resized_crop_flip(images: Tensor, boxes: Tensor, flip: Tensor, out_size: int) -> Tensor:
    """Crop each image to its box, resize to out_size^2 (bilinear) and mirror where ``flip``.

    One ``grid_sample`` for the whole batch; equals torchvision's
    ``resized_crop(img, *box, [S, S], antialias=False)`` followed by ``hflip``. No antialiasing
    on downscaling (see the module docstring: the paper's crops are upscaled).

    images (B, C, H, W) float; boxes (B, 4) top, left, height, width; flip (B,) bool.
    Returns (B, C, S, S).
    """
    batch, _, height, width = images.shape
    top, left, h, w = boxes.float().unbind(dim=1)  # (B,) each
    gy = _crop_axis_coords(top, h, height, out_size)  # (B, S)
    gx = _crop_axis_coords(left, w, width, out_size)  # (B, S)
    gx = torch.where(flip[:, None], gx.flip(dims=[1]), gx)  # mirror the sampling columns
    grid = torch.stack(
        (gx[:, None, :].expand(batch, out_size, out_size), gy[:, :, None].expand(batch, out_size, out_size)),
        dim=-1,
    ).to(images.dtype)  # (B, S, S, 2), last dim (x, y)
    # All sample points lie inside the image, so the padding mode never matters.
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


# -------------------------------------------------------------------------------- colour


def rgb_to_grayscale(images: Tensor) -> Tensor:
    """ITU-R 601 luma of (B, 3, H, W) images -> (B, 1, H, W)."""
    r, g, b = images.unbind(dim=1)
    wr, wg, wb = LUMA_WEIGHTS
    return (wr * r + wg * g + wb * b).unsqueeze(1)


def _per_sample(values: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1, 1) so a per-sample value broadcasts over an image batch."""
    return values.reshape(-1, 1, 1, 1)


def _blend(images: Tensor, target: Tensor, factor: Tensor) -> Tensor:
    """factor * images + (1 - factor) * target, clipped to [0, 1] (torchvision's ``_blend``).

    factor (B,); target broadcasts to images. factor = 1 returns the images bit-exactly, which
    lets one blend serve samples whose op in this slot is not a blend.
    """
    f = _per_sample(factor).to(images.dtype)
    return (f * images + (1.0 - f) * target).clamp(0.0, 1.0)


def adjust_brightness(images: Tensor, factor: Tensor) -> Tensor:
    """Per-sample brightness: blend with black."""
    return _blend(images, torch.zeros((), dtype=images.dtype, device=images.device), factor)


def adjust_contrast(images: Tensor, factor: Tensor) -> Tensor:
    """Per-sample contrast: blend with the mean of the image's grayscale (one value per image)."""
    return _blend(images, rgb_to_grayscale(images).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(images: Tensor, factor: Tensor) -> Tensor:
    """Per-sample saturation: blend with the image's grayscale."""
    return _blend(images, rgb_to_grayscale(images), factor)


def _rgb_to_hsv(images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(B, 3, H, W) RGB in [0, 1] -> HSV as (hue in sextants, chroma, value), each (B, H, W).

    Hue is kept in units of 60 degrees, in [-1, 5) (the red sector straddles 0; callers wrap it),
    and saturation as chroma = s * v = max - min: the hue shift only ever needs s * v, so this
    saves a division and the 6x scaling both ways. Gray pixels (chroma 0) get hue 0; channel
    ties take red, then green, as the usual definition (and torchvision) do.
    """
    r, g, b = images.unbind(dim=1)
    low, value = torch.aminmax(images, dim=1)
    chroma = value - low
    inv_chroma = torch.where(chroma > 0, chroma, torch.ones_like(chroma)).reciprocal()
    hue = torch.where(
        value == r,
        (g - b) * inv_chroma,
        torch.where(value == g, (b - r) * inv_chroma + 2.0, (r - g) * inv_chroma + 4.0),
    )
    return hue, chroma, value


def _hsv_to_rgb(hue: Tensor, chroma: Tensor, value: Tensor) -> Tensor:
    """Inverse of ``_rgb_to_hsv`` in branch-free form; inputs (B, H, W), output (B, 3, H, W).

    Channel n of (R, G, B) = v - chroma * clamp(min(k, 4 - k), 0, 1) with k = (n0 + hue) mod 6
    and n0 = 5, 3, 1: the piecewise-linear hue ramps without per-sector indexing. Any real
    ``hue`` works (it is wrapped here), so a shift can simply be added.
    """
    n0 = 5.0 - 2.0 * torch.arange(3, device=hue.device, dtype=hue.dtype).reshape(1, 3, 1, 1)  # (1,3,1,1)
    k = torch.remainder(n0 + hue[:, None], 6.0)  # (B, 3, H, W)
    ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return value[:, None] - chroma[:, None] * ramp


def adjust_hue(images: Tensor, shift: Tensor) -> Tensor:
    """Per-sample hue rotation by ``shift`` turns (B,) in HSV space (torchvision's ``adjust_hue``)."""
    hue, chroma, value = _rgb_to_hsv(images)
    return _hsv_to_rgb(hue + 6.0 * shift.reshape(-1, 1, 1).to(hue.dtype), chroma, value)


def _color_jitter(images: Tensor, params: AugmentParams) -> Tensor:
    """ColorJitter with a per-sample op order, applied where ``params.jitter``.

    Four slots; in slot k each sample runs its op ``order[:, k]``. Brightness, contrast and
    saturation are all blends, so one blend per slot serves them (the per-sample target is
    black, the gray mean or the gray image; factor 1 for samples doing hue or no jitter). Hue
    is computed for the batch and selected with ``torch.where``.
    """
    on = params.jitter  # (B,)
    one = torch.ones_like(params.brightness)
    for slot in range(4):
        op = params.order[:, slot]  # (B,)
        factor = torch.where(op == BRIGHTNESS, params.brightness, one)
        factor = torch.where(op == CONTRAST, params.contrast, factor)
        factor = torch.where(op == SATURATION, params.saturation, factor)
        factor = torch.where(on, factor, one)  # (B,)
        gray = rgb_to_grayscale(images)  # (B, 1, H, W)
        mean = gray.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
        target = torch.where(_per_sample(op == SATURATION), gray, torch.where(_per_sample(op == CONTRAST), mean, 0.0))
        images = _blend(images, target, factor)  # (B, 3, H, W)
        hue_here = _per_sample(on & (op == HUE))
        images = torch.where(hue_here, adjust_hue(images, params.hue), images)
    return images


def _random_grayscale(images: Tensor, mask: Tensor) -> Tensor:
    """Replace the masked samples by their luma replicated to 3 channels."""
    gray = rgb_to_grayscale(images).expand_as(images)  # (B, 3, H, W)
    return torch.where(_per_sample(mask), gray, images)


# ---------------------------------------------------------------------------------- blur


def _gaussian_kernels(sigma: Tensor, kernel_size: int, dtype: torch.dtype) -> Tensor:
    """Normalised 1-D Gaussian taps at offsets -k//2..k//2, one row per sigma: (B, k)."""
    offsets = torch.arange(kernel_size, device=sigma.device, dtype=dtype) - (kernel_size // 2)  # (k,)
    logits = -0.5 * (offsets[None, :] / sigma[:, None].to(dtype)) ** 2  # (B, k)
    return torch.softmax(logits, dim=1)  # exp / sum, numerically safe for tiny sigma


def _reflect_blur_matrices(taps: Tensor, size: int) -> Tensor:
    """Per-sample (size x size) matrices M with (M @ v) = v blurred with reflect padding.

    Row i gathers tap t from pixel reflect(i + t - k//2); where reflection folds several taps
    onto one pixel their weights add up. taps (B, k). Returns (B, size, size).
    """
    batch, kernel_size = taps.shape
    offsets = torch.arange(kernel_size, device=taps.device) - kernel_size // 2  # (k,)
    source = torch.arange(size, device=taps.device)[:, None] + offsets  # (S, k)
    source = torch.where(source < 0, -source, source)  # reflect without repeating the edge pixel
    source = torch.where(source >= size, 2 * (size - 1) - source, source)
    matrices = torch.zeros(batch, size, size, dtype=taps.dtype, device=taps.device)
    shape = (batch, size, kernel_size)
    return matrices.scatter_add_(2, source.expand(shape), taps[:, None, :].expand(shape))


def gaussian_blur(images: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Per-sample Gaussian blur with reflect padding (torchvision's ``gaussian_blur``).

    The 2-D Gaussian is separable; each 1-D pass, padding included, is a matrix product with a
    per-sample banded matrix: rows by ``M_h @ x``, columns by ``x @ M_w^T``. Two batched matmuls
    run far faster on a GPU than a depthwise convolution with B*3 groups of 23-tap kernels.
    images (B, C, H, W), sigma (B,). Returns (B, C, H, W).
    """
    _, _, height, width = images.shape
    taps = _gaussian_kernels(sigma, kernel_size, images.dtype)  # (B, k)
    rows = _reflect_blur_matrices(taps, height)[:, None]  # (B, 1, H, H)
    columns = _reflect_blur_matrices(taps, width)[:, None]  # (B, 1, W, W)
    return rows @ images @ columns.transpose(-1, -2)  # (B, C, H, W)


# ---------------------------------------------------------------------------------- API


def apply_params(images: Tensor, params: AugmentParams, config: AugmentConfig) -> Tensor:
    """Apply one view's draws: crop+resize+flip, jitter, grayscale, blur.

    images (B, 3, H, W) float in [0, 1] (float32: the sampling grid takes the images' dtype,
    and half precision would blur its coordinates). Returns (B, 3, S, S) in [0, 1].
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) images, got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError("images must be float in [0, 1]; use to_float() on uint8 batches")
    x = resized_crop_flip(images, params.boxes, params.flip, config.out_size)  # (B, 3, S, S)
    x = x.clamp(0.0, 1.0)  # bilinear weights are convex; this only removes rounding overshoot
    x = _color_jitter(x, params)
    x = _random_grayscale(x, params.grayscale)
    if config.blur:  # static switch: no blur work at all for CIFAR/STL
        x = torch.where(_per_sample(params.blur), gaussian_blur(x, params.sigma, config.blur_kernel), x)
    return x


def augment(images: Tensor, config: AugmentConfig, generator: torch.Generator) -> Tensor:
    """Sample and apply one view: (B, 3, H, W) float [0, 1] -> (B, 3, S, S)."""
    batch, _, height, width = images.shape
    return apply_params(images, sample_params(batch, height, width, config, generator), config)


def view_maker(config: AugmentConfig, compile: bool = False) -> Callable[[Tensor, torch.Generator], Tensor]:
    """``augment`` for one config, with ``apply_params`` optionally ``torch.compile``d.

    Eager, each colour op is a few passes over the (B, 3, S, S) batch, and at 224 px these
    memory-bound passes cost as much as a large part of the model step; compiled, Inductor fuses
    them into a few kernels. Sampling stays eager (it is tiny and uses the generator).
    """
    apply = torch.compile(apply_params, dynamic=False) if compile else apply_params

    def make_view(images: Tensor, generator: torch.Generator) -> Tensor:
        batch, _, height, width = images.shape
        return apply(images, sample_params(batch, height, width, config, generator), config)

    return make_view


def eval_transform(images: Tensor, out_size: int) -> Tensor:
    """Evaluation transform: resize to out_size x out_size only (bilinear, antialiased).

    Same as torchvision's ``Resize((S, S))`` on float tensors. (B, 3, H, W) -> (B, 3, S, S).
    """
    out = F.interpolate(images, size=(out_size, out_size), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp(0.0, 1.0)


def to_float(images: Tensor) -> Tensor:
    """uint8 batch, (B, H, W, 3) or (B, 3, H, W) -> contiguous float32 (B, 3, H, W) / 255.

    The layout is read from the shape: a last dim of 3 means channels-last (how datasets are
    stored); otherwise dim 1 must be 3. Stays on the input's device; the permute happens on
    the uint8 tensor, where it is 4x cheaper.
    """
    if images.ndim != 4:
        raise ValueError(f"expected a 4-d batch, got shape {tuple(images.shape)}")
    if images.shape[-1] == 3:
        images = images.permute(0, 3, 1, 2)
    elif images.shape[1] != 3:
        raise ValueError(f"expected 3 channels first or last, got shape {tuple(images.shape)}")
    return images.contiguous().to(torch.float32).div_(255.0)
