"""The tile augmentation domain: shared vs independent draws (Sec. 3.1 Step 1, Table 3 "NS")."""

import dataclasses
import math

import pytest
import torch

from gigassl.augment import TileAugmentation
from gigassl.config import AugmentConfig, ConfigError


def _same_tiles(n=16, px=32):
    return torch.rand(1, 3, px, px, generator=torch.Generator().manual_seed(0)).expand(n, 3, px, px).contiguous()


def test_shared_draw_keeps_identical_tiles_identical():
    aug = TileAugmentation(AugmentConfig(mode="shared"), out_px=32)
    for seed in range(5):
        y = aug(_same_tiles(), torch.Generator().manual_seed(seed))
        assert y.shape == (16, 3, 32, 32)
        torch.testing.assert_close(y, y[:1].expand_as(y), rtol=0, atol=0)


def test_independent_draws_make_identical_tiles_differ():
    aug = TileAugmentation(AugmentConfig(mode="independent"), out_px=32)
    y = aug(_same_tiles(), torch.Generator().manual_seed(0))
    distinct = {tuple(t.flatten()[:64].tolist()) for t in y}
    assert len(distinct) >= 12


def test_draws_are_reproducible_and_in_range():
    aug = TileAugmentation(AugmentConfig(), out_px=24)
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    a = aug(x, torch.Generator().manual_seed(7))
    b = aug(x, torch.Generator().manual_seed(7))
    c = aug(x, torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    assert a.shape == (8, 3, 24, 24) and a.min() >= 0 and a.max() <= 1


def test_geometry_only_draw_is_a_flip_or_rotation_of_the_input():
    config = AugmentConfig(p_jitter=0, p_grayscale=0, p_blur=0, crop_scale=(1.0, 1.0))
    aug = TileAugmentation(config, out_px=16)
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    draw = aug.sample(4, torch.Generator().manual_seed(3), shared=False)
    draw.box = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(4, 1)  # no crop
    y = aug.apply(x, draw)
    for i in range(4):
        candidates = []
        for flip_h in (False, True):
            for flip_v in (False, True):
                t = x[i]
                t = t.flip(-1) if flip_h else t
                t = t.flip(-2) if flip_v else t
                candidates += [torch.rot90(t, k, dims=(-2, -1)) for k in range(4)]
        assert any(torch.allclose(y[i], c, atol=1e-6) for c in candidates)


def test_grayscale_draw_has_equal_channels_and_jitter_changes_colour():
    gray = TileAugmentation(AugmentConfig(p_grayscale=1.0, p_jitter=0, p_blur=0), out_px=16)
    y = gray(torch.rand(3, 3, 16, 16), torch.Generator().manual_seed(0))
    torch.testing.assert_close(y[:, 0], y[:, 1]) and torch.testing.assert_close(y[:, 1], y[:, 2])
    jitter = TileAugmentation(AugmentConfig(p_jitter=1.0, p_grayscale=0, p_blur=0, flips=False, rot90=False,
                                            crop_scale=(1.0, 1.0)), out_px=16)
    x = torch.full((2, 3, 16, 16), 0.5)
    x[:, 0] = 0.8
    assert not torch.allclose(jitter(x, torch.Generator().manual_seed(1)).mean((2, 3)), x.mean((2, 3)), atol=1e-3)


def test_unknown_mode_is_refused():
    with pytest.raises(ConfigError, match=r"AugmentConfig.mode=.sometimes. is not allowed: it must be one of .shared., .independent."):
        TileAugmentation(dataclasses.replace(AugmentConfig(), mode="sometimes"), 16)


def _colour_tiles(n=24, px=20):
    """Tiles from uint8 values, with the cases the HSV code branches on: black, white, grey pixels, ties between
    channels, one channel at 0 or 1."""
    g = torch.Generator().manual_seed(5)
    x = torch.randint(0, 256, (n, px, px, 3), dtype=torch.uint8, generator=g).permute(0, 3, 1, 2).float().div_(255)
    x[0] = 0.0
    x[1] = 1.0
    x[2] = x[2, :1]  # grey
    x[3, 1] = x[3, 0]  # r == g
    x[4, 2] = x[4, 1]  # g == b
    x[5, 0] = 1.0
    x[6, 2] = 0.0
    return x


def _same_as_kornia(ours, theirs):
    from importlib.metadata import version

    if version("kornia").startswith("0.9."):  # the arithmetic written after kornia 0.9's: equal to the bit
        assert torch.equal(ours, theirs)
    else:
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_colour_operations_compute_what_kornia_computes():
    import kornia

    from gigassl.augment import adjust_contrast, adjust_hue, adjust_saturation

    x = _colour_tiles()
    g = torch.Generator().manual_seed(6)
    factor = 0.6 + 0.8 * torch.rand(len(x), generator=g)
    shift = (torch.rand(len(x), generator=g) * 2 - 1) * math.pi  # the widest range (hue 0.5)
    shift[:2] = torch.tensor([math.pi, -math.pi])
    _same_as_kornia(adjust_contrast(x, factor), kornia.enhance.adjust_contrast_with_mean_subtraction(x, factor))
    _same_as_kornia(adjust_saturation(x, factor), kornia.enhance.adjust_saturation(x, factor))
    _same_as_kornia(adjust_hue(x, shift), kornia.enhance.adjust_hue(x, shift))
    assert torch.equal(x, _colour_tiles())  # the input is left as it was


@pytest.mark.parametrize("kernel", [3, 5])
def test_blur_computes_what_kornias_convolution_computes(kernel):
    import kornia

    from gigassl.augment import gaussian_blur

    x = _colour_tiles(px=24)
    sigma = 0.1 + 0.9 * torch.rand(len(x), generator=torch.Generator().manual_seed(7))
    for s in (sigma, sigma[:1].expand(len(x))):  # one sigma per tile (independent), one for all (shared)
        theirs = kornia.filters.gaussian_blur2d(x, (kernel, kernel), s.unsqueeze(1).expand(-1, 2).contiguous())
        _same_as_kornia(gaussian_blur(x, kernel, s), theirs)
