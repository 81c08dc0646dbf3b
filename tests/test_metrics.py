"""The evaluation metrics against their definitions: bounds, distances, probes."""

import numpy as np
import pytest
import scipy.linalg
import torch

from toonvae import attributes, metrics
from toonvae.archs import ModelConfig, build
from toonvae.errors import ToonvaeError
from toonvae.fid import frechet_distance, weights_problem
from toonvae.model import load_model, save_model
from toonvae.prepare import prepare
from toonvae.sampler import fit_gmm, sample_latents
from toonvae.sources.synthetic import generate
from toonvae.swd import SlicedWasserstein, _blur, swd

TINY = ModelConfig("resnet", 32, 6, channels=(8, 8, 16, 16))


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Prepared synthetic cartoon faces at 32 px: (train, test) uint8 arrays."""
    root = tmp_path_factory.mktemp("faces")
    generate("cartoon", root / "raw", 240, seed=0, size=64, workers=1)
    prepare(root / "raw", root / "prepared", image_size=32, crop="box",
            box=(0.1, 0.08, 0.9, 0.88), val_fraction=0.0, test_fraction=0.5, min_side=16,
            seed=0, workers=1)
    return np.load(root / "prepared" / "train.npy"), np.load(root / "prepared" / "test.npy")


def test_iwae_is_below_the_elbo_and_tightens_with_k(faces):
    torch.manual_seed(0)
    model = build(TINY).eval()
    test = faces[1][:40]
    elbo = metrics.reconstruction_metrics(model, test, 64, seed=0)["elbo_bpd"]
    bounds = [metrics.iwae_bpd(model, test, k, 256, seed=0) for k in (1, 10, 100)]
    assert abs(bounds[0] - elbo) < 0.01 * elbo  # k = 1 is the ELBO
    assert bounds[2] < bounds[1] < bounds[0]
    assert bounds[2] < elbo


def test_active_units_count_dimensions_whose_mean_varies(faces):
    torch.manual_seed(0)
    model = build(TINY).eval()
    with torch.no_grad():
        model.to_mu.weight[:2] *= 1000.0  # two dimensions that follow the input
        model.to_mu.weight[2:] = 0.0  # four that ignore it
    r = metrics.reconstruction_metrics(model, faces[1][:50], 64, seed=0)
    assert r["active_units"] == 2
    assert len(r["kl_per_dim"]) == 6 and abs(sum(r["kl_per_dim"]) - r["kl"]) < 1e-3 * r["kl"]


def as_float(a):
    return torch.from_numpy(a).float() / 255


def test_swd_zero_for_a_set_with_itself_larger_for_blur_and_noise(faces):
    train, test = as_float(faces[0][:40]), as_float(faces[1][:40])
    ref = SlicedWasserstein(test, seed=3)
    assert ref(test) == 0.0
    floor = ref(train)
    blurred = ref(_blur(_blur(train)))
    noise = ref(torch.rand_like(train))
    assert 0 < floor < blurred < noise
    assert swd(train, test, seed=3) == pytest.approx(floor)


def numpy_swd(a: torch.Tensor, b: torch.Tensor, seed: int) -> float:
    """The metric as it was computed before it moved to torch: numpy projections and
    sorts of the same descriptors (a reference for the torch version)."""
    from toonvae import swd as swd_module

    def descriptors(images):
        return [d.numpy() for d in swd_module.level_descriptors(images, seed, "cpu")]

    rng = np.random.default_rng(seed + 2)
    per_level = []
    for da, db in zip(descriptors(a), descriptors(b)):
        dists = []
        for _ in range(swd_module.REPEATS):
            d = rng.standard_normal((da.shape[1], swd_module.DIRECTIONS)).astype(np.float32)
            d /= np.linalg.norm(d, axis=0, keepdims=True)
            pa, pb = (np.sort((x @ d).T, axis=1) for x in (da, db))
            dists.append(np.abs(pa - pb).mean())
        per_level.append(np.mean(dists))
    return 1e3 * float(np.mean(per_level))


@pytest.mark.slow  # over 5 s
def test_swd_in_torch_matches_the_numpy_computation(faces):
    train, test = as_float(faces[0][:24]), as_float(faces[1][:24])
    for a in (train, train.flip(-1) * 0.8):
        want = numpy_swd(a, test, seed=5)
        assert swd(a, test, seed=5) == pytest.approx(want, rel=1e-5)
        assert swd(a, test, seed=5, device="cpu") == swd(a, test, seed=5)
    # The CPU generators fix the directions and the patches: another seed, another value.
    assert swd(train, test, seed=6) != pytest.approx(swd(train, test, seed=5), rel=1e-3)


def test_iwae_matches_a_float64_logsumexp_of_the_same_samples(faces):
    """The bound as the definition writes it: -log mean_k p(x, z_k) / q(z_k | x), with the
    same seeded z_k, computed here image by image in float64 with scipy."""
    from scipy.special import logsumexp

    torch.manual_seed(0)
    model = build(TINY).eval()
    test = faces[1][:6]
    k = 8
    got = metrics.iwae_bpd(model, test, k, batch_size=3 * k, seed=4)
    generator = torch.Generator().manual_seed(4)
    total = 0.0
    for first in range(0, len(test), 3):  # the same passes of 3 images as iwae_bpd
        x = torch.from_numpy(test[first:first + 3]).float() / 255
        with torch.no_grad():
            lw = metrics.log_weights(model, x, k, generator, chunk=k).numpy()
        total += sum(-(logsumexp(lw[:, i]) - np.log(k)) for i in range(lw.shape[1]))
    want = total / len(test) / (3 * 32 * 32 * np.log(2.0))
    assert got == pytest.approx(want, rel=1e-9)


def test_frechet_distance_matches_a_direct_scipy_computation():
    class Project(torch.nn.Module):  # a fixed random feature map, in place of Inception
        num_features = 12

        def __init__(self):
            super().__init__()
            self.w = torch.randn(3 * 8 * 8, 12, generator=torch.Generator().manual_seed(1))

        def forward(self, x):
            return x.flatten(1) @ self.w

    g = torch.Generator().manual_seed(0)
    real = torch.rand(300, 3, 8, 8, generator=g)
    fake = torch.rand(300, 3, 8, 8, generator=g) ** 1.5
    feature = Project()
    got = frechet_distance(real, fake, 64, feature=feature)
    a, b = (feature(x).double().numpy() for x in (real, fake))
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    want = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert got == pytest.approx(want, rel=1e-6)
    assert frechet_distance(real, real, 64, feature=feature) == pytest.approx(0, abs=1e-6)


def test_fid_weights_are_used_only_when_present_and_genuine(tmp_path):
    assert "no Inception weights at" in weights_problem(str(tmp_path / "missing.pth"))
    fake = tmp_path / "weights.pth"
    fake.write_bytes(b"not the weights")
    assert "not the FID weights" in weights_problem(str(fake))
    assert weights_problem(None) == "evaluate.fid_weights is null"


def test_gmm_sampler_follows_the_posterior_means_and_survives_save_load(tmp_path):
    rng = np.random.default_rng(0)
    means = np.concatenate([rng.normal(-5, 0.1, (200, 6)), rng.normal(5, 0.1, (100, 6))])
    gmm = fit_gmm(means, components=2, seed=0)
    z = sample_latents(3000, 6, torch.Generator().manual_seed(0), gmm=gmm)
    assert abs((z[:, 0] > 0).float().mean().item() - 1 / 3) < 0.03
    assert z[:, 0].abs().min() > 4  # nothing between the clusters, unlike the prior
    model = build(TINY)
    model.gmm = gmm
    save_model(model, tmp_path / "m" / "model.pt")
    loaded, _ = load_model(tmp_path / "m")
    a = loaded.sample(4, torch.Generator().manual_seed(1), sampler="gmm")
    b = model.sample(4, torch.Generator().manual_seed(1), sampler="gmm")
    assert torch.equal(a, b)
    loaded.gmm = None
    with pytest.raises(ToonvaeError, match="no fitted mixture"):
        loaded.sample(4, sampler="gmm")


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_gmm_in_torch_is_scikit_learns_fit(covariance, monkeypatch):
    """The mixture's EM in torch against scikit-learn's GaussianMixture (what fitted it
    before): the same seeding and updates give the same weights, means and covariances.
    Diagonal covariances are what latents over FULL_COVARIANCE_MAX_DIM dimensions get."""
    from sklearn.mixture import GaussianMixture

    from toonvae import sampler

    rng = np.random.default_rng(3)
    centres = rng.normal(0, 3, (4, 5))
    means = np.concatenate([rng.multivariate_normal(c, np.diag(rng.uniform(0.2, 1, 5)), 150)
                            for c in centres])
    ref = GaussianMixture(4, covariance_type=covariance, reg_covar=1e-4,
                          init_params="k-means++", max_iter=200, random_state=7).fit(means)
    if covariance == "diag":
        monkeypatch.setattr(sampler, "FULL_COVARIANCE_MAX_DIM", 4)
    got = fit_gmm(means, components=4, seed=7)
    np.testing.assert_allclose(got["weights"].numpy(), ref.weights_, atol=1e-6)
    np.testing.assert_allclose(got["means"].numpy(), ref.means_, atol=1e-5)
    if covariance == "diag":
        assert "scale_tril" not in got
        np.testing.assert_allclose(got["scales"].numpy(), np.sqrt(ref.covariances_), atol=1e-5)
        z = sample_latents(20000, 5, torch.Generator().manual_seed(0), gmm=got)
        np.testing.assert_allclose(z.mean(0).numpy(), ref.weights_ @ ref.means_, atol=0.05)
        return
    np.testing.assert_allclose(got["scale_tril"].numpy(), np.linalg.cholesky(ref.covariances_),
                               atol=1e-5)
    assert not np.allclose(fit_gmm(means, components=4, seed=8)["means"].numpy(), ref.means_,
                           atol=1e-3)  # the seed matters: the comparison has teeth


def test_linear_probe_reads_a_linearly_coded_attribute():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 8))
    y = np.stack([(z[:, 0] > 0).astype(int), rng.integers(0, 3, 400)], axis=1)
    y[::7, 1] = -1  # missing labels are skipped
    acc = attributes.probe_accuracy(z[:300], y[:300], z[300:], y[300:])
    assert 0.6 < acc < 0.8  # attribute 0 near 1.0, attribute 1 (noise) near 1/3
    assert attributes.chance_accuracy(y[:300], y[300:]) < 0.6


def test_torch_probe_finds_scikit_learns_optimum():
    """The probe's L-BFGS fit in torch against scikit-learn's LogisticRegression (what
    the probes used before): the same penalised optimum, the same test predictions."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    z = rng.normal(size=(600, 16)).astype(np.float32)
    logits = z[:, :3] @ rng.normal(size=(3, 4)) + rng.normal(scale=1.5, size=(600, 4))
    y = logits.argmax(1)
    ref = LogisticRegression(max_iter=5000, tol=1e-8).fit(z[:500], y[:500])
    weight, bias = attributes.fit_logistic(torch.from_numpy(z[:500]), torch.from_numpy(y[:500]))
    np.testing.assert_allclose(weight.numpy(), ref.coef_, atol=2e-3)
    np.testing.assert_allclose(bias.numpy(), ref.intercept_, atol=2e-3)
    pred = (torch.from_numpy(z[500:]) @ weight.T + bias).argmax(1).numpy()
    assert (pred == ref.predict(z[500:])).mean() >= 0.99


def test_attribute_classifier_learns_real_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(256, 1))
    images = np.zeros((256, 3, 32, 32), np.uint8)
    images[labels[:, 0] == 1, 0] = 200  # red faces
    images[labels[:, 0] == 0, 2] = 200  # blue faces
    images += rng.integers(0, 40, images.shape, dtype=np.uint8)
    clf = attributes.train_classifier(images[:192], labels[:192], seed=0, device="cpu", epochs=3)
    x = torch.from_numpy(images[192:]).float() / 255
    assert attributes.classifier_accuracy(clf, x, labels[192:]) == 1.0
    assert attributes.classifier_accuracy(clf, x.flip(1), labels[192:]) == 0.0  # colours swapped
