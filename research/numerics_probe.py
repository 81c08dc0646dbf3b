"""Which environment variables change the bits of a training step on this CPU, and at what cost.

    python research/numerics_probe.py [--steps 5]

Runs a few AdamW steps of the default model (64 px, latent 128, batch 32, fixed data and
seed) in a fresh process per setting, and prints a hash of the final weights and the time
per step. The first row is the portable pins (``toonvae.numerics``) as the stages set
them; each further row changes one variable, so a different hash means that variable
reaches the numbers here. The "mkldnn off" row switches oneDNN off altogether.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from toonvae import numerics

STEP = """
import hashlib, os, sys, time, torch
from toonvae.losses import training_loss
from toonvae.archs import build
from toonvae.archs import ModelConfig
if os.environ.get("PROBE_MKLDNN_OFF"):
    torch.backends.mkldnn.enabled = False
torch.manual_seed(0)
model = build(ModelConfig("resnet", 64, 128))
opt = torch.optim.AdamW(model.parameters(), lr=4e-3)
x = torch.rand(32, 3, 64, 64, generator=torch.Generator().manual_seed(1))
steps = int(sys.argv[1])
start = time.perf_counter()
for _ in range(steps):
    mean, mu, logvar = model(x)
    loss = training_loss("gaussian", x, mean, mu, logvar, 1.0)[0]
    opt.zero_grad()
    loss.backward()
    opt.step()
ms = (time.perf_counter() - start) / steps * 1e3
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters()))
print(digest.hexdigest()[:12], f"{ms:.0f}", torch.get_num_threads())
"""

VARIANTS = [
    ("portable pins", {}),
    ("ATEN_CPU_CAPABILITY=default", {"ATEN_CPU_CAPABILITY": "default"}),
    ("ONEDNN_MAX_CPU_ISA=AVX", {"ONEDNN_MAX_CPU_ISA": "AVX"}),
    ("ONEDNN_MAX_CPU_ISA=SSE41", {"ONEDNN_MAX_CPU_ISA": "SSE41"}),
    ("MKL_CBWR unset", {"MKL_CBWR": None}),
    ("1 thread", {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}),
    ("mkldnn off", {"PROBE_MKLDNN_OFF": "1"}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    pinned = {**os.environ, **numerics.pins("portable")}
    print("| setting | weights | ms per step | threads |\n|---|---|---:|---:|")
    base = None
    for name, change in VARIANTS:
        env = {k: v for k, v in {**pinned, **change}.items() if v is not None}
        out = subprocess.run([sys.executable, "-c", STEP, str(args.steps)], env=env,
                             capture_output=True, text=True, check=True).stdout.split()
        digest, ms, threads = out
        base = base or digest
        same = "same" if digest == base else "differ"
        print(f"| {name} | {digest} ({same}) | {ms} | {threads} |", flush=True)


if __name__ == "__main__":
    main()
