"""The learned prior's figure: hvae at the CPU budget on anime with its 4x4 + 8x8 flow.

    PYTHONPATH=. python research/learned_prior_figure.py    # from the repo root, after dvc repro

Trains hvae+epochs=5 (as benchmarks/arch_bench.py does) with sampler.flow_levels 2, then
draws figures/learned-prior/anime-hvae.png: test faces, their reconstructions, then 8
samples each from the prior, the flow and the mixture, from the same seed. About 3.5 min on
2 cores (training 84 s, the flow's fit 99 s).
"""
from toonvae.stage import pin_numerics
pin_numerics()
import time
from dataclasses import replace
from pathlib import Path
import torch
from benchmarks.arch_bench import configs_of, HVAE_LATENT
from toonvae import params as params_mod
from toonvae.data import PreparedData, to_float
from toonvae.figures import labelled_rows
from toonvae.model import load_model
from toonvae.numerics import thread_count
from toonvae.runtime import set_determinism
from toonvae.train import TrainConfig, train

p = params_mod.load("params.yaml")
base = replace(TrainConfig.from_params(p), flow_levels=2, flow_steps=1500)
mc, tc, epochs = configs_of(p, "hvae+epochs=5", HVAE_LATENT, base, {})
tc = replace(tc, epochs=epochs)
data = PreparedData(Path("data/prepared/anime"))
set_determinism(0, thread_count(p.runtime.numerics, p.train.threads), True, p.runtime.numerics)
t0 = time.perf_counter()
result = train(data.root, Path("/tmp/toonvae-learned-prior/model.pt"), Path("/tmp/toonvae-learned-prior/curves"), mc, tc)
print("train+fit s", round(time.perf_counter() - t0, 1), result.get("flow_fit"), result["parts"].seconds)
model, _ = load_model("/tmp/toonvae-learned-prior/model.pt")
x = to_float(data.split("test")[:8])
rows = [("test faces", x), ("recon.", model.reconstruct(x).float())]
for sampler in ("prior", "flow", "gmm"):
    rows.append((sampler, model.sample(8, torch.Generator().manual_seed(0), sampler=sampler)))
Path("figures/learned-prior").mkdir(parents=True, exist_ok=True)
labelled_rows([r for _, r in rows], [l for l, _ in rows], Path("figures/learned-prior/anime-hvae.png"))
print("done")
