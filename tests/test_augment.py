"""Tests of the batched augmentation against torchvision's per-image pipeline.

Two kinds of evidence: (1) statistics of many draws (crop boxes, coin rates, factor ranges,
jitter orders) against torchvision's own samplers or the configured probabilities; (2) each
op, and the whole composition, on the same parameters equals torchvision's functional ops
applied image by image.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from PIL import Image

from cdrepro import augment as A
from cdrepro.augment import AugmentConfig, AugmentParams

TORCHVISION_LUMA = (0.2989, 0.587, 0.114)  # torchvision's tensor kernels; ours is ITU-R 601


@pytest.fixture
def tv_luma(monkeypatch: pytest.MonkeyPatch) -> None:
    """Use torchvision's red weight so colour ops can be compared at float precision."""
    monkeypatch.setattr(A, "LUMA_WEIGHTS", TORCHVISION_LUMA)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def cfg(out_size: int = 40, s: float = 1.0, blur: bool = False, **kw: object) -> AugmentConfig:
    return AugmentConfig(out_size=out_size, color_strength=s, blur=blur, **kw)


def binomial_ok(hits: torch.Tensor, p: float, sigmas: float = 4.0) -> bool:
    """Is the rate of a bool tensor within ``sigmas`` binomial standard deviations of p?"""
    n = hits.numel()
    return abs(hits.float().sum().item() - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1e-9


def ks_statistic(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov distance between empirical CDFs."""
    a, b = a.double().sort().values, b.double().sort().values
    points = torch.cat((a, b))
    cdf_a = torch.searchsorted(a, points, right=True) / a.numel()
    cdf_b = torch.searchsorted(b, points, right=True) / b.numel()
    return (cdf_a - cdf_b).abs().max().item()


def ks_critical(n: int, m: int, c_alpha: float = 1.95) -> float:
    """KS critical distance at alpha ~ 0.001."""
    return c_alpha * math.sqrt((n + m) / (n * m))


# ---------------------------------------------------------------------------- crop boxes


def reference_box(
    u_area: list[float],
    u_ratio: list[float],
    u_top: float,
    u_left: float,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.make_params loop, replayed on given uniforms."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for ua, ur in zip(u_area, u_ratio, strict=True):
        target_area = area * (scale[0] + (scale[1] - scale[0]) * ua)
        aspect = math.exp(log_lo + (log_hi - log_lo) * ur)
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return math.floor(u_top * (height - h + 1)), math.floor(u_left * (width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


@pytest.mark.parametrize("height,width", [(32, 32), (96, 96), (20, 50), (50, 20), (4, 400), (400, 4), (1, 1)])
def test_crop_boxes_replay_torchvision_loop(height: int, width: int) -> None:
    """The vectorised first-valid-attempt selection and fallback equal the sequential loop."""
    n, scale, ratio = 300, (0.08, 1.0), (3 / 4, 4 / 3)
    g = gen(1)
    u_area, u_ratio = torch.rand(n, 10, generator=g), torch.rand(n, 10, generator=g)
    u_top, u_left = torch.rand(n, generator=g), torch.rand(n, generator=g)
    boxes = A.crop_boxes_from_uniforms(u_area, u_ratio, u_top, u_left, height, width, scale, ratio)
    expected = [
        reference_box(
            u_area[i].tolist(), u_ratio[i].tolist(), u_top[i].item(), u_left[i].item(), height, width, scale, ratio
        )
        for i in range(n)
    ]
    assert boxes.tolist() == [list(map(float, box)) for box in expected]


def test_crop_fallback_is_centre_crop_with_clamped_ratio() -> None:
    """No attempt fits a 4x400 strip: every box is the centred 4x5 crop (ratio clamped at 4/3)."""
    boxes = A.sample_params(50, 4, 400, cfg(), gen()).boxes
    assert (boxes == torch.tensor([0.0, 197.0, 4.0, 5.0])).all()
    boxes = A.sample_params(50, 400, 4, cfg(), gen()).boxes
    assert (boxes == torch.tensor([197.0, 0.0, 5.0, 4.0])).all()  # round(4 / (3/4)) = 5


def torchvision_boxes(n: int, height: int, width: int) -> torch.Tensor:
    """n boxes from torchvision's own RandomResizedCrop sampler: (n, 4) top, left, h, w."""
    torch.manual_seed(123)
    rrc = T.RandomResizedCrop(8)
    image = torch.empty(3, height, width)
    rows = [rrc.make_params([image]) for _ in range(n)]
    return torch.tensor([[r["top"], r["left"], r["height"], r["width"]] for r in rows], dtype=torch.float64)


@pytest.mark.parametrize("size", [32, 96])
def test_crop_statistics(size: int) -> None:
    """20k boxes: integer, inside the image, area/aspect in range, distributed like torchvision."""
    n = 20_000
    boxes = A.sample_params(n, size, size, cfg(), gen(2)).boxes.double()
    top, left, h, w = boxes.unbind(1)
    assert (boxes == boxes.round()).all()
    assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (top + h <= size).all() and (left + w <= size).all()
    # Before rounding, area in [0.08, 1] * H * W and w/h in [3/4, 4/3]; allow the +-0.5 rounding.
    area = size * size
    assert ((w + 0.5) * (h + 0.5) >= 0.08 * area).all() and ((w - 0.5) * (h - 0.5) <= area).all()
    assert ((w + 0.5) / (h - 0.5) >= 3 / 4).all() and ((w - 0.5) / (h + 0.5) <= 4 / 3).all()
    # Observed extremes reach the range.
    frac = w * h / area
    assert frac.min() < 0.09 and frac.max() == 1.0
    # Log-aspect roughly uniform over its range (acceptance thins the extremes a bit).
    log_aspect = torch.log(w / h)
    hist = torch.histc(log_aspect, bins=6, min=math.log(3 / 4), max=math.log(4 / 3))
    assert (hist > 0.5 * n / 6).all() and (hist < 1.5 * n / 6).all()
    # Distributions equal torchvision's sampler (KS), area fraction, log-aspect and position.
    ref = torchvision_boxes(2_000, size, size)
    rtop, rleft, rh, rw = ref.unbind(1)
    crit = ks_critical(n, ref.shape[0])
    assert ks_statistic(frac, rw * rh / area) < crit
    assert ks_statistic(log_aspect, torch.log(rw / rh)) < crit
    assert ks_statistic(top / (size - h + 1), rtop / (size - rh + 1)) < crit
    assert ks_statistic(left / (size - w + 1), rleft / (size - rw + 1)) < crit


def test_crop_offsets_reach_both_ends() -> None:
    """top ~ U{0..H-h} inclusive: P(top = H-h) = P(top = 0) = 1 / (H-h+1) per box."""
    size, n = 32, 20_000
    top, left, h, w = A.sample_params(n, size, size, cfg(), gen(3)).boxes.double().unbind(1)
    p = 1.0 / (size - h + 1)  # (n,) per-box probability of each end
    sd = (p * (1 - p)).sum().sqrt().item()
    for hits in (top == 0, top == size - h):
        assert abs(hits.sum().item() - p.sum().item()) < 4 * sd
    p = 1.0 / (size - w + 1)
    sd = (p * (1 - p)).sum().sqrt().item()
    for hits in (left == 0, left == size - w):
        assert abs(hits.sum().item() - p.sum().item()) < 4 * sd


# ------------------------------------------------------------------- coins and factors


@pytest.mark.parametrize("blur", [False, True])
def test_coin_rates(blur: bool) -> None:
    """Flip 0.5, jitter 0.8, grayscale 0.2, blur 0.5 only with blur=True; independent coins."""
    p = A.sample_params(20_000, 32, 32, cfg(blur=blur), gen(4))
    assert binomial_ok(p.flip, 0.5)
    assert binomial_ok(p.jitter, 0.8)
    assert binomial_ok(p.grayscale, 0.2)
    if blur:
        assert binomial_ok(p.blur, 0.5)
        assert binomial_ok(p.blur & p.flip, 0.25)  # independent, not one shared coin
    else:
        assert not p.blur.any()
    assert binomial_ok(p.jitter & p.grayscale, 0.16)
    assert p.sigma.min() >= 0.1 and p.sigma.max() <= 2.0
    assert p.sigma.min() < 0.11 and p.sigma.max() > 1.99


@pytest.mark.parametrize("s", [0.5, 1.0])
def test_jitter_factor_ranges(s: float) -> None:
    """Factors ~ U[max(0, 1-0.8s), 1+0.8s], hue ~ U[-0.2s, 0.2s], extremes approached."""
    p = A.sample_params(20_000, 32, 32, cfg(s=s), gen(5))
    lo, hi = max(0.0, 1 - 0.8 * s), 1 + 0.8 * s
    for name in ("brightness", "contrast", "saturation"):
        values = getattr(p, name)
        assert values.min() >= lo and values.max() <= hi, name
        assert values.min() < lo + 0.002 * (hi - lo) and values.max() > hi - 0.002 * (hi - lo), name
        assert abs(values.mean().item() - (lo + hi) / 2) < 0.01 * (hi - lo), name
    hue = p.hue
    assert hue.min() >= -0.2 * s and hue.max() <= 0.2 * s
    assert hue.min() < -0.2 * s * 0.995 and hue.max() > 0.2 * s * 0.995
    # Factors are drawn independently of each other.
    assert abs(torch.corrcoef(torch.stack((p.brightness, p.contrast)))[0, 1].item()) < 0.05


def test_jitter_range_clamps_at_zero() -> None:
    """With 0.8 s > 1 the lower factor bound is 0, as in torchvision."""
    assert A.jitter_ranges(cfg(s=2.0))["brightness"] == (0.0, 2.6)
    assert A.sample_params(5_000, 8, 8, cfg(s=2.0), gen()).contrast.min() >= 0.0


def test_jitter_order_is_uniform_permutation() -> None:
    """order is a permutation of 0..3 per sample, each of the 24 equally likely."""
    n = 24_000
    order = A.sample_params(n, 8, 8, cfg(), gen(6)).order
    assert order.dtype == torch.long
    assert (order.sort(dim=1).values == torch.arange(4)).all()
    codes = (order * torch.tensor([64, 16, 4, 1])).sum(1)
    counts = torch.bincount(codes, minlength=256)
    counts = counts[counts > 0]
    assert counts.numel() == 24
    expected = n / 24
    assert ((counts - expected).abs() < 5 * math.sqrt(expected)).all()


# ------------------------------------------------------------------ ops vs torchvision


def rand_images(batch: int, height: int, width: int, seed: int = 7) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=gen(seed))


def per_image(fn, images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.stack([fn(img, v.item()) for img, v in zip(images, values, strict=True)])


def test_grayscale_default_is_itu601_like_pil() -> None:
    """Default luma is PIL's convert('L') (ITU-R 601), up to PIL's 8-bit rounding."""
    assert A.LUMA_WEIGHTS == (0.299, 0.587, 0.114)
    img = torch.randint(0, 256, (1, 3, 16, 16), generator=gen(8), dtype=torch.uint8)
    pil = np.asarray(Image.fromarray(img[0].permute(1, 2, 0).numpy()).convert("L"))
    ours = A.rgb_to_grayscale(A.to_float(img))[0, 0] * 255
    assert (ours - torch.from_numpy(pil.astype(np.float32))).abs().max() <= 0.51
    # And within the 0.2989-vs-0.299 difference of torchvision's tensor kernel.
    torch.testing.assert_close(
        A.rgb_to_grayscale(A.to_float(img)), TF.rgb_to_grayscale(A.to_float(img)), atol=1.5e-4, rtol=0
    )


def test_color_ops_match_torchvision(tv_luma: None) -> None:
    """Batched per-sample brightness/contrast/saturation/hue/grayscale = torchvision per image."""
    images = rand_images(6, 13, 17)
    # Include a gray pixel and saturated colours, where HSV has its special cases.
    images[0, :, 0, 0] = 0.5
    images[1, :, 0, 0] = torch.tensor([1.0, 0.0, 0.0])
    images[1, :, 0, 1] = torch.tensor([0.0, 1.0, 1.0])
    images[2, :, 0, 0] = torch.tensor([1.0, 1.0, 0.0])
    factors = torch.tensor([0.0, 0.2, 0.9, 1.0, 1.5, 1.8])
    check = dict(atol=1e-5, rtol=0)
    pairs = [
        (A.adjust_brightness, TF.adjust_brightness),
        (A.adjust_contrast, TF.adjust_contrast),
        (A.adjust_saturation, TF.adjust_saturation),
    ]
    for ours, theirs in pairs:
        torch.testing.assert_close(ours(images, factors), per_image(theirs, images, factors), **check)
    shifts = torch.tensor([-0.2, -0.05, 0.0, 0.013, 0.1, 0.2])
    expected = per_image(TF.adjust_hue, images, shifts)
    torch.testing.assert_close(A.adjust_hue(images, shifts), expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(A.rgb_to_grayscale(images), TF.rgb_to_grayscale(images), **check)


def test_hue_roundtrip_and_full_turn() -> None:
    """A zero shift and a full turn leave images unchanged (the HSV conversions are inverses)."""
    images = rand_images(3, 9, 9, seed=9)
    torch.testing.assert_close(A.adjust_hue(images, torch.zeros(3)), images, atol=1e-6, rtol=0)
    torch.testing.assert_close(A.adjust_hue(images, torch.ones(3)), images, atol=1e-6, rtol=0)


@pytest.mark.parametrize("antialias", [False, True])
def test_resized_crop_flip_matches_torchvision_when_upscaling(antialias: bool) -> None:
    """Upscaling crops: grid_sample = resized_crop (+hflip), with or without antialiasing."""
    images = rand_images(5, 32, 40)
    boxes = torch.tensor([[0, 0, 32, 40], [3, 5, 10, 20], [20, 30, 12, 10], [0, 39, 1, 1], [7, 2, 25, 31]]).float()
    flip = torch.tensor([False, True, False, True, True])
    out = A.resized_crop_flip(images, boxes, flip, 56)  # (5, 3, 56, 56)
    for b in range(5):
        top, left, h, w = (int(v) for v in boxes[b])
        ref = TF.resized_crop(images[b], top, left, h, w, [56, 56], antialias=antialias)
        ref = TF.horizontal_flip(ref) if flip[b] else ref
        torch.testing.assert_close(out[b], ref, atol=2e-5, rtol=0)


def test_resized_crop_matches_non_antialiased_resize_when_downscaling() -> None:
    """Downscaling equals resized_crop(antialias=False): the documented difference is only antialias."""
    images = rand_images(3, 64, 64)
    boxes = torch.tensor([[0, 0, 64, 64], [5, 9, 50, 40], [10, 3, 33, 47]]).float()
    out = A.resized_crop_flip(images, boxes, torch.tensor([False, True, False]), 24)
    for b in range(3):
        ref = TF.resized_crop(images[b], *(int(v) for v in boxes[b]), [24, 24], antialias=False)
        ref = TF.horizontal_flip(ref) if b == 1 else ref
        torch.testing.assert_close(out[b], ref, atol=2e-5, rtol=0)


def test_blur_matches_torchvision() -> None:
    """Separable per-sample blur with reflect padding = torchvision's 2-D gaussian_blur."""
    images = rand_images(4, 30, 26)
    sigma = torch.tensor([0.1, 0.7, 1.3, 2.0])
    out = A.gaussian_blur(images, sigma, 23)
    for b in range(4):
        ref = TF.gaussian_blur(images[b], [23, 23], [sigma[b].item()] * 2)
        torch.testing.assert_close(out[b], ref, atol=1e-5, rtol=0)


def reference_view(image: torch.Tensor, p: AugmentParams, b: int, config: AugmentConfig) -> torch.Tensor:
    """The paper's pipeline on one image with sample b's parameters, in torchvision ops."""
    top, left, h, w = (int(v) for v in p.boxes[b])
    x = TF.resized_crop(image, top, left, h, w, [config.out_size] * 2, antialias=False)
    if p.flip[b]:
        x = TF.horizontal_flip(x)
    if p.jitter[b]:
        ops = [
            lambda im: TF.adjust_brightness(im, p.brightness[b].item()),
            lambda im: TF.adjust_contrast(im, p.contrast[b].item()),
            lambda im: TF.adjust_saturation(im, p.saturation[b].item()),
            lambda im: TF.adjust_hue(im, p.hue[b].item()),
        ]
        for op in p.order[b].tolist():
            x = ops[op](x)
    if p.grayscale[b]:
        x = TF.rgb_to_grayscale(x, num_output_channels=3)
    if p.blur[b]:
        x = TF.gaussian_blur(x, [config.blur_kernel] * 2, [p.sigma[b].item()] * 2)
    return x


@pytest.mark.parametrize("blur", [False, True])
def test_apply_params_matches_per_image_pipeline(tv_luma: None, blur: bool) -> None:
    """The whole batched view equals the per-image torchvision pipeline on the same draws."""
    config = cfg(out_size=36, s=1.0, blur=blur)
    images = rand_images(48, 24, 30, seed=10)
    p = A.sample_params(48, 24, 30, config, gen(11))
    # The draws exercise every branch: some samples with/without each op, and many orders.
    assert p.jitter.any() and (~p.jitter).any() and p.grayscale.any() and p.flip.any()
    assert len({tuple(o) for o in p.order[p.jitter].tolist()}) >= 10
    out = A.apply_params(images, p, config)
    ref = torch.stack([reference_view(images[b], p, b, config) for b in range(48)])
    torch.testing.assert_close(out, ref, atol=2e-4, rtol=0)


# ------------------------------------------------------------------------------- API


def test_augment_shape_dtype_range_and_batch_of_one() -> None:
    for batch in (1, 7):
        out = A.augment(rand_images(batch, 32, 32), cfg(out_size=48, blur=True), gen())
        assert out.shape == (batch, 3, 48, 48) and out.dtype == torch.float32
        assert out.min() >= 0.0 and out.max() <= 1.0


def test_reproducible_and_varied() -> None:
    """Same seed -> identical params and views; other seeds and other samples differ."""
    config, images = cfg(out_size=32, blur=True), rand_images(16, 32, 32)
    a, b = A.augment(images, config, gen(42)), A.augment(images, config, gen(42))
    assert torch.equal(a, b)
    pa, pb = A.sample_params(16, 32, 32, config, gen(42)), A.sample_params(16, 32, 32, config, gen(42))
    for field in ("boxes", "flip", "jitter", "brightness", "hue", "order", "grayscale", "blur", "sigma"):
        assert torch.equal(getattr(pa, field), getattr(pb, field)), field
    assert not torch.equal(a, A.augment(images, config, gen(43)))
    # The same image in every row still gives different views per row.
    same = images[:1].expand(16, -1, -1, -1)
    views = A.augment(same, config, gen(0))
    assert len({tuple(box) for box in pa.boxes.tolist()}) > 10
    assert (views[1:] - views[:1]).abs().flatten(1).amax(1).min() > 0.01
    # Two views from one generator are different (the generator advances).
    g = gen(5)
    assert not torch.equal(A.augment(images, config, g), A.augment(images, config, g))


def test_blur_flag_off_means_no_blur_work() -> None:
    """With blur=False the output equals the blur=True output where no sample blurs."""
    images = rand_images(8, 32, 32)
    p = A.sample_params(8, 32, 32, cfg(out_size=32, blur=True), gen(12))
    assert p.blur.any()
    unblurred = A.apply_params(images, p, cfg(out_size=32, blur=False))
    blurred = A.apply_params(images, p, cfg(out_size=32, blur=True))
    keep = ~p.blur
    assert torch.equal(unblurred[keep], blurred[keep])
    assert not torch.allclose(unblurred[p.blur], blurred[p.blur])


def test_eval_transform_matches_torchvision_resize() -> None:
    for size, out_size in ((32, 56), (64, 24), (24, 24)):
        images = rand_images(3, size, size)
        ref = TF.resize(images, [out_size, out_size], antialias=True)
        torch.testing.assert_close(A.eval_transform(images, out_size), ref, atol=1e-6, rtol=0)


def test_to_float_layouts() -> None:
    nhwc = torch.randint(0, 256, (2, 5, 7, 3), generator=gen(), dtype=torch.uint8)
    out = A.to_float(nhwc)
    assert out.shape == (2, 3, 5, 7) and out.dtype == torch.float32 and out.is_contiguous()
    torch.testing.assert_close(out, nhwc.permute(0, 3, 1, 2).float() / 255)
    torch.testing.assert_close(A.to_float(nhwc.permute(0, 3, 1, 2).contiguous()), out)
    assert A.to_float(torch.full((1, 2, 2, 3), 255, dtype=torch.uint8)).max() == 1.0
    with pytest.raises(ValueError):
        A.to_float(torch.zeros(2, 4, 5, 6, dtype=torch.uint8))


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        cfg(blur_kernel=22)
    with pytest.raises(ValueError):
        cfg(scale=(1.0, 0.5))
    with pytest.raises(ValueError):
        cfg(jitter_p=1.5)
    with pytest.raises(ValueError):
        cfg(out_size=8, blur=True)  # reflect padding of 11 needs > 11 pixels
    with pytest.raises(TypeError):
        A.apply_params(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), A.sample_params(1, 8, 8, cfg(), gen()), cfg())


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
def test_cuda_matches_cpu_and_never_syncs() -> None:
    """Same draws give the same views on CUDA; sampling and applying never sync with the host."""
    config = cfg(out_size=64, blur=True)
    images = rand_images(16, 32, 32)
    g = torch.Generator(device="cuda").manual_seed(0)
    gpu_images = images.cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        p = A.sample_params(16, 32, 32, config, g)
        out = A.apply_params(gpu_images, p, config)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert p.boxes.device.type == "cuda" and out.device.type == "cuda"
    ref = A.apply_params(images, p.to("cpu"), config)
    torch.testing.assert_close(out.cpu(), ref, atol=1e-4, rtol=0)


# ------------------------------------------------- whole pipeline vs torchvision, by statistics


def view_statistics(views: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-view summaries that each augmentation step moves: brightness, contrast, colourfulness."""
    chroma = views.amax(dim=1) - views.amin(dim=1)  # (N, S, S): 0 for gray pixels
    return {
        "mean": views.mean(dim=(1, 2, 3)),
        "std": views.std(dim=(1, 2, 3)),
        "chroma": chroma.mean(dim=(1, 2)),
        "red_minus_blue": (views[:, 0] - views[:, 2]).mean(dim=(1, 2)),
    }


def test_views_are_distributed_like_torchvision_pipeline(tv_luma: None) -> None:
    """The same source images through ours and through torchvision's per-image transforms: the
    distributions of each view's brightness, contrast and colour agree (two-sample KS)."""
    s, n_sources, draws = 1.0, 8, 100  # STL/ImageNet strength; 800 views per side
    # Smooth, coloured 32 px sources (upsampled 4x4 noise), so crops and jitter change them.
    sources = torch.nn.functional.interpolate(
        torch.rand(n_sources, 3, 4, 4, generator=gen(21)), size=(32, 32), mode="bilinear", align_corners=False
    )
    images = sources.repeat(draws, 1, 1, 1)  # (N, 3, 32, 32)
    config = AugmentConfig(24, s, blur=False)
    ours = A.augment(images, config, gen(22))
    torch.manual_seed(23)
    reference = T.Compose(
        [
            T.RandomResizedCrop(24, antialias=False),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
            T.RandomGrayscale(p=0.2),
        ]
    )
    theirs = torch.stack([reference(image) for image in images])
    crit = ks_critical(len(images), len(images), c_alpha=1.95)  # 0.1 % false alarms per stat
    ours_stats, their_stats = view_statistics(ours), view_statistics(theirs)
    for name in ours_stats:
        assert ks_statistic(ours_stats[name], their_stats[name]) < crit, name
    # Sanity of the test itself: without colour jitter the chroma distribution must differ.
    plain = A.augment(images, AugmentConfig(24, 0.0, blur=False, grayscale_p=0.0), gen(24))
    assert ks_statistic(view_statistics(plain)["chroma"], their_stats["chroma"]) > crit
