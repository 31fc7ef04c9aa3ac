"""The tile embedder: torchvision names, the layer3 cut, checkpoint layouts, the ImageNet encoder."""

import pytest
import torch

from gigassl.aggregators import SparseConvAggregator
from gigassl.config import EncoderConfig
from gigassl.encoders import Embedding, ResNet18, build_embedder, clean_state_dict
from gigassl.errors import ConfigError, GigasslError
from gigassl.files import sha256_file

# torchvision's resnet18 parameter and buffer names (122 entries), generated from its module tree.
def _torchvision_keys():
    keys = ["conv1.weight"] + [f"bn1.{b}" for b in ("weight", "bias", "running_mean", "running_var",
                                                     "num_batches_tracked")]
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    for layer in range(1, 5):
        for block in range(2):
            p = f"layer{layer}.{block}."
            keys += [p + "conv1.weight"] + [p + "bn1." + b for b in bn] + [p + "conv2.weight"] + [p + "bn2." + b for b in bn]
            if layer > 1 and block == 0:
                keys += [p + "downsample.0.weight"] + [p + "downsample.1." + b for b in bn]
    return keys + ["fc.weight", "fc.bias"]


def test_parameter_names_are_torchvisions():
    names = list(ResNet18().state_dict())
    assert names == _torchvision_keys() and len(names) == 122


def test_embedder_is_the_layer3_output_averaged():
    embedder = build_embedder(EncoderConfig(seed=3))
    net = embedder.network.eval()
    captured = {}
    net.layer3.register_forward_hook(lambda module, inp, out: captured.setdefault("layer3", out))
    tiles = torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8)
    x = (tiles.permute(0, 3, 1, 2).float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        net(x)  # the full ResNet18 forward
        reference = captured["layer3"].mean(dim=(2, 3))
        out = embedder(tiles)
    assert out.shape == (4, 256)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
    embedding = Embedding(embedder, "cpu", precision="fp32")
    assert embedding.precision == "fp32"
    torch.testing.assert_close(embedding(tiles), reference, rtol=1e-4, atol=1e-4)
    # bfloat16 autocast: the same embedding to about the third significant digit
    low = Embedding(embedder, "cpu", precision="bf16")
    assert low.precision == "bf16"
    out = low(tiles)
    assert out.dtype == torch.float32 and float((out - reference).norm() / reference.norm()) < 3e-2


def test_precision_resolution():
    from gigassl.errors import ConfigError
    from gigassl.devices import autocast_dtype

    assert autocast_dtype("cpu", "fp32") is None and autocast_dtype("cuda", "fp32") is None
    assert autocast_dtype("cpu", "bf16") is torch.bfloat16
    assert autocast_dtype("cuda:1", "auto") is torch.bfloat16  # GPUs: bfloat16 (as before this option existed)
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert autocast_dtype("cpu", "auto") is (torch.bfloat16 if native else None)
    with pytest.raises(ConfigError, match="precision='fp16' is not allowed: it must be one of"):
        autocast_dtype("cpu", "fp16")


def test_torchvision_and_moco_layouts_load_identically(tmp_path):
    source = ResNet18()
    with torch.no_grad():
        for p in source.parameters():
            p.normal_(generator=torch.Generator().manual_seed(1))
    torch.save(source.state_dict(), tmp_path / "tv.pth")
    moco = {f"module.encoder_q.{k}": v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    moco.update({"module.encoder_q.fc.0.weight": torch.zeros(512, 512), "module.encoder_k.conv1.weight": torch.ones(1),
                 "module.queue": torch.zeros(128, 16)})
    torch.save({"state_dict": moco, "epoch": 200, "arch": "resnet18"}, tmp_path / "moco.pth.tar")
    tiles = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    a = build_embedder(EncoderConfig(weights=str(tmp_path / "tv.pth")))
    b = build_embedder(EncoderConfig(weights=str(tmp_path / "moco.pth.tar")))
    with torch.no_grad():
        torch.testing.assert_close(a(tiles), b(tiles), rtol=0, atol=0)
    assert a.weights_id != build_embedder(EncoderConfig()).weights_id
    assert "queue" not in clean_state_dict({"state_dict": moco})
    layer4 = b.layer4_state_dict()
    SparseConvAggregator().load_dense_layer4(layer4)  # the aggregator accepts the embedder's layer4
    torch.testing.assert_close(layer4["1.conv2.weight"], source.layer4[1].conv2.weight)


def test_random_init_is_seeded():
    tiles = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        same = build_embedder(EncoderConfig(seed=5))(tiles), build_embedder(EncoderConfig(seed=5))(tiles)
        other = build_embedder(EncoderConfig(seed=6))(tiles)
    torch.testing.assert_close(*same)
    assert not torch.allclose(same[0], other)


def test_bad_weights_are_reported(tmp_path):
    with pytest.raises(GigasslError, match="does not exist"):
        build_embedder(EncoderConfig(weights=str(tmp_path / "none.pt")))
    torch.save({"state_dict": {"conv1.weight": torch.zeros(64, 3, 7, 7)}}, tmp_path / "partial.pt")
    with pytest.raises(GigasslError, match="lacks .* ResNet18 parameters"):
        build_embedder(EncoderConfig(weights=str(tmp_path / "partial.pt")))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(GigasslError, match="not a readable torch checkpoint"):
        build_embedder(EncoderConfig(weights=str(tmp_path / "junk.pt")))


def test_imagenet_efficientnet_lite0_works_offline():
    embedder = build_embedder(EncoderConfig(name="efficientnet_lite0"))
    with torch.no_grad():
        out = embedder(torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8))
    assert out.shape == (2, 1280) and embedder.out_dim == 1280 and torch.isfinite(out).all()
    assert embedder.layer4_state_dict() is None and len(embedder.weights_id) == 64


def test_a_user_encoder_module_factory_builds_a_bank_trains_and_embeds(tmp_path, cohort, coords_dir):
    import dataclasses

    import torch

    from gigassl import io
    from gigassl.bank import build_bank
    from gigassl.config import EmbedConfig, MapConfig, TrainConfig
    from gigassl.embed import embed_slides
    from gigassl.train import train

    from .conftest import SMOKE, TINY_BANK

    name = "tests.tiny_encoder:build"
    embedder = build_embedder(EncoderConfig(name=name))
    assert embedder.out_dim == 24 and embedder.input_px == 48 and embedder.weights_id.startswith("params-")
    assert embedder(torch.zeros(2, 32, 32, 3, dtype=torch.uint8)).shape == (2, 24)  # 32-px tiles resized to 48
    assert build_embedder(EncoderConfig(name=name)).weights_id == embedder.weights_id  # seeded: same parameters
    weights = tmp_path / "tiny.pt"
    torch.save(build_embedder(EncoderConfig(name=name, seed=3)).network.state_dict(), weights)
    loaded = build_embedder(EncoderConfig(name=name, weights=str(weights)))
    assert loaded.weights_id == sha256_file(weights) and loaded.weights_id != embedder.weights_id
    encoder = dataclasses.replace(SMOKE.encoder, name=name, weights=str(weights))
    report = build_bank(cohort, coords_dir, tmp_path / "bank", TINY_BANK, encoder, SMOKE.augment, progress=False)
    assert report.ok, report.summary()
    attrs = io.read_bank_attrs(next((tmp_path / "bank").glob("*.h5")))
    assert attrs["encoder"] == name and attrs["weights_sha256"] == sha256_file(weights) and attrs["feature_dim"] == 24
    config = TrainConfig(epochs=1, batch_size=4, warmup_epochs=0, device="cpu", maps=MapConfig(downsample="tile"))
    checkpoint = train(tmp_path / "bank", tmp_path / "ssl", config, progress=False)
    out = embed_slides(tmp_path / "bank", checkpoint, tmp_path / "e.h5", EmbedConfig(views=3, device="cpu"),
                       progress=False)
    assert io.read_embeddings(out)[1].shape == (6, 512)


def test_user_encoder_errors_name_the_fix():
    with pytest.raises(ConfigError, match="cannot import nothing from tests.tiny_encoder"):
        build_embedder(EncoderConfig(name="tests.tiny_encoder:nothing"))
    with pytest.raises(ConfigError, match="returned a str; it must return a torch.nn.Module"):
        build_embedder(EncoderConfig(name="tests.tiny_encoder:not_a_module"))
    with pytest.raises(ConfigError, match="module:factory for your own encoder"):
        EncoderConfig(name="uni")


def test_the_registry_describes_the_built_in_encoders():
    from gigassl.encoders import REGISTRY, encoder_spec

    resnet = build_embedder(EncoderConfig())
    spec = REGISTRY["resnet18"]
    assert spec.feature_dim == resnet.out_dim == 256 and spec.input_px is None
    assert tuple(resnet.mean.flatten().tolist()) == pytest.approx(spec.mean)
    assert encoder_spec("tests.tiny_encoder:build").feature_dim is None  # known once built (24)
    with pytest.raises(ConfigError, match="encoder='uni' is not allowed"):
        encoder_spec("uni")


# ------------------------------------------------------------------ #25: user code and weights files, named
@pytest.mark.parametrize("factory, named", [
    ("raises", r"raises\(\) raised RuntimeError: the weights server is down\. Expected a function of no arguments"),
    ("needs_argument", r"needs_argument\(\) raised TypeError: .*missing 1 required positional argument"),
    ("NOT_CALLABLE", r"tests.tiny_encoder.NOT_CALLABLE is a int, not a function"),
])
def test_a_factory_that_fails_is_named_with_what_was_expected(factory, named):
    from gigassl.errors import UserCodeError

    with pytest.raises(UserCodeError, match=named) as err:
        build_embedder(EncoderConfig(name=f"tests.tiny_encoder:{factory}"))
    assert f"tests.tiny_encoder:{factory}" in str(err.value)


def test_an_encoder_returning_the_wrong_batch_size_is_named():
    from gigassl.errors import UserCodeError

    embedding = Embedding(build_embedder(EncoderConfig(name="tests.tiny_encoder:wrong_batch")), "cpu", "fp32")
    with pytest.raises(UserCodeError, match=r"wrong_batch' returned features of shape \(1, 24, 12, 12\) for 3 tiles; "
                                            r"expected a tensor \(3, 24\)"):
        embedding(torch.zeros(3, 48, 48, 3, dtype=torch.uint8))


def test_weights_that_are_a_folder_empty_or_unsafe_say_so(tmp_path):
    torch.save(ResNet18().state_dict(), tmp_path / "resnet.pt")
    with pytest.raises(GigasslError, match=r"Weights file .* is a folder, not a file \(it holds resnet.pt\)"):
        build_embedder(EncoderConfig(weights=str(tmp_path)))
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(GigasslError, match=r"is empty \(0 bytes\)"):
        build_embedder(EncoderConfig(weights=str(tmp_path / "empty.pt")))
    import pickle

    (tmp_path / "code.pt").write_bytes(pickle.dumps(pytest.approx(1.0)))  # an object a safe load refuses
    for name in ("code.pt", "junk.pt"):
        if name == "junk.pt":
            (tmp_path / name).write_bytes(b"\x80\x02junkjunk")  # torch raises a KeyError on it
        with pytest.raises(GigasslError, match="not a readable torch checkpoint") as err:
            build_embedder(EncoderConfig(weights=str(tmp_path / name)))
        assert "weights_only" not in str(err.value) and "file an issue" not in str(err.value).lower()
