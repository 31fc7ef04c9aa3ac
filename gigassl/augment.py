"""The tile-level augmentation domain A (Sec. 3.1, Step 1), on batches of tensors with kornia's colour ops.

"Two augmentation functions t1 and t2 are sampled from an image augmentation domain A made of color augmentations
(color jitter, grayscale) and geometric augmentations (flips, rotations, scaling, blurring)." The values are the
authors' (kornia): random resized crop with scale (0.5, 1); colour jitter of brightness/contrast/saturation/hue
0.4/0.4/0.4/0.2 with p 0.8; grayscale p 0.2; 5x5 Gaussian blur, sigma in [0.1, 1], p 0.5; plus flips and 90-degree
rotations (the paper lists them; the authors' code did not apply them).

Two modes:
- ``shared``: one random draw is applied to every tile of an augmentation draw (the paper's method, Sec. 3.2);
- ``independent``: every tile gets its own draw (the "NS" ablation of Table 3).

The jitter is applied in a fixed order (brightness, contrast, saturation, hue); brightness and contrast follow
torchvision's multiplicative definitions, the hue shift is a rotation of the HSV hue by up to +-0.2 turns.
Randomness comes only from the ``torch.Generator`` passed in: the parameters are drawn on the CPU from that generator
and applied on the device of the tiles, so a draw is the same on every device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import kornia
import torch

from .config import AugmentConfig
from .utils import resize


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
        x = self._crop_resize(x, draw.box)
        x = _select(x, draw.hflip, lambda t, _: t.flip(-1))
        x = _select(x, draw.vflip, lambda t, _: t.flip(-2))
        for k in (1, 2, 3):
            x = _select(x, draw.rot90 == k, lambda t, _, k=k: torch.rot90(t, k, dims=(-2, -1)))
        x = _select(x, draw.jitter, lambda t, idx: self._jitter(t, draw, idx))
        x = _select(x, draw.gray, lambda t, _: kornia.color.rgb_to_grayscale(t).expand(-1, 3, -1, -1))
        k = self.config.blur_kernel
        x = _select(x, draw.blur, lambda t, idx: kornia.filters.gaussian_blur2d(
            t, (k, k), draw.sigma[idx].to(t).unsqueeze(1).expand(-1, 2).contiguous()))
        return x.clamp(0.0, 1.0)

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

        x = (x * factor(draw.brightness).view(-1, 1, 1, 1)).clamp(0, 1)
        x = kornia.enhance.adjust_contrast_with_mean_subtraction(x, factor(draw.contrast)).clamp(0, 1)
        x = kornia.enhance.adjust_saturation(x, factor(draw.saturation)).clamp(0, 1)
        return kornia.enhance.adjust_hue(x, factor(draw.hue) * 2 * math.pi).clamp(0, 1)


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
