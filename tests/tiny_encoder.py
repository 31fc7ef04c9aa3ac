"""A user tile encoder for the tests of ``--encoder module:factory`` (gigassl.encoders)."""

from torch import nn


class TinyEncoder(nn.Module):
    """Two convolutions and a global mean: (B, 3, H, W) -> (B, 24); expects 48-px tiles (``input_px``)."""

    input_px = 48
    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 12, 3, 2, 1), nn.ReLU(), nn.Conv2d(12, 24, 3, 2, 1), nn.ReLU())

    def forward(self, x):
        return self.body(x)  # a feature map (B, 24, h, w): the tile embedder averages it


def build() -> TinyEncoder:
    return TinyEncoder()


def not_a_module():
    return "nope"


# ---------------------------------------------------------------- user factories that go wrong (gigassl.encoders)
def raises():
    raise RuntimeError("the weights server is down")


def needs_argument(size):
    return TinyEncoder()


NOT_CALLABLE = 3


class _FirstRowOnly(TinyEncoder):
    def forward(self, x):
        return super().forward(x)[:1]  # one row whatever the batch: a wrong batch size


def wrong_batch() -> nn.Module:
    return _FirstRowOnly()


class _NaN(TinyEncoder):
    def forward(self, x):
        return super().forward(x) * float("nan")


def nan_features() -> nn.Module:
    return _NaN()
