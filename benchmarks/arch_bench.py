"""Architectures against each other at equal training wall-clock, scored like the evaluate stage.

    python -m benchmarks.arch_bench --json experiments/archs.json   # both datasets, ~40 min
    python -m benchmarks.arch_bench --datasets anime --archs resnet,hvae --epochs 2
    python -m benchmarks.arch_bench --archs resnet:tconv,resnet:resize,resnet:resize-rgb \
        --same-epochs --json experiments/upsample.json --figures figures/upsample   # ~30 min

An arch is named as ``model.arch``, optionally with a ``model.upsample`` after a colon
(``resnet:tconv``); without one it takes params.yaml's. Settings of the ``model`` or ``train``
section follow it after ``+`` (``hvae+lr=0.004+latent_dim=672``, ``hvae+epochs=6``): that
arch's variant. ``--set key=value`` applies one to every arch (``--set batch_size=32``).

The first arch is the baseline: it trains with params.yaml's settings (``train.epochs``).
Every other arch first has its training step timed against the baseline's in this process
(``PROBE_STEPS`` batches each, after a warm-up), and gets the number of epochs that costs
about the same wall-clock; the table shows the train seconds each one actually took.
``--same-epochs`` gives every arch the baseline's epochs instead, for variants that cost
the same (the table's train seconds and images/s show whether they did). An arch's own
``+epochs=N`` wins over both. ``--plan`` only prints the epochs each arch would get, from the
step timing: measured on this CPU, they give a GPU sweep (``--set batch_size=32 --set
precision=fp32``) the CPU budget's number of steps.
Each trained model is scored by ``toonvae.evaluation.evaluate`` with params.yaml's
``evaluate`` section, as the evaluate stage does (IWAE and swd of both samplers included).
Needs the prepared data: ``dvc repro preprocess@anime preprocess@cartoon``.

On a CUDA machine it trains and scores there, as the stages do (``train.device``: batch
``auto``, bf16 autocast, channels_last), and times the steps there. At Kaggle scale:

    python -m benchmarks.gpu_pipeline --datasets anime --until preprocess --work /tmp/k
    cd /tmp/k/repo && python -m benchmarks.arch_bench --repo . --datasets anime

(run from the clone, so that its ``runtime.numerics: native`` applies; see
``research/gpu_runbook.sh --archs``).

With ``--figures DIR`` it also writes DIR/<dataset>.png: test faces, then each arch's
reconstructions, prior samples and mixture samples, row by row, and DIR/<dataset>-detail.png:
the centres of four test faces enlarged 4x, then each arch's reconstructions of them, where a
decoder's texture shows; ``--figures-of JSON`` redraws them for the rows of an earlier run
without scoring again.

``--temperatures 0.7,1.0,1.3`` also scores each model's prior samples drawn at each
temperature (every latent's prior spread scaled by t, NVAE's per-level temperature for
hvae), exactly as the evaluate stage scores ``swd_prior`` at t = 1, and prints a second
table of them against the floor.

``--prior-gaps`` also scores, level by level, how far each model's prior is from its own
posterior: decodes whose top latent levels are the posterior means of the floor's train
images and whose lower levels are the prior's draws (hvae: the 4x4 map, then 4x4 and 8x8,
then ``all``; a flat latent: ``all``), against the test images as ``swd_prior``. ``none`` is
``swd_prior``; the last is the floor's own images, reconstructed.

Each row also has ``flat_detail``: over the test pixels whose 3x3 neighbourhood is flat in
the original (within 2 grey levels), the reconstruction's mean distance to its own 3x3 mean,
in grey levels. A clean reconstruction is flat there too; a checkerboard is not.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path

from toonvae.stage import pin_numerics, run

pin_numerics()  # as the stages do: before torch starts

import torch  # noqa: E402

from benchmarks.harness import ROOT  # noqa: E402
from toonvae import archs  # noqa: E402
from toonvae import params as params_mod  # noqa: E402
from toonvae.archs import ModelConfig  # noqa: E402
from toonvae.data import PreparedData, to_float  # noqa: E402
from toonvae.evaluation import evaluate  # noqa: E402
from toonvae.metrics import decode_in_batches  # noqa: E402
from toonvae.model import count_parameters, load_model  # noqa: E402
from toonvae.numerics import thread_count  # noqa: E402
from toonvae.prior_gaps import learned_prior_swd, prior_gaps  # noqa: E402
from toonvae.runtime import pick_device, resolve_precision, set_determinism  # noqa: E402
from toonvae.swd import SlicedWasserstein  # noqa: E402
from toonvae.tables import brief_table, table  # noqa: E402
from toonvae.train import (TrainConfig, new_state, resolve_batch_size, resolved,  # noqa: E402
                           train, train_step)

PROBE_STEPS = 20
HVAE_LATENT = 1344  # hierarchical archs' latent_dim: hvae's 4 channels on each of its 4x4,
# 8x8 and 16x16 maps at 64 px
KEYS = ("mse", "psnr", "elbo_bpd", "iwae_bpd", "swd_prior", "swd_gmm", "swd_floor", "kl",
        "active_units", *(f"{k}_{s}" for k in ("fd", "kid", "precision", "recall")
                          for s in ("prior", "gmm", "floor")))
DETAIL_IMAGES = 200


def settings(texts: list[str]) -> dict:
    """``key=value`` texts as {key: value}, the value read as YAML (``0.004``, ``[8, 16]``)."""
    import yaml

    out = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise SystemExit(f"arch_bench: {text!r} is not key=value (e.g. lr=0.004)")
        out[key] = yaml.safe_load(value)
    return out


def configs_of(p, spec: str, hvae_latent: int, base: TrainConfig,
               common: dict) -> tuple[ModelConfig, TrainConfig, int | None]:
    """(model, training, explicit epochs or None) of ``arch[:upsample][+key=value...]``:
    params.yaml's (``hvae_latent`` for a hierarchical arch), then ``common`` (``--set``), then the spec's
    own settings."""
    name, *own = spec.split("+")
    arch, _, upsample = name.partition(":")
    latent_dim = hvae_latent if archs.arch(arch).hierarchical else p.latent_dim
    mc = ModelConfig(arch, p.image_size, latent_dim, tuple(p.model.channels),
                     p.model.likelihood, upsample or p.model.upsample)
    tc = base
    model_keys = {f.name for f in fields(ModelConfig)} - {"arch", "image_size", "upsample"}
    train_keys = {f.name for f in fields(TrainConfig)}
    changes = {**common, **settings(own)}
    epochs = changes.pop("epochs", None)
    for key, value in changes.items():
        if key in model_keys:
            mc = replace(mc, **{key: tuple(value) if key == "channels" else value})
        elif key in train_keys:
            tc = replace(tc, **{key: value})
        else:
            raise SystemExit(f"arch_bench: {key!r} in {spec!r} is no setting of the model or "
                             f"train section (e.g. lr, latent_dim, batch_size)")
    return mc, tc, epochs


def flat_detail(x: torch.Tensor, recon: torch.Tensor) -> float:
    """Mean |recon - its 3x3 mean| in grey levels, over the pixels (all channels) whose 3x3
    neighbourhood in x spans under 2 grey levels: texture a decoder adds to flat regions."""
    import torch.nn.functional as F

    def pad(t):
        return F.pad(t, (1, 1, 1, 1), mode="replicate")
    spread = F.max_pool2d(pad(x), 3, 1) + F.max_pool2d(-pad(x), 3, 1)
    flat = (spread < 2 / 255).all(1, keepdim=True).expand_as(x)
    detail = (recon - F.avg_pool2d(pad(recon), 3, 1)).abs()
    return round(float(detail[flat].mean()) * 255, 3)


def step_seconds(probes: dict, lr: float, device: torch.device) -> dict[str, float]:
    """{name: seconds per training step (forward, loss, backward, clipping, AdamW)} on ``device`` as
    train runs it there (autocast, memory layout), for ``probes`` {name: (model config,
    batch, precision)}: the median of PROBE_STEPS, the archs' steps taken in turn, so that
    a machine that slows down midway (another guest, the clock) slows all of them alike."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    runs = {}
    for name, (mc, batch, precision) in probes.items():
        torch.manual_seed(0)
        cfg = resolved(TrainConfig(batch_size=len(batch), lr=lr, weight_decay=0.01,
                                   schedule="constant", warmup_steps=0, precision=precision),
                       mc.arch, device)
        state = new_state(mc, cfg, device, len(batch))  # the train stage's step, clip and all
        if state.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        runs[name] = (state, batch)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(PROBE_STEPS + 3):
        for name, (state, batch) in runs.items():
            sync()
            t0 = time.perf_counter()
            train_step(state, batch)
            sync()
            if i >= 3:  # the first steps allocate
                times[name].append(time.perf_counter() - t0)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def prior_swd_at(model, data: PreparedData, cfg, seed: int, device,
                 temperatures: list[float]) -> dict[str, float]:
    """{t: swd of prior samples at temperature t}, drawn and scored as the evaluate stage
    draws and scores ``swd_prior`` (the same n, seed and batches), so t = 1 is that value."""
    test, train_split = data.split("test"), data.split("train")
    n = min(len(test), len(train_split), cfg.swd_images)
    to_test = SlicedWasserstein(to_float(test[:n]), seed, device)
    out = {}
    for t in temperatures:
        z = model.sample_latents(n, torch.Generator().manual_seed(seed), temperature=t)
        out[f"{t:g}"] = to_test(decode_in_batches(model, z, cfg.batch_size, device))
    return out


def short(arch: str) -> str:
    """A figure's row label: ``resnet:resize-rgb`` is ``resize-rgb`` (the margin is narrow)."""
    return arch.split(":", 1)[-1]


def comparison_figure(models: dict, test, path: Path, n: int = 8) -> None:
    """Test faces, then per arch: reconstructions, prior samples, mixture samples."""
    from toonvae.figures import labelled_rows

    x = to_float(test[:n])
    rows = [("test faces", x)]
    for arch, model in models.items():  # labels short enough for the figure's margin
        gen = torch.Generator().manual_seed(0)
        rows.append((f"{short(arch)} recon.", model.reconstruct(x).float()))
        for sampler in ("prior", "gmm"):
            if sampler == "gmm" and model.gmm is None:
                continue
            rows.append((f"{short(arch)} {sampler}", model.sample(n, gen, sampler=sampler)))
    labelled_rows([r for _, r in rows], [label for label, _ in rows], path)


def detail_figure(models: dict, test, path: Path, n: int = 4, zoom: int = 4) -> None:
    """The centre half of n test faces, enlarged, then each arch's reconstruction of it."""
    from toonvae.figures import labelled_rows

    x = to_float(test[:n])
    size = x.shape[-1]
    lo, hi = size // 4, size - size // 4

    def centre(t):
        return torch.nn.functional.interpolate(t[..., lo:hi, lo:hi].float(), scale_factor=zoom,
                                               mode="nearest")
    rows = [("test faces", centre(x))]
    rows += [(f"{short(arch)} recon.", centre(model.reconstruct(x)))
             for arch, model in models.items()]
    labelled_rows([r for _, r in rows], [label for label, _ in rows], path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="anime,cartoon")
    ap.add_argument("--archs", default="resnet,hvae", help="the first is the baseline")
    ap.add_argument("--epochs", type=int, help="the baseline's (default: params.yaml's)")
    ap.add_argument("--same-epochs", action="store_true",
                    help="every arch trains the baseline's epochs (no step timing)")
    ap.add_argument("--hvae-latent-dim", type=int, default=HVAE_LATENT)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a model or train setting for every arch, e.g. batch_size=32")
    ap.add_argument("--plan", action="store_true",
                    help="only time the steps and print each arch's epochs")
    ap.add_argument("--temperatures", help="also score prior samples at these, e.g. 0.7,1,1.3")
    ap.add_argument("--prior-gaps", action="store_true",
                    help="also score decodes with the top latent levels from the posterior")
    ap.add_argument("--learned-prior", metavar="DEPTHS",
                    help="also fit a flow prior post hoc to the top k latent levels, for each k "
                    "given (e.g. 1,2; a flat latent has 1), and score its samples as the "
                    "prior's are scored")
    ap.add_argument("--flow-steps", type=int, default=2000,
                    help="optimizer steps of each --learned-prior flow")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--figures", type=Path, help="write DIR/<dataset>.png")
    ap.add_argument("--repo", type=Path, default=ROOT,
                    help="the pipeline whose params.yaml and prepared data to use")
    ap.add_argument("--table", type=Path, help="only print the table of a --json file")
    ap.add_argument("--brief", action="store_true",
                    help="with --table: one row per arch, each dataset's psnr, iwae and swd "
                         "from the prior and the mixture side by side")
    ap.add_argument("--figures-of", type=Path, metavar="JSON",
                    help="only redraw --figures for the rows of a --json file: each model is "
                         "trained again with its row's epochs (the same seed, so the same "
                         "weights), and not scored")
    args = ap.parse_args()
    if args.table:
        rows = json.loads(args.table.read_text())
        print(brief_table(rows) if args.brief else table(rows))
        return
    planned = json.loads(args.figures_of.read_text()) if args.figures_of else None
    p = params_mod.load(args.repo / "params.yaml")
    archs = args.archs.split(",")
    base_cfg = TrainConfig.from_params(p)
    if args.epochs:
        base_cfg = replace(base_cfg, epochs=args.epochs)
    common = settings(args.set)
    device = pick_device(p.train.device)  # as train and evaluate pick it
    rows = []
    for dataset in args.datasets.split(","):
        data = PreparedData(args.repo / "data" / "prepared" / dataset)
        configs, trains, explicit = {}, {}, {}
        for a in archs:
            configs[a], trains[a], explicit[a] = configs_of(p, a, args.hvae_latent_dim,
                                                            base_cfg, common)
        set_determinism(0, thread_count(p.runtime.numerics, p.train.threads), True,
                        p.runtime.numerics)
        timed = list(dict.fromkeys([archs[0]] + [a for a in archs if explicit[a] is None]))
        measured = planned is None and not args.same_epochs and len(timed) > 1
        steps = {a: 1.0 for a in archs}  # seconds per training image: an epoch's cost
        if measured:
            sizes = {a: resolve_batch_size(trains[a].batch_size, device, 1, configs[a].arch)
                     for a in timed}
            probes = {a: (configs[a], to_float(data.split("train")[:sizes[a]], device),
                          resolve_precision(trains[a].precision, device)) for a in timed}
            steps.update({a: t / sizes[a] for a, t in step_seconds(probes, 0.002, device).items()})

        def budget(a: str) -> int:  # the epochs that cost the baseline's wall-clock
            return explicit[a] or max(1, math.floor(
                trains[archs[0]].epochs * steps[archs[0]] / steps[a] + 0.5))
        if args.plan:
            for a in archs:
                cost = (f"a training image costs {steps[a] / steps[archs[0]]:.3f}x the first's"
                        if measured and a in timed else
                        "as given" if explicit[a] else "the baseline's")
                print(f"{dataset} {a}: {budget(a)} epochs ({cost})")
            continue
        models = {}
        with tempfile.TemporaryDirectory() as tmp:
            for index, arch in enumerate(archs):
                if planned is not None:
                    row, = (r for r in planned if (r["dataset"], r["arch"]) == (dataset, arch))
                    configs[arch] = replace(configs[arch], latent_dim=row["latent_dim"])
                    epochs = row["epochs"]
                else:
                    epochs = budget(arch)
                cfg = replace(trains[arch], epochs=epochs)
                out = Path(tmp) / str(index)
                t0 = time.perf_counter()
                result = train(data.root, out / "model.pt", out / "curves", configs[arch], cfg)
                train_s = time.perf_counter() - t0
                model, _ = load_model(out / "model.pt")  # the figures draw on the CPU
                models[arch] = model
                if planned is not None:
                    continue
                set_determinism(p.seed, thread_count(p.runtime.numerics, p.train.threads),
                                True, p.runtime.numerics)
                t0 = time.perf_counter()
                scored = model if device.type == "cpu" else load_model(out / "model.pt", device)[0]
                scores, _ = evaluate(scored, data, p.evaluate, "gmm", p.seed, device,
                                     attributes=False)  # the table has no column for them
                x = to_float(data.split("test")[:DETAIL_IMAGES])
                scores["flat_detail"] = flat_detail(x, model.reconstruct(x))
                if args.temperatures:
                    scores["swd_prior_at"] = prior_swd_at(
                        scored, data, p.evaluate, p.seed, device,
                        [float(t) for t in args.temperatures.split(",")])
                if args.prior_gaps:
                    scores["swd_gaps"] = prior_gaps(scored, data, p.evaluate, p.seed, device)
                if args.learned_prior:
                    t1 = time.perf_counter()
                    scores["swd_flow"] = learned_prior_swd(
                        scored, data, p.evaluate, p.seed, device,
                        [int(k) for k in args.learned_prior.split(",")], steps=args.flow_steps)
                    scores["flow_s"] = round(time.perf_counter() - t1, 1)
                row = {"dataset": dataset, "arch": arch, "latent_dim": configs[arch].latent_dim,
                       "device": device.type, "batch": result["batch_size"], "epochs": epochs,
                       "train_s": round(train_s, 1),
                       "evaluate_s": round(time.perf_counter() - t0, 1),
                       "parameters": count_parameters(model),
                       "images_per_s": round(result["images"] * epochs / train_s, 1),
                       "epochs_s": round(result["parts"].seconds.get("epochs", 0.0), 1),
                       "step_ratio": None if not measured or arch not in timed
                       else round(steps[arch] / steps[archs[0]], 3),
                       **{k: scores[k] for k in (*KEYS, "flat_detail", "swd_prior_at",
                                                      "swd_gaps", "swd_flow", "flow_s")
                          if k in scores}}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
        if args.figures:
            args.figures.mkdir(parents=True, exist_ok=True)
            comparison_figure(models, data.split("test"), args.figures / f"{dataset}.png")
            detail_figure(models, data.split("test"), args.figures / f"{dataset}-detail.png")
    if planned is not None or args.plan:
        return
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    run(main)  # as the stages do: errors in one line; the collector back on
