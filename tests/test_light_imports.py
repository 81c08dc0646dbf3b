"""Four library calls the stages make are done here instead, because importing the library
cost seconds in every stage process (torchvision and torchmetrics load torch._dynamo, and so
do torch.use_deterministic_algorithms and torch.optim's optimizers, whose copies are
test_optim's; scikit-learn's clustering takes about 2 s). Each copy must give the library's bits. The tests
that import those libraries are marked slow: the imports are the seconds they save."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from toonvae.figures import make_grid
from toonvae.metrics import ssim_per_image
from toonvae.runtime import deterministic_algorithms, set_determinism


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(7, 3, 32, 32), (4, 3, 64, 64), (2, 3, 16, 24)])
def test_ssim_gives_torchmetrics_bits(shape):
    from torchmetrics.image import StructuralSimilarityIndexMeasure

    g = torch.Generator().manual_seed(shape[0])
    a = torch.rand(shape, generator=g)
    b = (a + 0.2 * torch.randn(shape, generator=g)).clamp(0, 1)
    c = torch.rand(shape, generator=g)
    reference = StructuralSimilarityIndexMeasure(data_range=1.0)
    total = torch.zeros(())
    for pred, target in ((a, b), (b, a), (c, a)):  # accumulated over batches, as evaluate does
        reference.update(pred, target)
        total += ssim_per_image(pred, target).sum()
    ours = total / torch.tensor(float(3 * shape[0]))
    assert torch.equal(ours, reference.compute()), (float(ours), float(reference.compute()))
    assert ssim_per_image(a, a).allclose(torch.ones(shape[0]))
    assert (ssim_per_image(b, a) > ssim_per_image(c, a)).all()


@pytest.mark.slow
@pytest.mark.parametrize("n, nrow", [(1, 4), (5, 5), (7, 4), (9, 4), (3, 8)])
def test_grid_gives_torchvisions_pixels(n, nrow):
    from torchvision.utils import make_grid as torchvision_grid

    x = torch.rand(n, 3, 6, 10, generator=torch.Generator().manual_seed(n))
    assert torch.equal(make_grid(x, nrow=nrow, padding=2, pad_value=1.0),
                       torchvision_grid(x, nrow=nrow, padding=2, pad_value=1.0))


@pytest.mark.slow
def test_deterministic_flag_is_torchs_and_inductors_when_loaded():
    try:
        deterministic_algorithms(False)
        assert not torch.are_deterministic_algorithms_enabled()
        import torch._inductor.config as inductor_config

        deterministic_algorithms(True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert inductor_config.deterministic is True
    finally:
        set_determinism(0)


@pytest.mark.slow
@pytest.mark.parametrize("n, d, k, seed", [(3600, 128, 10, 0), (200, 4, 10, 1), (50, 1344, 10, 2),
                                           (12, 2, 12, 0), (500, 64, 1, 3), (300, 3, 5, 4)])
def test_kmeans_plusplus_picks_what_scikit_learn_picks(n, d, k, seed):
    from sklearn.cluster import kmeans_plusplus as reference

    from toonvae.sampler import kmeans_plusplus

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 3, size=d)
    if seed == 4:
        x[100:200] = x[0]  # many equal rows: ties and zero distances
    want = reference(x, k, random_state=seed)[1]
    assert np.array_equal(kmeans_plusplus(x, k, seed), want)
    if k > 2:
        assert not np.array_equal(kmeans_plusplus(x, k, seed + 1), want)  # the seed matters


@pytest.mark.slow  # a fresh interpreter importing torch and matplotlib
def test_the_stage_libraries_load_no_dynamo_torchvision_torchmetrics_or_sklearn():
    code = ("import sys\n"
            "import numpy as np\n"
            "import toonvae.evaluation, toonvae.figures, toonvae.latent_figures, toonvae.cli\n"
            "from toonvae.runtime import set_determinism\n"
            "from toonvae.sampler import fit_gmm\n"
            "set_determinism(0)\n"
            "fit_gmm(np.random.default_rng(0).normal(size=(50, 3)), 3, 0)\n"
            # What train and evaluate step: the optimizer, clipping, the weight average,
            # the attribute probe and classifier.
            "import torch\n"
            "from toonvae import attributes, optim, train\n"
            "m = torch.nn.Linear(3, 2)\n"
            "opt = optim.make_optimizer('adamw', list(m.parameters()), 1e-3, 0.01, 'cpu')\n"
            "ema = train.make_ema(m, 0.9)\n"
            "m(torch.ones(1, 3)).sum().backward()\n"
            "torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)\n"
            "opt.step()\n"
            "ema.update_parameters(m)\n"
            "attributes.fit_logistic(torch.randn(20, 3), torch.arange(20) % 2)\n"
            "attributes.train_classifier(np.zeros((8, 3, 32, 32), np.uint8), np.zeros((8, 1), int),"
            " 0, 'cpu', epochs=1, batch_size=4)\n"
            "print(sorted(m for m in ('torch._dynamo', 'torchvision', 'torchmetrics', 'sklearn') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
