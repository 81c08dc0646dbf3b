"""Does this CPU compute the committed results' bits? A per-op fingerprint, checked
before training.

Portable numerics (``toonvae.numerics``) pin what each kernel library can be told; what
they cannot pin (the CPU's vendor, its caches, code paths below the ISA caps) shows only
in the bits. So the fingerprint hashes (sha256 of the raw float bytes) the outputs of
single ops on fixed inputs (matmul, linear, five conv shapes forward and both gradients,
GroupNorm, SiLU, resize, sums) and of one training step of the default resnet (forward,
loss, every gradient, the weights after one step of the stages' AdamW). Two CPUs whose
hashes agree compute those ops alike; the ops that differ are where they part. The names
and inputs are those of ``shared/numerics/fingerprint.py``, whose files compare with
these, except the last: that script steps torch.optim.AdamW, whose square root (MKL's
VML) differs between Intel and AMD CPUs, so the stages use ``toonvae.optim``'s.

``experiments/numerics/committed.json`` is the fingerprint of the CPU that made the
committed results; fingerprints of other CPU types sit beside it, named by CPU model.
The train stage compares this CPU's ``portable`` hashes with it (about a second) and
says which ops differ before it spends any time.

    python -m toonvae.fingerprint --out FILE        # this CPU, every variant
    python -m toonvae.fingerprint --compare FILE    # this CPU against another's, per variant
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import platform as host
import subprocess
import sys
from pathlib import Path

from toonvae.errors import ToonvaeError

COMMITTED = "experiments/numerics/committed.json"

# Each variant is the portable pins plus these changes, run in its own process, so that
# two machines' files show which setting (if any) makes an op agree. "FP_MKLDNN_OFF"
# switches oneDNN off in torch; the rest are the libraries' own variables.
VARIANTS = {
    "portable": {},
    "portable, oneDNN off": {"FP_MKLDNN_OFF": "1"},
    "portable, MKL_CBWR=COMPATIBLE,STRICT": {"MKL_CBWR": "COMPATIBLE,STRICT"},
    "portable, MKL_CBWR=AVX2,STRICT": {"MKL_CBWR": "AVX2,STRICT"},
    "portable, ONEDNN_MAX_CPU_ISA=SSE41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "portable, 1 thread": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                           "OPENBLAS_NUM_THREADS": "1"},
    "portable, oneDNN off, MKL_CBWR=COMPATIBLE,STRICT": {"FP_MKLDNN_OFF": "1",
                                                        "MKL_CBWR": "COMPATIBLE,STRICT"},
    "portable, oneDNN off, CBWR strict, ATen default, 1 thread": {
        "FP_MKLDNN_OFF": "1", "MKL_CBWR": "COMPATIBLE,STRICT", "ATEN_CPU_CAPABILITY": "default",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
}
CONVS = [(3, 16, 4, 2, 1, 64), (16, 16, 3, 1, 1, 32), (32, 64, 4, 2, 1, 16),
         (128, 128, 3, 1, 1, 4), (16, 3, 3, 1, 1, 64)]  # cin, cout, k, stride, pad, px


def _hash(tensor) -> str:
    return hashlib.sha256(tensor.detach().contiguous().numpy().tobytes()).hexdigest()[:16]


def measure(threads: int = 0) -> dict[str, str]:
    """The hashes of this process's arithmetic under its pins, with ``threads`` threads
    (0: as many as it has): the thread count splits sums, so it must be the reference's.
    Leaves torch's random state and thread count as it found them."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        with torch.random.fork_rng(devices=[]):
            return _ops(torch) | _training_step(torch)
    finally:
        torch.set_num_threads(before)


def _ops(torch) -> dict[str, str]:
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(1)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    out = {}
    a, b = r(512, 512), r(512, 512)
    out["matmul 512x512 (MKL sgemm)"] = _hash(a @ b)
    x, w = r(8, 512), r(128, 512)
    out["linear 8x512 -> 128"] = _hash(F.linear(x, w))
    for cin, cout, k, s, p, px in CONVS:
        xi = r(4, cin, px, px).requires_grad_()
        wi = r(cout, cin, k, k).mul_(0.1).requires_grad_()
        y = F.conv2d(xi, wi, stride=s, padding=p)
        name = f"conv{k}x{k}/{s} {cin}->{cout} @{px}"
        out[name + " fwd"] = _hash(y)
        gx, gw = torch.autograd.grad(y, (xi, wi), r(*y.shape))
        out[name + " grad input"] = _hash(gx)
        out[name + " grad weight"] = _hash(gw)
        out[name + " fwd, mkldnn off"] = _hash(_without_onednn(torch, F.conv2d, xi, wi, s, p))
    xg = r(4, 64, 16, 16).requires_grad_()
    yg = F.group_norm(xg, 8, r(64), r(64))
    out["group_norm 64ch/8 fwd"] = _hash(yg)
    out["group_norm grad"] = _hash(torch.autograd.grad(yg, xg, r(*yg.shape))[0])
    out["silu"] = _hash(F.silu(r(4, 64, 16, 16)))
    out["nearest x2"] = _hash(F.interpolate(r(4, 32, 16, 16), scale_factor=2, mode="nearest"))
    out["sum 1e6"] = _hash(r(1000, 1000).sum(dim=1))
    out["exp/log"] = _hash(torch.log1p(torch.exp(r(100000) * 0.1)))
    return out


def _without_onednn(torch, conv, x, w, stride, padding):
    # The attribute, not mkldnn.flags(), which also sets TF32 and warns about Intel GPUs.
    was = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        return conv(x, w, stride=stride, padding=padding)
    finally:
        torch.backends.mkldnn.enabled = was


ADAM_STEP = "weights after 1 AdamW step (toonvae.optim)"


def _training_step(torch) -> dict[str, str]:
    from toonvae.archs import ModelConfig, build
    from toonvae.losses import training_loss

    torch.manual_seed(0)
    model = build(ModelConfig("resnet", 64, 128))
    xb = torch.rand(32, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    mean, mu, logvar = model(xb)
    out = {"model fwd: mean": _hash(mean), "model fwd: mu": _hash(mu)}
    loss = training_loss("gaussian", xb, mean, mu, logvar, 1.0)[0]
    out["model loss"] = _hash(loss.reshape(1))
    loss.backward()
    out.update({f"grad {n}": _hash(p.grad) for n, p in model.named_parameters()
                if p.grad is not None})
    # The stages' optimizer, not torch.optim's: torch's CPU sqrt differs between vendors.
    from toonvae.optim import make_optimizer
    make_optimizer("adamw", list(model.parameters()), 4e-3, 1e-2, torch.device("cpu")).step()
    weights = b"".join(p.detach().numpy().tobytes() for p in model.parameters())
    out[ADAM_STEP] = hashlib.sha256(weights).hexdigest()[:16]
    return out


def cpu() -> dict:
    """What this machine is, from /proc/cpuinfo and sysfs (Linux; "unknown" elsewhere)."""
    import torch

    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": host.machine()}
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines()
    except OSError:
        return {**meta, "cpu": "unknown"}
    info = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first)}
    flags = info.get("flags", "").split()
    meta.update({"cpu": info.get("model name", "?"), "vendor": info.get("vendor_id", "?"),
                 "family/model/stepping": "/".join(info.get(k, "?") for k in (
                     "cpu family", "model", "stepping")),
                 "isa": [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "avx_vnni")
                         if f in flags]})
    caches = {}
    for index in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        part = {f: Path(index, f).read_text().strip() for f in ("size", "level", "type")}
        caches[Path(index).name] = f"{part['size']} L{part['level']} {part['type']}"
    meta["caches"] = caches
    return meta


def name_of(meta: dict) -> str:
    """A fingerprint file's name for this CPU model: vendor-model-family-model-stepping."""
    words = "".join(c if c.isalnum() else " " for c in meta.get("cpu", "unknown").lower())
    words = [w for w in words.split() if w not in ("r", "tm", "processor", "cpu")]
    fms = meta.get("family/model/stepping", "").replace("/", "-")
    return "-".join(words + ([fms] if fms else [])) + ".json"


def differing(mine: dict[str, str], reference: dict[str, str]) -> list[str]:
    """The ops both fingerprints hashed whose hashes differ, in the fingerprint's order."""
    return [op for op, h in mine.items() if op in reference and reference[op] != h]


def summary(ops: list[str]) -> str:
    """The differing ops in a line: the single ops by name, the gradients counted."""
    grads = [op for op in ops if op.startswith("grad ")]
    named = [op for op in ops if not op.startswith("grad ")]
    counted = [f"{len(grads)} parameter gradient{'s' if len(grads) > 1 else ''}"] if grads else []
    return ", ".join(named + counted)


def check(mode: str, reference: str | Path | None, device: str = "cpu") -> tuple[str, str | None]:
    """(the line for the platform record, a warning or None). Only portable numerics on
    the CPU promise the committed bytes, so only they are checked."""
    if mode != "portable" or device != "cpu":
        return f"not checked ({mode} numerics on {device})", None
    path = Path(reference) if reference else None
    if path is None or not path.is_file():
        return f"not checked (no {reference})", None
    try:
        ref = json.loads(path.read_text())
        ref_meta, portable = ref["meta"], ref["variants"]["portable"]
        ref_hashes, threads = portable["hashes"], int(portable["threads"])
    except (ValueError, KeyError, TypeError):
        raise ToonvaeError(f"{path} is not a fingerprint file (meta, variants.portable.hashes)"
                           f"; restore it with git checkout {path}") from None
    ops = differing(measure(threads), ref_hashes)
    if not ops:
        return "the committed results' arithmetic (every fingerprinted op agrees)", None
    theirs = f"{ref_meta.get('cpu', '?')} ({ref_meta.get('vendor', '?')})"
    record = (f"differs from the committed results' CPU, {theirs}, in {len(ops)} of "
              f"{len(ref_hashes)} ops")
    warning = (f"this CPU ({cpu()['cpu']}) computes {len(ops)} of {len(ref_hashes)} "
               f"fingerprinted ops differently from {theirs}, which made the committed "
               f"results: {summary(ops)}. Its outputs will not match the committed bytes; "
               f"python -m toonvae.fingerprint --compare {path} shows which settings agree")
    return record, warning


# What a variant's process runs: the pins and threads a stage would have, then measure.
CHILD = """
import json, os, sys, torch
if os.environ.get("FP_MKLDNN_OFF"):
    torch.backends.mkldnn.enabled = False
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))  # as the stages do
from toonvae import fingerprint
print(json.dumps({"meta": fingerprint.cpu(), "hashes": fingerprint.measure()}))
"""


def run_variant(change: dict[str, str]) -> dict:
    from toonvae import numerics

    env = {**os.environ, **numerics.pins("portable"), **change}
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                          text=True)
    if proc.returncode:
        raise SystemExit(f"fingerprint variant {change} failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout)


def fingerprint_file(names: list[str] | None = None) -> dict:
    """This CPU's fingerprint under every variant, or under those ``names``."""
    result = {"meta": None, "variants": {}}
    for name, change in VARIANTS.items():
        if names and name not in names:
            continue
        got = run_variant(change)
        result["meta"] = result["meta"] or got["meta"]
        result["variants"][name] = {"env": change, "threads": got["meta"]["threads"],
                                    "hashes": got["hashes"]}
    return result


def comparison(mine: dict, other: dict) -> list[str]:
    """Lines saying, per variant in both files, how many ops agree and which differ."""
    lines = []
    for name, variant in mine["variants"].items():
        theirs = other["variants"].get(name)
        if theirs is None:
            lines.append(f"{name}: not in the other file")
            continue
        ops = differing(variant["hashes"], theirs["hashes"])
        shared = [op for op in variant["hashes"] if op in theirs["hashes"]]
        unmatched = len(variant["hashes"]) - len(shared)
        lines.append(f"{name}: {len(shared) - len(ops)} ops the same, {len(ops)} differ"
                     + (f", {unmatched} not in the other file" if unmatched else ""))
        lines += [f"    DIFFER  {op}" for op in ops]
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m toonvae.fingerprint", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="write this CPU's fingerprint here (JSON)")
    ap.add_argument("--compare", help="another CPU's fingerprint file to compare with")
    ap.add_argument("--variant", action="append", choices=list(VARIANTS),
                    help="only this variant (repeatable; default: all)")
    args = ap.parse_args(argv)
    mine = fingerprint_file(args.variant)
    if args.out:
        Path(args.out).write_text(json.dumps(mine, indent=1) + "\n")
    print(json.dumps(mine["meta"]))
    if args.compare:
        other = json.loads(Path(args.compare).read_text())
        print("other:", json.dumps(other["meta"]))
        print("\n".join(comparison(mine, other)))
    else:
        for name, variant in mine["variants"].items():
            print(f"{name}: weights after one step {variant['hashes'][ADAM_STEP]}")
    print(f"(a file name for this CPU model: {name_of(mine['meta'])})")


if __name__ == "__main__":
    main()
