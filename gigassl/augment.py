"""The tile-level augmentation domain A (Sec. 3.1, Step 1), on batches of tensors.

"Two augmentation functions t1 and t2 are sampled from an image augmentation domain A made of color augmentations
(color jitter, grayscale) and geometric augmentations (flips, rotations, scaling, blurring)." The values are the
authors' (kornia): random resized crop with scale (0.5, 1); colour jitter of brightness/contrast/saturation/hue
0.4/0.4/0.4/0.2 with p 0.8; grayscale p 0.2; 5x5 Gaussian blur, sigma in [0.1, 1], p 0.5; plus flips and 90-degree
rotations (the paper lists them; the authors' code did not apply them).

Two modes:
- ``shared``: one random draw is applied to every tile of an augmentation draw (the paper's method, Sec. 3.2);
- ``independent``: every tile gets its own draw (the "NS" ablation of Table 3).

The jitter is applied in a fixed order (brightness, contrast, saturation, hue); brightness and contrast follow
torchvision's multiplicative definitions, the hue shift is a rotation of the HSV hue by up to +-0.2 turns. The colour
operations and the blur compute what kornia 0.9's functional ops compute, to the bit (tests/test_augment.py checks
it), in fewer passes over the pixels (``benchmarks/profile_bank.py`` times each step).
Randomness comes only from the ``torch.Generator`` passed in: the parameters are drawn on the CPU from that generator
and applied on the device of the tiles, so a draw is the same on every device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import kornia
import torch
import torch.nn.functional as F

from .config import AugmentConfig
from .devices import resize


@dataclass
class Draw:
    """The parameters of n tile augmentations (one row per tile; identical rows in shared mode).

    Shapes: ``box`` (n, 4) relative (x0, y0, w, h); every other field (n,).
    """

    box: torch.Tensor
    hflip: torch.Tensor
    vflip: torch.Tensor
    rot90: torch.Tensor
    jitter: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    gray: torch.Tensor
    blur: torch.Tensor
    sigma: torch.Tensor


class TileAugmentation:
    """Samples and applies tile augmentations.

    Shape: ``__call__(x (n, 3, H, W) float in [0, 1], generator)`` -> (n, 3, out_px, out_px).

    >>> aug = TileAugmentation(AugmentConfig(mode="shared"), out_px=64)
    >>> y = aug(torch.rand(8, 3, 64, 64), torch.Generator().manual_seed(0))
    """

    def __init__(self, config: AugmentConfig, out_px: int):
        self.config = config
        self.out_px = int(out_px)

    def sample(self, n: int, generator: torch.Generator, shared: bool | None = None) -> Draw:
        """Draw parameters for ``n`` tiles: one draw repeated (shared) or ``n`` independent draws."""
        shared = self.config.mode == "shared" if shared is None else shared
        m = 1 if shared else n
        cfg = self.config

        def uniform(low: float, high: float) -> torch.Tensor:
            return low + (high - low) * torch.rand(m, generator=generator)

        def bernoulli(p: float) -> torch.Tensor:
            return torch.rand(m, generator=generator) < p

        scale = uniform(*cfg.crop_scale)
        log_ratio = uniform(math.log(3 / 4), math.log(4 / 3))
        w = torch.sqrt(scale * torch.exp(log_ratio)).clamp(max=1.0)
        h = torch.sqrt(scale / torch.exp(log_ratio)).clamp(max=1.0)
        box = torch.stack([uniform(0, 1) * (1 - w), uniform(0, 1) * (1 - h), w, h], dim=1)
        draw = Draw(
            box=box,
            hflip=bernoulli(0.5 if cfg.flips else 0.0),
            vflip=bernoulli(0.5 if cfg.flips else 0.0),
            rot90=torch.randint(0, 4 if cfg.rot90 else 1, (m,), generator=generator),
            jitter=bernoulli(cfg.p_jitter),
            brightness=uniform(max(0.0, 1 - cfg.brightness), 1 + cfg.brightness),
            contrast=uniform(max(0.0, 1 - cfg.contrast), 1 + cfg.contrast),
            saturation=uniform(max(0.0, 1 - cfg.saturation), 1 + cfg.saturation),
            hue=uniform(-cfg.hue, cfg.hue),
            gray=bernoulli(cfg.p_grayscale),
            blur=bernoulli(cfg.p_blur),
            sigma=uniform(*cfg.blur_sigma),
        )
        if shared and n != 1:
            draw = Draw(**{k: v.expand(n, *v.shape[1:]) for k, v in vars(draw).items()})
        return draw

    def __call__(self, x: torch.Tensor, generator: torch.Generator, shared: bool | None = None) -> torch.Tensor:
        return self.apply(x, self.sample(len(x), generator, shared))

    def apply(self, x: torch.Tensor, draw: Draw) -> torch.Tensor:
        """Apply ``draw`` (one row per tile) to ``x`` (n, 3, H, W) float in [0, 1]."""
        for _, step in self.steps(draw):
            x = step(x)
        return x

    def steps(self, draw: Draw) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
        """The steps of :meth:`apply`, in order and named (``benchmarks/profile_bank.py`` times each)."""
        k = self.config.blur_kernel
        return [
            ("crop and resize", lambda x: self._crop_resize(x, draw.box)),
            ("flips and rotations", lambda x: self._flips(x, draw)),
            ("colour jitter", lambda x: _select(x, draw.jitter, lambda t, idx: self._jitter(t, draw, idx))),
            ("grayscale", lambda x: _select(
                x, draw.gray, lambda t, _: kornia.color.rgb_to_grayscale(t).expand(-1, 3, -1, -1))),
            ("blur", lambda x: _select(x, draw.blur, lambda t, idx: gaussian_blur(t, k, draw.sigma[idx].to(t)))),
            ("clamp", lambda x: x.clamp(0.0, 1.0)),
        ]

    @staticmethod
    def _flips(x: torch.Tensor, draw: Draw) -> torch.Tensor:
        x = _select(x, draw.hflip, lambda t, _: t.flip(-1))
        x = _select(x, draw.vflip, lambda t, _: t.flip(-2))
        for k in (1, 2, 3):
            x = _select(x, draw.rot90 == k, lambda t, _, k=k: torch.rot90(t, k, dims=(-2, -1)))
        return x

    def _crop_resize(self, x: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        px = torch.stack([box[:, 0] * width, box[:, 1] * height, box[:, 2] * width, box[:, 3] * height], 1)
        px = px.round().long()
        px[:, 2:] = px[:, 2:].clamp(min=1)
        if len(x) == 0:
            return x.new_zeros((0, 3, self.out_px, self.out_px))
        if bool((px == px[:1]).all()):  # one box for all tiles (shared mode): one resize
            return self._resize(x, px[0])
        return torch.cat([self._resize(x[i:i + 1], px[i]) for i in range(len(x))])

    def _resize(self, x: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        x0, y0, w, h = (int(v) for v in box)
        return resize(x[..., y0:y0 + h, x0:x0 + w], self.out_px)

    @staticmethod
    def _jitter(x: torch.Tensor, draw: Draw, idx: torch.Tensor) -> torch.Tensor:
        def factor(values: torch.Tensor) -> torch.Tensor:
            return values[idx].to(x)

        x = x * factor(draw.brightness).view(-1, 1, 1, 1)
        x = adjust_contrast(x.clamp_(0, 1), factor(draw.contrast))
        x = adjust_saturation(x, factor(draw.saturation)).clamp_(0, 1)
        return adjust_hue(x, factor(draw.hue) * 2 * math.pi).clamp_(0, 1)


def _select(x: torch.Tensor, mask: torch.Tensor, fn) -> torch.Tensor:
    """Apply ``fn(x[mask], indices)`` to the tiles where ``mask`` holds (all at once when it holds everywhere)."""
    if not bool(mask.any()):
        return x
    if bool(mask.all()):
        return fn(x, torch.arange(len(x)))
    idx = torch.nonzero(mask).squeeze(1)
    out = x.clone()
    out[idx] = fn(x[idx], idx)
    return out


# The colour operations below compute, operation for operation, what kornia 0.9's functional ops compute on float32
# tiles (adjust_contrast_with_mean_subtraction, adjust_saturation, rgb_to_hsv -> adjust_hue_raw -> hsv_to_rgb), so
# their results are the same to the bit, in fewer passes over the pixels: the channel maximum and minimum as two
# elementwise maxima instead of reductions over the channel axis, the hue's sextant selected by one gather instead
# of fifteen nested ``where``, temporaries updated in place.

def _max_min(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The largest and smallest of the three channels. Shape: (n, 3, H, W) -> (n, H, W) twice."""
    r, g, b = x.unbind(-3)
    high, low = torch.maximum(r, g), torch.minimum(r, g)
    return torch.maximum(high, b, out=high), torch.minimum(low, b, out=low)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Contrast around each tile's mean grey level, clamped to [0, 1]. Shapes: x (n, 3, H, W), factor (n,)."""
    factor = factor.view(-1, 1, 1, 1)
    mean = kornia.color.rgb_to_grayscale(x).mean((-2, -1), True)
    out = x * factor
    return out.add_(mean * (1 - factor)).clamp_(0.0, 1.0)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """HSV saturation scaled by ``factor`` (clamped to [0, 1]), hue and value kept: each channel's distance to the
    smallest channel scaled. Shapes: x (n, 3, H, W) float32, factor (n,)."""
    high, low = (v.unsqueeze(-3) for v in _max_min(x))
    delta = high - low
    saturation = torch.add(high, 1e-8).masked_fill_(high == 0, 1.0)
    saturation = torch.div(delta, saturation, out=saturation).mul_(factor.view(-1, 1, 1, 1)).clamp_(0, 1)
    adjusted = saturation.mul_(high)
    ratio = torch.div(adjusted, delta.masked_fill_(delta == 0, 1.0), out=delta)
    return (x - low).mul_(ratio).add_(high.sub_(adjusted))


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """The HSV hue rotated by ``shift`` radians (rgb -> hsv, shift modulo 2 pi, hsv -> rgb).

    Shapes: x (n, 3, H, W) float32 in [0, 1], shift (n,) in [-pi, pi] -> (n, 3, H, W).

    kornia's ``%`` (``torch.remainder``: an exact ``fmod``, then ``+ divisor`` for a negative remainder) is written
    as what it does on the ranges it sees here: h / 6 in (-1, 1), the shifted hue in (-pi, 3 pi), 6 h / 2 pi in
    [0, 6]; subtracting the divisor from a value between it and twice it is exact, so the values are the same.
    hsv -> rgb: each channel is v (1 - w s), w being 0 (v), 1 (p), f (q) or 1 - f (t) by the channel's sextant
    table; w is computed instead of selected: in the sextants where it is f or 1 - f, h6 - k and k - h6 are
    exact (Sterbenz) and equal kornia's f and 1 - f to the bit; elsewhere the clamp gives 0 or 1 exactly.
    Temporaries are updated in place (a fresh tensor costs more than the arithmetic on small tiles).
    """
    two_pi = 2 * math.pi
    r, g, b = x.unbind(-3)
    value, low = _max_min(x)
    delta = low.neg_().add_(value)  # value - low
    saturation = torch.add(value, 1e-8).masked_fill_(value == 0, 1.0)
    saturation = torch.div(delta, saturation, out=saturation)
    delta.masked_fill_(delta == 0, 1.0)
    rc, gc, bc = value - r, value - g, value - b
    hue = bc - gc  # r is the largest
    h3 = gc.sub_(rc).add_(delta, alpha=4.0)  # b is
    h2 = rc.sub_(bc).add_(delta, alpha=2.0)  # g is
    h2 = torch.where(g >= b, h2, h3, out=h2)
    hue = torch.where((r >= g).logical_and_(r >= b), hue, h2, out=hue)
    hue = hue.div_(delta).div_(6.0)
    hue = hue.add_(hue < 0).mul_(two_pi)  # (h / 6) % 1 for h / 6 in (-1, 1)
    hue.masked_fill_(hue >= two_pi, 0.0)
    hue = hue.add_(shift.view(-1, 1, 1))
    hue = hue.add_(hue >= two_pi, alpha=-two_pi).add_(hue < 0, alpha=two_pi)  # % 2 pi in (-pi, 3 pi)
    hue.masked_fill_(hue >= two_pi, 0.0)
    # hsv -> rgb
    h6 = hue.div_(two_pi).mul_(6)
    h6.masked_fill_(h6 >= 6, 0.0)  # h6 % 6
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    # w of r (v q p p t v): min(h6 - 1, 5 - h6); of g (t v v q p p): max(1 - h6, h6 - 3); of b (p p t v v q):
    # max(3 - h6, h6 - 5); clamped to [0, 1]; then v (1 - w s), with 1 - a as -a + 1 (the same rounding)
    w, other = torch.empty_like(h6), torch.empty_like(h6)
    for channel, (pick, (up, down)) in enumerate(((torch.minimum, (1.0, 5.0)), (torch.maximum, (3.0, 1.0)),
                                                  (torch.maximum, (5.0, 3.0)))):
        pick(torch.sub(h6, up, out=w), torch.neg(h6, out=other).add_(down), out=w)
        torch.mul(value, w.clamp_(0.0, 1.0).mul_(saturation).neg_().add_(1.0), out=out[:, channel])
    return out


def gaussian_blur(x: torch.Tensor, kernel_size: int, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur with reflected borders, one sigma per tile: kornia's ``gaussian_blur2d(x, (k, k), sigma)``.

    On the CPU, each of the two separable passes is a sum of shifted copies of the tile weighted by kornia's taps,
    accumulated in order (the depthwise convolution kornia runs computes the same sums, to the bit, at several
    times the cost on small tiles); on other devices, kornia's. Shapes: x (n, 3, H, W), sigma (n,) -> x's shape.
    """
    if x.device.type != "cpu":
        return kornia.filters.gaussian_blur2d(x, (kernel_size, kernel_size),
                                              sigma.unsqueeze(1).expand(-1, 2).contiguous())
    taps = kornia.filters.get_gaussian_kernel1d(kernel_size, sigma.view(-1, 1)).view(len(sigma), -1, 1, 1, 1)
    radius = kernel_size // 2
    for axis, pad in ((-1, (radius, radius, 0, 0)), (-2, (0, 0, radius, radius))):
        size = x.shape[axis]
        padded = F.pad(x, pad, mode="reflect")
        out = padded.narrow(axis, 0, size) * taps[:, 0]
        for tap in range(1, kernel_size):
            out.addcmul_(padded.narrow(axis, tap, size), taps[:, tap])
        x = out
    return x.contiguous()
