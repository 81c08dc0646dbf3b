import pytest
import torch

from toonvae.archs import ModelConfig, build
from toonvae.errors import ToonvaeError
from toonvae.model import describe, load_model, save_model


@pytest.mark.parametrize("arch", ["resnet", "seed"])
@pytest.mark.parametrize("size", [32, 64])
def test_shapes(arch, size):
    model = build(ModelConfig(arch, size, latent_dim=10, channels=(8, 16, 16, 32)))
    x = torch.rand(3, 3, size, size)
    mean, mu, logvar = model(x)
    assert mean.shape == x.shape and mu.shape == logvar.shape == (3, 10)
    assert 0 <= mean.min() and mean.max() <= 1
    assert model.sample(4).shape == (4, 3, size, size)
    rows = describe(model)
    assert rows[0][2] == (3, size, size) and rows[-1][2] == (3, size, size)
    assert any(part == "latent" and shape == (10,) for part, _, shape in rows)


def test_seed_arch_is_the_notebooks_network():
    model = build(ModelConfig("seed", 64, latent_dim=200))
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [128, 128, 64, 32]
    assert all(c.kernel_size == (3, 3) and c.stride == (2, 2) for c in convs)
    tconvs = [m for m in model.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [c.out_channels for c in tconvs] == [32, 64, 128, 128]
    drops = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(drops) == 3 and all(d.p == 0.2 for d in drops)
    assert model.to_mu.out_features == model.to_logvar.out_features == 200


def test_image_size_must_be_a_multiple_of_16():
    with pytest.raises(ToonvaeError, match="image_size"):
        build(ModelConfig("resnet", 40, 8))


def test_save_load_round_trip_and_mismatch(tmp_path):
    model = build(ModelConfig("resnet", 32, 6, channels=(8, 8, 16, 16)))
    save_model(model, tmp_path / "m" / "model.pt")
    loaded, blob = load_model(tmp_path / "m")
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    assert blob["config"]["latent_dim"] == 6
    # weights that do not fit the config in the file
    blob["config"]["latent_dim"] = 7
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(ToonvaeError, match="do not match"):
        load_model(tmp_path / "bad.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ToonvaeError, match="not a readable"):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(ToonvaeError, match="no model file"):
        load_model(tmp_path / "missing")


@pytest.mark.parametrize("size, stages, last", [(32, 4, 2), (64, 4, 4), (96, 4, 6), (128, 5, 4),
                                                (160, 5, 5), (256, 6, 4)])
def test_resnet_gets_a_stage_per_halving_down_to_a_small_map(size, stages, last):
    from toonvae.archs.resnet import resnet_widths

    cfg = ModelConfig("resnet", size, latent_dim=8, channels=(8, 16, 16, 32))
    widths = resnet_widths(cfg)
    assert len(widths) == stages and widths[-4:] == (8, 16, 16, 32)
    assert widths[:stages - 4] == (8,) * (stages - 4)  # extra stages at full resolution
    model = build(cfg)
    flat = [shape for part, label, shape in describe(model) if label == "flatten"]
    assert flat == [(32 * last * last,)]
    assert model(torch.rand(2, 3, size, size))[0].shape == (2, 3, size, size)


def test_the_notebooks_256_px_job_builds_its_network():
    """-S model.arch=seed -S image_size=256 -S latent_dim=200: the notebook's exact network."""
    model = build(ModelConfig("seed", 256, latent_dim=200))
    assert model.to_mu.in_features == 32 * 16 * 16  # four stride-2 convs, 256 -> 16 px
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 3, 256, 256))[0].shape == (1, 3, 256, 256)


def test_resnet_upsamples_by_resize_then_conv_and_old_files_keep_their_tconv(tmp_path):
    from toonvae.archs.resnet import upsampler

    # A constant map stays constant through a resize and a 3x3 conv (away from the border);
    # a stride-2 transposed conv's uneven overlap paints a 2 px checkerboard on it.
    torch.manual_seed(0)
    for kind, checkered in (("resize", False), ("tconv", True)):
        y = torch.nn.Sequential(*upsampler(kind, 4, 3)[1])(torch.ones(1, 4, 8, 8))
        inner = y[..., 2:-2, 2:-2]
        assert y.shape[-1] == 16
        assert bool((inner - inner.mean((-1, -2), keepdim=True)).abs().max() > 1e-4) == checkered
    for upsample, tconvs in (("resize", 0), ("resize-rgb", 3), ("tconv", 4)):
        model = build(ModelConfig("resnet", 32, 6, channels=(8, 8, 16, 16), upsample=upsample))
        assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules()) == tconvs
        labels = [label for _, label, _ in describe(model)]
        assert sum("resize x2, conv 3x3" in label for label in labels) == 4 - tconvs
        # resize-rgb: the last upsampling (before the sigmoid), which writes the image, resizes.
        assert labels[-2].endswith("tconv 4x4/2, 3" if tconvs == 4 else "conv 3x3, 3")
    # A model file from before model.upsample existed has no such key: a tconv decoder.
    old = build(ModelConfig("resnet", 32, 6, channels=(8, 8, 16, 16), upsample="tconv"))
    save_model(old, tmp_path / "old" / "model.pt")
    blob = torch.load(tmp_path / "old" / "model.pt", weights_only=True)
    del blob["config"]["upsample"]
    torch.save(blob, tmp_path / "old.pt")
    loaded, _ = load_model(tmp_path / "old.pt")
    assert loaded.cfg.upsample == "tconv"
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in loaded.modules()) == 4
