"""A learned prior for the top latent levels: a small RealNVP flow (Dinh et al. 2017) over
their standard-normal noise.

The pipeline's latent is standardised prior noise ε (each level's is N(0, I) under the
model's own prior). Where the aggregate posterior of a level is not N(0, I), samples drawn
from the prior decode from codes the decoder rarely saw (docs: Research, "What the prior
misses"). This flow keeps that interface, as VLAE's flow priors do (Chen et al. 2017): the
top ``dim`` coordinates are ε_top = f(u) with u ~ N(0, I) (scaled by the temperature), the
levels below stay N(0, I), and f is fitted by maximum likelihood to posterior draws of
ε_top after training, with the VAE frozen (LSGM's post-hoc setting, Vahdat et al. 2021).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from toonvae.optim import make_optimizer

LOG_2PI = math.log(2 * math.pi)


class Coupling(nn.Module):
    """An affine coupling: the coordinates where ``mask`` is 1 pass through and set the
    scale and shift of the others. Its last layer starts at zero, so a new flow is the
    identity and a fit starts from the prior N(0, I)."""

    def __init__(self, mask: torch.Tensor, hidden: int, max_log_scale: float = 2.0):
        super().__init__()
        dim = len(mask)
        self.register_buffer("mask", mask.float())
        self.max_log_scale = max_log_scale
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                 nn.SiLU(), nn.Linear(hidden, 2 * dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_scale, shift = self.net(kept).chunk(2, dim=-1)
        # tanh bounds each scale to e^±max_log_scale, so a fit cannot blow a sample up.
        free = 1 - self.mask
        return self.max_log_scale * torch.tanh(log_scale / self.max_log_scale) * free, \
            shift * free

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, log |det dx/du|) per row."""
        log_scale, shift = self._scale_shift(u * self.mask)
        return u * torch.exp(log_scale) + shift, log_scale.sum(-1)

    def inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(u, log |det du/dx|) per row."""
        log_scale, shift = self._scale_shift(x * self.mask)  # the kept part is x's own
        return (x - shift) * torch.exp(-log_scale), -log_scale.sum(-1)


class FlowPrior(nn.Module):
    """x = f(u): ``layers`` couplings, each keeping a seeded random half of the
    coordinates (a new half per layer, so every coordinate is transformed)."""

    def __init__(self, dim: int, layers: int = 8, hidden: int = 256, seed: int = 0):
        super().__init__()
        if dim < 2:
            raise ValueError("a coupling flow needs at least 2 dimensions")
        self.dim, self.layers_n, self.hidden, self.seed = dim, layers, hidden, seed
        generator = torch.Generator().manual_seed(seed)
        masks = []
        for i in range(layers):
            if i % 2 == 0:
                order = torch.randperm(dim, generator=generator)
                mask = torch.zeros(dim)
                mask[order[: dim // 2]] = 1
            else:  # the complement of the layer before: both halves get transformed
                mask = 1 - masks[-1]
            masks.append(mask)
        self.couplings = nn.ModuleList(Coupling(m, hidden) for m in masks)

    def config(self) -> dict:
        return {"dim": self.dim, "layers": self.layers_n, "hidden": self.hidden,
                "mask_seed": self.seed}

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = torch.zeros(len(u), device=u.device, dtype=u.dtype)
        for coupling in self.couplings:
            u, ld = coupling(u)
            log_det = log_det + ld
        return u, log_det

    def inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = torch.zeros(len(x), device=x.device, dtype=x.dtype)
        for coupling in reversed(self.couplings):
            x, ld = coupling.inverse(x)
            log_det = log_det + ld
        return x, log_det

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats per row: N(f^-1(x); 0, I) times |det d f^-1 / dx|."""
        u, log_det = self.inverse(x)
        return -0.5 * (u.pow(2).sum(-1) + self.dim * LOG_2PI) + log_det

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """``n`` draws (on the CPU): f(t u), u ~ N(0, I) from ``generator``."""
        u = torch.randn(n, self.dim, generator=generator) * temperature
        param = next(self.parameters())
        return self(u.to(param.device, param.dtype))[0].float().cpu()


def gaussian_nll(x: torch.Tensor) -> float:
    """Mean negative log-likelihood of rows under N(0, I), in nats per dimension."""
    return float(0.5 * (x.pow(2).mean() + LOG_2PI))


def fit_flow(train: torch.Tensor, held_out: torch.Tensor, seed: int, device="cpu",
             layers: int = 8, hidden: int = 256, steps: int = 3000, batch: int = 256,
             lr: float = 1e-3, check_every: int = 100) -> tuple[FlowPrior, dict[str, float]]:
    """A flow fitted by maximum likelihood to the rows of ``train`` (posterior draws of the
    top levels' ε), and its mean NLL in nats per dimension on ``held_out`` beside that of
    N(0, I). AdamW (``toonvae.optim``) with a cosine decay; batches from a seeded generator,
    so the same draws give the same flow.

    Early stopping: every ``check_every`` steps the held-out NLL is measured, and the flow
    returned is the one where it was lowest. Step 0 is the identity, N(0, I) itself, so the
    flow is never worse than the prior on held-out draws: a flow that can memorise its
    training draws (hundreds of dimensions, a few thousand images) stops before it does.
    ``check_every=0`` turns it off: the last step's flow."""
    device = torch.device(device)
    torch.manual_seed(seed)
    flow = FlowPrior(train.shape[1], layers, hidden, seed).to(device)
    optimizer = make_optimizer("adamw", list(flow.parameters()), lr, 0.0, device)
    generator = torch.Generator().manual_seed(seed)
    data, held = train.float().to(device), held_out.float().to(device)

    def held_out_nll() -> float:
        flow.eval()
        with torch.no_grad():
            value = float(-flow.log_prob(held).mean() / flow.dim)
        flow.train()
        return value

    best_nll, best_step = held_out_nll(), 0
    best = copy.deepcopy(flow.state_dict())
    flow.train()
    for step in range(steps):
        for group in optimizer.param_groups:  # cosine decay from lr to 0
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        rows = torch.randint(len(data), (batch,), generator=generator).to(device)
        loss = -flow.log_prob(data[rows]).mean() / flow.dim
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
        optimizer.step()
        if check_every and ((step + 1) % check_every == 0 or step + 1 == steps):
            nll = held_out_nll()
            if nll < best_nll:
                best_nll, best_step = nll, step + 1
                best = copy.deepcopy(flow.state_dict())
    if check_every:
        flow.load_state_dict(best)
    else:
        best_nll, best_step = held_out_nll(), steps
    flow.eval()
    return flow.cpu(), {"flow_nll": best_nll, "prior_nll": gaussian_nll(held_out.float()),
                        "flow_step": best_step}
