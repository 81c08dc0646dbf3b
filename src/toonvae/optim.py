"""Adam(W) and L-BFGS without torch.optim's start-up cost.

torch.optim's optimizers import ``torch._dynamo`` when first used (``add_param_group``
and ``step`` are wrapped for torch.compile): 2-3 s of CPU in every process that trains,
a third of a small stage's time. ``Adam`` here is torch's single-tensor update (the one
torch runs on the CPU) operation for operation, except for the square root, and its state
dict is torch's: a checkpoint moves between the two (tests check both).

The square root: torch's CPU ``sqrt`` goes through MKL's vector maths (VML, "high
accuracy": within an ulp, not correctly rounded), and MKL picks its code by CPU vendor,
which no MKL_CBWR setting pins. So the same step gave other bits on an AMD EPYC than on
the Intel Xeon that made the results before, while every gradient agreed. ``sqrt``
below is the CPU's square-root instruction (through numpy), which IEEE 754 makes
correctly rounded on every CPU.
``make_optimizer`` keeps torch's fused kernel on CUDA, where one launch per step matters
and the import does not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch


def sqrt(t: torch.Tensor) -> torch.Tensor:
    """The correctly rounded square root of a CPU float tensor; torch's elsewhere."""
    if t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64):
        return t.sqrt()
    return torch.from_numpy(np.sqrt(t.detach().contiguous().numpy()))


class Adam:
    """torch.optim.Adam (``decoupled_weight_decay=True``: AdamW), for tensors that are not
    sparse or complex, with torch's defaults for every option it does not take."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled_weight_decay: bool = False):
        # torch's group keys, in torch's order: its state dict, key for key.
        self.param_groups = [{
            "lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
            "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
            "differentiable": False, "fused": None,
            "decoupled_weight_decay": decoupled_weight_decay, "params": list(params)}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.param_groups[0]["params"]:
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        lr, (beta1, beta2), eps, decay = (group["lr"], group["betas"], group["eps"],
                                          group["weight_decay"])
        for p in group["params"]:
            if p.grad is None:
                continue
            grad = p.grad
            state = self.state.get(p)
            if state is None:
                # torch keeps the step count as a CPU float tensor (float64 under a float64
                # default dtype) and reads it back as a Python float.
                scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
                state = self.state[p] = {
                    "step": torch.tensor(0.0, dtype=scalar),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            state["step"] += 1
            if decay != 0:
                if group["decoupled_weight_decay"]:
                    p.mul_(1 - lr * decay)
                else:
                    grad = grad.add(p, alpha=decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = state["step"].item()
            bias_correction2_sqrt = (1 - beta2**step) ** 0.5
            denom = (sqrt(exp_avg_sq) / bias_correction2_sqrt).add_(eps)
            p.addcdiv_(exp_avg, denom, value=-(lr / (1 - beta1**step)))

    def state_dict(self) -> dict:
        """torch's layout: state by parameter index, the group with indices for params."""
        group = self.param_groups[0]
        index = {id(p): i for i, p in enumerate(group["params"])}
        return {"state": {index[id(p)]: s for p, s in self.state.items()},
                "param_groups": [{**{k: v for k, v in group.items() if k != "params"},
                                  "params": list(range(len(group["params"])))}]}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state dict of this class or of torch.optim.Adam/AdamW over the same
        parameters (hyperparameters included, as torch does)."""
        groups = state_dict["param_groups"]
        params = self.param_groups[0]["params"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(params):
            raise ValueError("the optimizer state belongs to other parameters")
        saved = {k: v for k, v in groups[0].items() if k != "params"}
        self.param_groups = [{**self.param_groups[0], **saved, "params": params}]
        self.state = {}
        for i, s in state_dict["state"].items():
            p = params[groups[0]["params"].index(i)]
            self.state[p] = {"step": s["step"].detach().to("cpu").reshape(()).clone(),
                             **{k: s[k].to(device=p.device, dtype=p.dtype).clone()
                                for k in ("exp_avg", "exp_avg_sq")}}


def make_optimizer(kind: str, params: list[torch.Tensor], lr: float, weight_decay: float,
                   device: torch.device):
    """``train.optimizer``: "adamw" (with ``weight_decay``) or "adam" (without)."""
    if torch.device(device).type == "cuda":  # one fused launch per step; same maths
        cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
        return cls(params, lr=lr, fused=True,
                   **({"weight_decay": weight_decay} if kind == "adamw" else {}))
    if kind == "adamw":
        return Adam(params, lr=lr, weight_decay=weight_decay, decoupled_weight_decay=True)
    return Adam(params, lr=lr)


def minimize_lbfgs(objective: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                   x: torch.Tensor, max_iter: int = 500, history: int = 20,
                   tolerance_grad: float = 1e-6, tolerance_change: float = 1e-10) -> torch.Tensor:
    """Minimise a smooth convex function of a flat tensor from ``x``; ``objective(x)``
    returns (value, gradient). L-BFGS (Nocedal & Wright, algorithm 7.4) with a backtracking
    line search (Armijo), which suffices for a convex function. Stops, as torch's L-BFGS
    does, when the largest gradient entry is at most ``tolerance_grad`` or a step changes
    the value or x by less than ``tolerance_change``."""
    value, grad = objective(x)
    pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # s, y, 1 / y.s
    for _ in range(max_iter):
        if grad.abs().max() <= tolerance_grad:
            break
        q, alphas = -grad, []
        for s, y, rho in reversed(pairs):
            alphas.append(rho * s.dot(q))
            q = q - alphas[-1] * y
        if pairs:
            s, y, _ = pairs[-1]
            q = q * (s.dot(y) / y.dot(y))
        for (s, y, rho), alpha in zip(pairs, reversed(alphas)):
            q = q + (alpha - rho * y.dot(q)) * s
        slope = grad.dot(q)
        if slope > -tolerance_change:
            break
        t = 1.0 if pairs else min(1.0, 1.0 / float(grad.abs().sum()))
        for _ in range(60):  # halving: down to 1e-18 of the first step at most
            new_x = x + t * q
            new_value, new_grad = objective(new_x)
            if new_value <= value + 1e-4 * t * slope or t * float(q.abs().max()) <= tolerance_change:
                break
            t /= 2
        s, y = new_x - x, new_grad - grad
        if y.dot(s) > 1e-10 * y.dot(y):  # keep only pairs of positive curvature (scale-free)
            pairs = [*pairs[-(history - 1):], (s, y, 1 / y.dot(s))]
        done = (abs(float(new_value - value)) < tolerance_change
                or t * float(q.abs().max()) <= tolerance_change)
        x, value, grad = new_x, new_value, new_grad
        if done:
            break
    return x
