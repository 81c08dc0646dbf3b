"""The learned prior of the top latent levels (toonvae.flow): its density is a true change
of variables, a new flow is exactly the prior N(0, I), a fit learns a known density, and
the post-hoc prior of a tiny hvae samples every level in place."""

import math

import pytest
import torch

from test_hvae import randomised
from toonvae.flow import FlowPrior, fit_flow, gaussian_nll


def random_flow(dim=2, layers=4, seed=0, spread=0.5) -> FlowPrior:
    """A flow whose couplings all transform (a new one is the identity)."""
    torch.manual_seed(seed)
    flow = FlowPrior(dim, layers=layers, hidden=16, seed=seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.normal_(0, spread)
    return flow.double()


def test_log_density_is_the_brute_force_change_of_variables():
    flow = random_flow()
    x = torch.randn(5, 2, dtype=torch.float64) * 1.5
    for row, log_p in zip(x, flow.log_prob(x).detach()):
        jac = torch.autograd.functional.jacobian(lambda v: flow.inverse(v[None])[0][0], row)
        u = flow.inverse(row[None])[0][0]
        expected = -0.5 * (u @ u + 2 * math.log(2 * math.pi)) + torch.log(torch.det(jac).abs())
        assert float(log_p) == pytest.approx(float(expected.detach()), rel=1e-9, abs=1e-9)
    gaussian = -0.5 * (x.pow(2).sum(1) + 2 * math.log(2 * math.pi))
    assert not torch.allclose(flow.log_prob(x), gaussian)


def test_the_density_integrates_to_one_and_inverse_undoes_forward():
    flow = random_flow(spread=0.3)  # its mass within the grid, but far from N(0, I)
    side = torch.linspace(-12, 12, 801, dtype=torch.float64)
    grid = torch.cartesian_prod(side, side)
    cell = float(side[1] - side[0]) ** 2
    with torch.no_grad():
        mass = float(flow.log_prob(grid).exp().sum()) * cell
    assert mass == pytest.approx(1.0, abs=2e-3)
    with torch.no_grad():
        x = torch.randn(200, 2, dtype=torch.float64)
        gaussian = -0.5 * (x.pow(2).sum(1) + 2 * math.log(2 * math.pi))
        assert (flow.log_prob(x) - gaussian).abs().mean() > 0.05  # not the prior itself
    u = torch.randn(50, 2, dtype=torch.float64)
    x, log_det = flow(u)
    back, inv_log_det = flow.inverse(x)
    assert torch.allclose(back, u, atol=1e-10) and torch.allclose(log_det, -inv_log_det)


def test_a_new_flow_is_exactly_the_prior():
    # The epsilon contract: with nothing learned, samples are the prior's own N(0, I) draws.
    flow = FlowPrior(64, layers=8, hidden=32, seed=3)
    drawn = flow.sample(100, torch.Generator().manual_seed(7), temperature=0.8)
    prior = torch.randn(100, 64, generator=torch.Generator().manual_seed(7)) * 0.8
    assert torch.equal(drawn, prior)
    x = torch.randn(10, 64)
    assert torch.allclose(flow.log_prob(x), -0.5 * (x.pow(2).sum(1) + 64 * math.log(2 * math.pi)))


def test_a_fit_learns_a_density_the_prior_misses():
    # Correlated, shifted data: N(0, I) is far off; the flow must get near the true NLL.
    g = torch.Generator().manual_seed(0)
    mix = torch.tensor([[1.0, 0.9, 0, 0], [0, 0.4, 0, 0], [0, 0, 0.5, 0], [0, 0, 0.3, 2.0]])
    data = torch.randn(6000, 4, generator=g) @ mix + torch.tensor([1.0, -1.0, 0.5, 0.0])
    cov = mix.T @ mix
    true_nll = float(0.5 * (4 * math.log(2 * math.pi) + torch.logdet(cov) + 4)) / 4
    flow, nll = fit_flow(data[:5000], data[5000:], seed=0, steps=800, hidden=64)
    assert nll["prior_nll"] == pytest.approx(gaussian_nll(data[5000:]))
    assert nll["flow_nll"] < nll["prior_nll"] - 0.3
    assert nll["flow_nll"] == pytest.approx(true_nll, abs=0.08)
    again, _ = fit_flow(data[:5000], data[5000:], seed=0, steps=800, hidden=64)
    assert all(torch.equal(a, b) for a, b in zip(flow.state_dict().values(),
                                                 again.state_dict().values()))  # seeded


def test_early_stopping_keeps_a_memorising_flow_from_the_held_out_draws():
    """60 training rows in 40 dimensions: a flow trained to the end memorises them and is
    worse than N(0, I) on other draws of the same N(0, I). The fit returns the flow of its
    best held-out step instead, which is never worse than the prior (step 0)."""
    g = torch.Generator().manual_seed(3)
    train, held = torch.randn(60, 40, generator=g), torch.randn(2000, 40, generator=g)
    flow, nll = fit_flow(train, held, seed=0, steps=600, hidden=128, batch=60, lr=3e-3,
                         check_every=50)
    assert nll["flow_nll"] <= nll["prior_nll"] + 1e-6
    assert nll["flow_step"] < 600
    with torch.no_grad():
        assert float(-flow.log_prob(held).mean() / 40) == pytest.approx(nll["flow_nll"], rel=1e-6)
    last, end = fit_flow(train, held, seed=0, steps=600, hidden=128, batch=60, lr=3e-3,
                         check_every=0)  # no early stopping: the last step's flow
    assert end["flow_nll"] > nll["prior_nll"] + 0.05  # memorised


def test_the_learned_prior_of_an_hvae_fits_each_depth_and_scores_it(prepared):
    from toonvae.data import PreparedData
    from toonvae.params import EvaluateParams
    from toonvae.prior_gaps import learned_prior_swd, posterior_draws, prior_gaps

    model, data, cpu = randomised(), PreparedData(prepared), torch.device("cpu")
    levels = dict(model.latent_levels())  # 2x2: 8 dims, then 4x4: 8 + 32
    draws = posterior_draws(model, data.split("train"), levels["4x4"], 3, 0, 16, cpu)
    assert draws.shape == (3 * len(data.split("train")), 40)
    cfg = EvaluateParams(batch_size=4, fid_weights=None)
    scores = learned_prior_swd(model, data, cfg, 0, cpu, depths=[1, 2], steps=0)
    assert list(scores) == ["2x2", "2x2, 4x4"]
    # With no steps the flow is the identity: its samples score as the prior's do, apart
    # from the top levels' draws, which come from another seed.
    gaps = prior_gaps(model, data, cfg, 0, cpu)
    for name, s in scores.items():
        assert set(s) == {"swd", "fd", "kid", "precision", "recall", "flow_nll", "prior_nll",
                          "flow_step"} and s["swd"] > 0 and s["fd"] > 0
        assert s["flow_nll"] == pytest.approx(s["prior_nll"], rel=1e-5)
        assert abs(s["swd"] - gaps["none"]) < 0.5 * gaps["none"]


def test_the_seed_summary_and_flow_tables_give_mean_and_sd_over_seeds():
    from toonvae.tables import flow_table, seed_summary

    def row(seed, prior, flow, arch="hvae"):
        return {"dataset": "anime", "arch": f"{arch}+seed={seed}" if seed else arch,
                "epochs": 5, "mse": 0.005, "psnr": 23.0 + seed, "iwae_bpd": 6.0,
                "train_s": 100.0 + seed, "parameters": 1000,
                "swd_prior": prior, "swd_gmm": 20.0, "swd_floor": 10.0,
                "fd_prior": 2 * prior, "fd_gmm": 40.0, "fd_floor": 10.0,
                "precision_prior": 0.1 * seed, "precision_gmm": 0.5, "precision_floor": 0.9,
                "recall_prior": 0.2, "recall_gmm": 0.3, "recall_floor": 0.95,
                "swd_flow": {"4x4": {"swd": flow, "fd": 30.0, "precision": 0.6, "recall": 0.4,
                                     "flow_nll": 1.0, "prior_nll": 1.4}}}
    rows = [row(0, 30.0, 20.0), row(1, 40.0, 22.0), row(2, 35.0, 24.0), row(0, 50.0, 20.0, "resnet")]
    summary = seed_summary(rows).splitlines()
    assert summary[0].startswith("| dataset | arch | sampler | seeds | mse |")
    hvae = [line for line in summary if line.startswith("| anime | hvae, 5 epochs |")]
    assert [line.split(" | ")[2] for line in hvae] == ["prior", "gmm", "flow: 4x4",
                                                       "train vs test (the floor)"]
    assert hvae[0] == ("| anime | hvae, 5 epochs | prior | 3 | 0.00500 ± 0.00000 | 24.00 ± 1.00 "
                       "| 6.000 ± 0.000 | 3.50x ± 0.50 | 7.00x ± 1.00 | 0.10 ± 0.10 "
                       "| 0.20 ± 0.00 | 101 ± 1 | 1,000 |")
    assert "| flow: 4x4 | 3 |" in hvae[2] and "| 2.20x ± 0.20 | 3.00x ± 0.00 |" in hvae[2]
    resnet = [line for line in summary if line.startswith("| anime | resnet, 5 epochs | ")]
    assert len(resnet) == 4 and "| prior | 1 | 0.00500 | 23.00 |" in resnet[0]  # one seed: no sd
    assert "| 30.0 (3.00x) | 20.0 (2.00x) | 20.0 (2.00x) | 1.000 / 1.400 |" in flow_table(rows[:3])


def test_the_flow_sampler_draws_the_top_levels_from_the_flow_and_survives_the_model_file(
        tmp_path):
    from toonvae.errors import ToonvaeError
    from toonvae.model import count_parameters, load_model, save_model

    model = randomised()
    end = dict(model.latent_levels())["4x4"]  # 2x2 and 4x4: the top two levels
    vae_parameters = count_parameters(model)
    with pytest.raises(ToonvaeError, match="no learned prior for sampler 'flow'"):
        model.sample_latents(4, sampler="flow")
    # The ε contract: with no flow, the prior is exactly N(0, I) from the generator.
    z = model.sample_latents(5, torch.Generator().manual_seed(3))
    assert torch.equal(z, torch.randn(5, model.cfg.latent_dim,
                                      generator=torch.Generator().manual_seed(3)))
    model.flow = random_flow(end, seed=1).float()
    assert count_parameters(model) == vae_parameters  # the flow is not the VAE's
    z = model.sample_latents(6, torch.Generator().manual_seed(3), sampler="flow")
    g = torch.Generator().manual_seed(3)
    below = torch.randn(6, model.cfg.latent_dim, generator=g)
    assert torch.equal(z[:, end:], below[:, end:])  # the prior's draws below the flow's
    assert torch.allclose(z[:, :end], model.flow.sample(6, g))
    save_model(model, tmp_path / "model.pt", extra={"flow_fit": {"flow_nll": 1.0}})
    again, blob = load_model(tmp_path / "model.pt")
    assert blob["flow_fit"] == {"flow_nll": 1.0}
    assert not any(k.startswith("flow.") for k in blob["state_dict"])
    assert torch.equal(again.sample_latents(6, torch.Generator().manual_seed(3), sampler="flow"),
                       z)
    # A model file whose flow does not fit its latent is refused in one line.
    blob["flow"]["config"]["dim"] = model.cfg.latent_dim + 8
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(ToonvaeError, match="learned prior .flow. does not fit latent_dim"):
        load_model(tmp_path / "bad.pt")
