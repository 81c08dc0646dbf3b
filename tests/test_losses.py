import math

import torch
from torch.distributions import Normal, kl_divergence

from toonvae import losses


def test_kl_matches_closed_form_of_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 7), torch.randn(5, 7)
    ours = losses.kl_normal(mu, logvar)
    ref = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))
    assert torch.allclose(ours, ref, atol=1e-5)
    assert losses.kl_normal(torch.zeros(3), torch.zeros(3)).abs().max() == 0


def test_kl_stays_finite_for_extreme_logvar():
    kl = losses.kl_normal(torch.zeros(2), torch.tensor([-1e4, 1e4]))
    assert torch.isfinite(kl).all()


def test_discretized_logistic_is_a_distribution_over_256_values():
    values = torch.arange(256, dtype=torch.float32).view(256, 1, 1, 1) / 255
    for mean, log_scale in [(0.5, -3.0), (0.02, -5.0), (0.99, -1.0), (0.3, -7.0)]:
        nll = losses.discretized_logistic_nll(values, torch.full_like(values, mean),
                                              torch.full((1, 1, 1, 1), log_scale))
        total = torch.exp(-nll.double()).sum()
        assert abs(total.item() - 1.0) < 2e-3, (mean, log_scale, total)


def test_logistic_nll_prefers_the_right_mean_and_bits_per_dim():
    x = torch.full((1, 3, 4, 4), 100 / 255)
    good = losses.recon_nll(x, x, torch.full((1, 3, 1, 1), -4.0))
    bad = losses.recon_nll(x, x + 0.2, torch.full((1, 3, 1, 1), -4.0))
    assert good < bad
    assert math.isclose(losses.bits_per_dim(torch.tensor(48 * math.log(2)), 48).item(), 1.0,
                        rel_tol=1e-6)


def test_training_loss_mse_is_the_notebooks_objective():
    x, mean = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.1)
    mu, logvar = torch.zeros(2, 5), torch.zeros(2, 5)
    loss, recon, kl = losses.training_loss("mse", x, mean, mu, logvar, beta=1.0)
    assert math.isclose(recon.item(), 1000 * 0.01, rel_tol=1e-5)
    assert kl.item() == 0 and math.isclose(loss.item(), 10.0, rel_tol=1e-5)


def test_discretized_gaussian_is_a_distribution_and_matches_the_density_when_wide():
    values = torch.arange(256, dtype=torch.float32).view(256, 1, 1, 1) / 255
    for mean, log_scale in [(0.5, -3.0), (0.0, -6.0), (0.97, -1.0), (0.4, -7.0), (0.2, -4.5)]:
        nll = losses.discretized_gaussian_nll(values, torch.full_like(values, mean),
                                              torch.full((1, 1, 1, 1), log_scale))
        assert torch.isfinite(nll).all()
        total = torch.exp(-nll.double()).sum()
        assert abs(total.item() - 1.0) < 2e-3, (mean, log_scale, total)
    # an interior bin of a wide Gaussian: mass = density x bin width
    x, mean, s = torch.tensor([0.5]), torch.tensor([0.45]), torch.tensor([-1.0])
    nll = losses.discretized_gaussian_nll(x, mean, s)
    ref = -Normal(0.45, math.exp(-1.0)).log_prob(torch.tensor(0.5)) + math.log(255)
    assert abs(nll.item() - ref.item()) < 1e-3


def test_optimal_gaussian_scale_is_the_rms_error():
    x = torch.zeros(4, 3, 8, 8)
    mean = torch.full_like(x, 0.1)
    log_s = losses.optimal_log_scale(x, mean, "gaussian")
    assert torch.allclose(log_s.exp(), torch.full((1, 3, 1, 1), 0.1), atol=1e-6)
