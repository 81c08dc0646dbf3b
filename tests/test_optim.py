"""toonvae.optim against torch.optim: the same bits, step for step, once torch's square
root is the correctly rounded one, and state dicts that move between the two."""

import numpy as np
import pytest
import torch
from torch import nn

from toonvae import optim
from toonvae.optim import Adam, make_optimizer, minimize_lbfgs


@pytest.fixture
def exact_torch_sqrt(monkeypatch):
    """torch.optim with the square root that toonvae.optim takes (torch's own goes through
    MKL's VML, whose last bit depends on the CPU's vendor)."""
    monkeypatch.setattr(torch.Tensor, "sqrt", lambda t: optim.sqrt(t))


def test_the_square_root_is_correctly_rounded():
    """Against numpy's float64 root rounded to float32, which is the correctly rounded float32
    root (53 >= 2 * 24 + 2 bits). torch's VML root misses it for ~1 in 5 of these on an AMD
    EPYC; the CPU's instruction never does."""
    v = torch.rand(100_000, generator=torch.Generator().manual_seed(0)) * 1e-3
    exact = np.sqrt(v.numpy().astype(np.float64)).astype(np.float32)
    assert np.array_equal(optim.sqrt(v).numpy(), exact)
    assert optim.sqrt(v).dtype == torch.float32 and optim.sqrt(v.double()).dtype == torch.float64


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.SiLU(), nn.Flatten(),
                         nn.Linear(8 * 6 * 6, 5))


def train(model, opt, steps, start=0):
    """Steps on seeded batches with a learning rate that changes every step, as the
    recipe's schedule sets it."""
    for i in range(start, start + steps):
        g = torch.Generator().manual_seed(i)
        x, y = torch.randn(4, 3, 6, 6, generator=g), torch.randn(4, 5, generator=g)
        for group in opt.param_groups:
            group["lr"] = 1e-2 * (0.9 ** i)
        opt.zero_grad(set_to_none=True)
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def same_state(a: dict, b: dict) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for i, s in a["state"].items():
        assert s.keys() == b["state"][i].keys()
        for k, v in s.items():
            other = b["state"][i][k]
            assert v.dtype == other.dtype and torch.equal(v, other), (i, k)


@pytest.mark.parametrize("kind", ["adamw", "adam"])
def test_adam_gives_torchs_bits_and_state_dict(kind, monkeypatch):
    theirs, ours = net(), net()
    opt = make_optimizer(kind, list(ours.parameters()), 1e-2, 0.05, torch.device("cpu"))
    assert isinstance(opt, Adam)
    train(ours, opt, 12)  # with nothing patched: ours takes the exact root by itself
    monkeypatch.setattr(torch.Tensor, "sqrt", lambda t: optim.sqrt(t))
    ref = (torch.optim.AdamW(theirs.parameters(), lr=1e-2, weight_decay=0.05) if kind == "adamw"
           else torch.optim.Adam(theirs.parameters(), lr=1e-2))
    train(theirs, ref, 12)
    for p, q in zip(theirs.parameters(), ours.parameters()):
        assert torch.equal(p, q)
    same_state(ref.state_dict(), opt.state_dict())
    # A step that changed nothing would pass the above too: the weights did move.
    assert not torch.equal(next(ours.parameters()), next(net().parameters()))


def test_a_state_dict_moves_between_torch_and_ours_mid_run(exact_torch_sqrt):
    """A checkpoint written by either resumes in the other, to the same bits."""
    straight, from_torch, from_ours = net(), net(), net()
    ref = torch.optim.AdamW(straight.parameters(), lr=1e-2, weight_decay=0.05)
    train(straight, ref, 6)

    first = torch.optim.AdamW(from_torch.parameters(), lr=1e-2, weight_decay=0.05)
    train(from_torch, first, 3)
    opt = Adam(from_torch.parameters(), lr=1.0, decoupled_weight_decay=True)
    opt.load_state_dict(first.state_dict())
    assert opt.param_groups[0]["weight_decay"] == 0.05  # the saved hyperparameters
    train(from_torch, opt, 3, start=3)

    mine = Adam(from_ours.parameters(), lr=1e-2, weight_decay=0.05, decoupled_weight_decay=True)
    train(from_ours, mine, 3)
    then = torch.optim.AdamW(from_ours.parameters(), lr=1.0)
    then.load_state_dict(mine.state_dict())
    train(from_ours, then, 3, start=3)

    for p, q, r in zip(straight.parameters(), from_torch.parameters(), from_ours.parameters()):
        assert torch.equal(p, q) and torch.equal(p, r)
    with pytest.raises(ValueError, match="other parameters"):
        Adam(list(straight.parameters())[:2]).load_state_dict(ref.state_dict())


def test_lbfgs_finds_a_quadratics_minimum():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(30, 30, generator=g, dtype=torch.float64)
    hessian = a @ a.T + 0.1 * torch.eye(30, dtype=torch.float64)  # ill-conditioned: ~1e4
    b = torch.randn(30, generator=g, dtype=torch.float64)
    calls = []

    def objective(x):
        calls.append(1)
        return 0.5 * x @ hessian @ x - b @ x, hessian @ x - b

    x = minimize_lbfgs(objective, torch.zeros(30, dtype=torch.float64), tolerance_grad=1e-9,
                       tolerance_change=1e-14)
    assert torch.allclose(x, torch.linalg.solve(hessian, b), atol=1e-6)
    assert len(calls) < 200  # gradient descent needs thousands at this conditioning
