"""The training loop: deterministic, logged with dvclive, one model file at the end."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from toonvae import archs, distributed, fingerprint, losses
from toonvae.archs import DEFAULT_ARCH, ModelConfig, arch, build
from toonvae.archs.base import LatentVAE
from toonvae.checkpoint import Checkpointer, Position, data_digest
from toonvae.data import ImageRows, PreparedData, batches, prefetched, to_float
from toonvae.distributed import World
from toonvae.errors import ToonvaeError
from toonvae.model import count_parameters, save_model
from toonvae.numerics import platform, thread_count
from toonvae.optim import make_optimizer
from toonvae.params import SAME_RUN, TrainParams
from toonvae.progress import Parts, log, progress
from toonvae.runtime import (autocast, pick_device, resolve_precision, set_determinism,
                             use_channels_last)
from toonvae.flow import fit_flow
from toonvae.sampler import fit_gmm, posterior_draws, posterior_means, subset

# train.batch_size: auto, per device type. The CPU runs at the same speed per image from
# batch 32 to 128 (benchmarks/train_bench.py), so it keeps the batch each arch's recipe was
# tuned at (its registry entry's cpu_batch); a GPU pays a fixed cost per step, so it needs
# large batches to be busy.
AUTO_BATCH = {"mps": 32, "cuda": 512}
SYNC_EVERY = 32  # batches between loss read-backs on a GPU
DEVICE_DATA_FRACTION = 0.5  # put a split in GPU memory when it takes at most this much free memory
# Work after the last epoch is capped so that it does not grow with the dataset: the
# log-scale grid is fitted on at most LOG_SCALE_IMAGES validation images and the latent
# mixture on the posterior means of at most GMM_IMAGES training images (a seeded subset).
LOG_SCALE_IMAGES = 500
GMM_IMAGES = 10_000
FLOW_IMAGES = 10_000  # the learned prior is fitted to FLOW_DRAWS posterior draws of each
FLOW_DRAWS = 4  # of at most this many training images, early-stopped on the validation set's


@dataclass(frozen=True)
class TrainConfig(TrainParams):
    """params.yaml's ``train`` section plus the values of other sections that training reads.

    ``train`` resolves its ``auto`` and null values (batch size, lr, device, precision)
    before training starts, so the resolved config is what the run is, and ``run_settings``
    is derived from it: a new setting needs no list updated."""
    seed: int = 0
    gmm_components: int = field(default=10, metadata=SAME_RUN)  # of the mixture fitted to
    # posterior means after training; the training loop (what a checkpoint holds) is the same
    flow_levels: int = field(default=0, metadata=SAME_RUN)  # of the learned prior fitted
    flow_steps: int = field(default=1500, metadata=SAME_RUN)  # after training (toonvae.flow)
    numerics: str = "portable"  # runtime.numerics (toonvae.numerics)

    @classmethod
    def from_params(cls, p) -> "TrainConfig":
        """From a ``toonvae.params.Params``."""
        train = {f.name: getattr(p.train, f.name) for f in dataclasses.fields(p.train)}
        return cls(**train, seed=p.seed, gmm_components=p.sampler.gmm_components,
                   flow_levels=p.sampler.flow_levels, flow_steps=p.sampler.flow_steps,
                   numerics=p.runtime.numerics)

    def run_settings(self) -> dict:
        """Every setting that changes the training loop's numbers: what a checkpoint must
        match to be resumed. Fields marked ``SAME_RUN`` (checkpoint_every, nproc, ...) are
        left out: a run resumes across them."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not f.metadata.get("same_run")}

    def model_file_record(self) -> dict:
        """The settings the model file records beside the weights (``toonvae info``)."""
        return {key: getattr(self, key) for key in MODEL_FILE_RECORD}


# A summary, in the order model files have always listed it (their bytes depend on it).
MODEL_FILE_RECORD = ("epochs", "lr", "batch_size", "beta", "seed", "optimizer", "schedule", "ema")


def resolve_batch_size(batch_size: int | str, device: torch.device, processes: int = 1,
                       arch_name: str = DEFAULT_ARCH) -> int:
    """``train.batch_size`` as a number of images per optimizer step (over all processes).

    ``auto`` is the arch's ``cpu_batch`` on a CPU (in all), ``AUTO_BATCH`` of the device
    type elsewhere (per GPU on CUDA, one GPU per process); rounded up so that the
    processes share it evenly.
    """
    if batch_size != "auto":
        return int(batch_size)
    kind = torch.device(device).type
    per_device = AUTO_BATCH.get(kind, arch(arch_name).cpu_batch)
    total = per_device * processes if kind == "cuda" else per_device
    return -(-total // processes) * processes


class Recipe:
    """Learning rate and KL weight at each global batch step: pure functions of the
    step, so a resumed run continues on exactly the same curves."""

    def __init__(self, cfg: TrainConfig, lr: float, steps_per_epoch: int):
        self.cfg, self.lr, self.steps_per_epoch = cfg, lr, max(steps_per_epoch, 1)
        self.total = cfg.epochs * self.steps_per_epoch
        # A short run (little data, few epochs) must not spend itself warming up.
        self.warmup = min(cfg.warmup_steps, self.total // 4)

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if self.cfg.schedule == "constant":
            return self.lr
        done = (step - self.warmup) / max(self.total - self.warmup, 1)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(done, 1.0)))

    def beta_at(self, step: int) -> float:
        ramp = self.cfg.kl_warmup_epochs * self.steps_per_epoch
        return self.cfg.beta * (min(1.0, (step + 1) / ramp) if ramp > 0 else 1.0)


def make_ema(model: LatentVAE, decay: float):
    """torch's AveragedModel with an exponential average whose decay starts low,
    min(decay, (1 + n) / (10 + n)) after n updates (as TensorFlow's EMA does), so a
    short run's average is not dominated by the random initial weights."""
    from torch.optim.swa_utils import AveragedModel

    def avg_fn(averaged, current, n):
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        return d * averaged + (1.0 - d) * current
    return AveragedModel(model, avg_fn=avg_fn, use_buffers=True)


@dataclass
class TrainState:
    """What a training step reads and changes: the network, its optimizer and recipe, the
    loss, and where training stands (``step``, the global optimizer step)."""
    net: torch.nn.Module  # what the step runs: the model, or DistributedDataParallel around it
    optimizer: torch.optim.Optimizer
    recipe: Recipe
    likelihood: str  # the training objective (losses.training_loss)
    free_bits: float = 0.0
    clip: float | None = None  # the gradient norm's clip (the arch's), or None
    ema: object | None = None  # torch's AveragedModel (make_ema), updated after every step
    precision: str = "fp32"
    channels_last: bool = False
    step: int = 0

    @property
    def model(self) -> LatentVAE:
        """The model inside ``net``."""
        return getattr(self.net, "module", self.net)


def train_step(state: TrainState, x: torch.Tensor) -> torch.Tensor:
    """One optimizer step on the float images ``x`` (already on the device, in the memory
    format of ``state.channels_last``): the recipe's lr and beta at ``state.step``, the
    loss, its gradient, the clip, the update, the weight average. Returns the detached
    [negative ELBO, reconstruction, KL] of the batch (beta 1, no free bits), unread, so a
    GPU is not waited for."""
    with autocast(state.precision, x.device):
        mean, mu, logvar = state.net(x)
    beta = state.recipe.beta_at(state.step)
    for group in state.optimizer.param_groups:
        group["lr"] = state.recipe.lr_at(state.step)
    loss, recon, kl = losses.training_loss(state.likelihood, x, mean, mu, logvar, beta,
                                           state.free_bits)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if state.clip:
        torch.nn.utils.clip_grad_norm_(state.net.parameters(), state.clip)
    state.optimizer.step()
    if state.ema is not None:
        state.ema.update_parameters(state.model)
    state.step += 1
    return torch.stack([recon + kl, recon, kl]).detach()


def eval_step(model: torch.nn.Module, x: torch.Tensor, likelihood: str,
              precision: str = "fp32") -> torch.Tensor:
    """The detached [negative ELBO, reconstruction, KL] of the batch ``x``, no gradients."""
    with autocast(precision, x.device):
        mean, mu, logvar = model(x)
    _, recon, kl = losses.training_loss(likelihood, x, mean, mu, logvar, 1.0)
    return torch.stack([recon + kl, recon, kl]).detach()


@dataclass
class Pass:
    """How one pass over a split runs: ``batch_size`` images per step on ``device``, its
    share of each batch under DDP (``world``), losses read back (and checked for NaN)
    every ``sync_every`` batches (default: every batch on the CPU, every ``SYNC_EVERY`` on
    a GPU, so the host does not wait for the device in between)."""
    batch_size: int
    device: torch.device
    world: World = field(default_factory=World)
    sync_every: int | None = None
    channels_last: bool = False

    def __post_init__(self):
        self.device = torch.device(self.device)
        if self.sync_every is None:
            self.sync_every = 1 if self.device.type == "cpu" else SYNC_EVERY


def train_epoch(state: TrainState, array, how: Pass, rng: np.random.Generator, epoch: int,
                start: Position | None = None, after_step=None, desc: str = "") -> dict:
    """One shuffled pass of ``train_step`` over ``array``; the mean losses.

    ``array`` is a split on disk (``ImageRows``) or a uint8 tensor already on the device.
    ``start`` resumes the epoch after its first ``start.step`` batches, with the running
    sums it had then; ``after_step(step, totals, seen)`` is called after each batch (it
    forces a read-back every batch: a checkpoint never holds weights past an unchecked loss).
    """
    state.net.train()
    steps = (len(array) // how.batch_size if len(array) >= how.batch_size
             else math.ceil(len(array) / how.batch_size))
    start = start or Position(epoch)
    state.step = epoch * steps + start.step
    return _pass(lambda x: train_step(state, x), array, how, steps, epoch, start, after_step,
                 rng, desc, lambda value, where: _diverged(value, where, state))


def validate(model: torch.nn.Module, array, likelihood: str, how: Pass, epoch: int = 0,
             precision: str = "fp32", desc: str = "validation") -> dict:
    """The mean losses of ``model`` over ``array``, in order, with no gradients."""
    model.eval()
    steps = math.ceil(len(array) / how.batch_size)
    with torch.no_grad():
        return _pass(lambda x: eval_step(model, x, likelihood, precision), array, how, steps,
                     epoch, Position(epoch), None, None, desc,
                     lambda value, where: ToonvaeError(
                         f"the validation loss became {value} {where}; the model diverged: "
                         "lower train.lr and retrain"))


def _pass(step, array, how: Pass, n_batches: int, epoch: int, start: Position, after_step,
          rng, desc: str, diverged) -> dict:
    """Run ``step`` on each batch (shuffled by ``rng`` and dropping a last partial batch,
    or in order where ``rng`` is None) and sum its losses, weighted by images. Under DDP
    each process takes its share of every batch, and the read-back sums the losses over
    all processes, so every process sees the same totals."""
    totals = np.array(start.totals, dtype=np.float64)
    seen = start.seen
    world, device = how.world, how.device
    sync_every = 1 if after_step is not None else how.sync_every
    pending: list[tuple[int, int, torch.Tensor]] = []  # (step, images, [loss, recon, kl])

    def read_back():
        nonlocal totals, seen
        if world.distributed:  # image-weighted sums over every process, then means
            sums = torch.stack([torch.cat([v.double() * n, v.new_tensor([n], dtype=torch.float64)])
                                for _, n, v in pending])
            sums = distributed.all_sum(sums).cpu().numpy()
            counts = sums[:, 3]
            values = sums[:, :3] / np.maximum(counts, 1)[:, None]
            pending[:] = [(i, int(n), v) for (i, _, v), n in zip(pending, counts)]
        else:
            values = torch.stack([v for _, _, v in pending]).cpu().double().numpy()
        for (i, n, _), row in zip(pending, values):
            if not np.isfinite(row[0]):
                raise diverged(float(row[0]), f"at epoch {epoch + 1}, batch {i + 1} of {n_batches}")
            totals += n * row
            seen += n
            if after_step is not None:
                after_step(i + 1, totals, seen)
        bar.update(len(pending))
        pending.clear()

    bar = progress(total=n_batches, desc=desc, unit="batch")
    bar.update(start.step)
    with bar:
        reader = batches(array, how.batch_size, shuffle=rng is not None, rng=rng,
                         drop_last=rng is not None, start=start.step,
                         shard=(world.rank, world.size))
        if device.type == "cuda" and not isinstance(array, torch.Tensor):
            reader = prefetched(reader, pin=True)  # a split streamed from disk
        for i, xb in enumerate(reader, start=start.step):
            if len(xb) == 0:  # a last validation batch smaller than the number of processes
                pending.append((i, 0, torch.zeros(3, device=device)))
            else:
                x = to_float(xb, device)
                if how.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                pending.append((i, len(x), step(x)))
            if len(pending) >= sync_every:  # in step with the other processes' read-backs
                read_back()
        if pending:
            read_back()
    loss, recon, kl = totals / max(seen, 1)
    return {"loss": loss, "recon": recon, "kl": kl}


def _diverged(value: float, where: str, state: TrainState) -> ToonvaeError:
    lr = state.recipe.lr  # the configured lr, not the scheduled one
    return ToonvaeError(f"the training loss became {value} {where}; training stopped: lower "
                        f"train.lr (now {lr:g}, try {lr / 4:g}) or check the data")


GRID_ELEMENTS = 2**23  # pixel values per chunk of the log-scale grid: bounded memory
LOG_SCALE_GRID = 141  # log-scales from losses.LOG_SCALE_MIN to 0, 0.05 apart
COARSE_EVERY = 8  # the grid is searched at every 8th scale first, then around the best


@torch.inference_mode()
def fit_log_scale(model: LatentVAE, array, batch_size: int, device,
                  max_images: int = LOG_SCALE_IMAGES) -> None:
    """Set ``model.log_scale`` to the maximum-likelihood scale per channel.

    Training uses a per-batch scale (gaussian, logistic) or none (the notebook's MSE), so
    every model gets the same treatment after training: the per-channel scale that
    maximises the likelihood of the validation reconstructions (from sampled z, as
    in the ELBO), found on a fine grid of ``LOG_SCALE_GRID`` log-scales.

    Work is bounded: it uses the first ``max_images`` images (a split is a seeded shuffle,
    so that is a random subset) and at most 2^24 pixel values of them, reconstructs them
    once, and evaluates the likelihood a chunk of scales at a time (one broadcast kernel,
    not one per scale), at every ``COARSE_EVERY``-th scale and then at every scale around
    the best of those: the grid's minimum, since the likelihood of a scale has one minimum.
    """
    model.eval()
    pixel_nll = losses.PIXEL_NLL[archs.eval_likelihood(model.cfg)]
    values = int(np.prod(array.shape[1:]))
    n = min(len(array), max_images, max(1, 2**24 // values))
    pairs = []  # (images, reconstructions) of each batch
    for xb in batches(array[:n] if n < len(array) else array, batch_size):
        x = to_float(xb, device)
        pairs.append((x, model(x)[0].float()))
    grid = torch.linspace(losses.LOG_SCALE_MIN, 0.0, LOG_SCALE_GRID, device=device)
    nll = torch.full((len(grid), 3), float("inf"), device=device)

    def fill(rows: list[int]) -> None:
        rows = torch.tensor(rows, device=device)
        nll[rows] = 0.0
        for x, mean in pairs:
            step = max(1, GRID_ELEMENTS // x.numel())
            for first in range(0, len(rows), step):
                chunk = rows[first:first + step]
                shape = (len(chunk), *x.shape)
                nll[chunk] += pixel_nll(x.expand(shape), mean.expand(shape),
                                        grid[chunk].view(-1, 1, 1, 1, 1)).sum((1, 3, 4))

    coarse = sorted({*range(0, len(grid), COARSE_EVERY), len(grid) - 1})
    fill(coarse)
    near = set()
    for best in nll.argmin(0).tolist():
        near |= set(range(max(best - COARSE_EVERY + 1, 0),
                          min(best + COARSE_EVERY, len(grid))))
    fill(sorted(near - set(coarse)))
    model.log_scale.data.copy_(grid[nll.argmin(0)].view(1, 3, 1, 1))


def stage_on_device(rows: ImageRows, device: torch.device,
                    budget_bytes: int | None = None) -> ImageRows | torch.Tensor:
    """The split as one uint8 tensor in ``device`` memory when it fits in ``budget_bytes``
    (default: half the GPU's free memory): batches are then sliced on the device, with
    no host reads or copies. Otherwise the split stays on disk."""
    nbytes = len(rows) * int(np.prod(rows.shape[1:]))
    if budget_bytes is None:
        budget_bytes = int(torch.cuda.mem_get_info(device)[0] * DEVICE_DATA_FRACTION)
    if nbytes > budget_bytes:
        return rows
    out = torch.empty(rows.shape, dtype=torch.uint8, device=device)
    for first in range(0, len(rows), 4096):  # bounded host memory while copying
        out[first:first + 4096] = torch.from_numpy(rows[first:first + 4096])
    return out


def _live(curves_dir: Path):
    """dvclive's logger; it crashes in a git repo without commits, so say what to do."""
    from dvclive import Live  # slow import; only the train stage needs it
    from scmrepo.exceptions import SCMError

    try:
        return Live(str(curves_dir), dvcyaml=False, save_dvc_exp=False, report=None)
    except SCMError as exc:
        raise ToonvaeError(f"dvclive cannot log here ({exc}); make a first git commit") from None


def train(data_dir: Path, model_path: Path, curves_dir: Path, model_cfg: ModelConfig,
          cfg: TrainConfig, checkpoint_path: Path | None = None,
          fingerprint_of_committed: Path | str | None = None) -> dict:
    """Train a VAE on the prepared data in ``data_dir``; write the model and its curves.

    With ``checkpoint_path``, training state is saved there after every epoch (and every
    ``cfg.checkpoint_every`` batches), a run killed midway resumes from it and ends with
    the same bytes as an uninterrupted run, and it is deleted once the model is written.

    Started by torchrun (``toonvae.distributed``), it trains with DistributedDataParallel:
    the processes share each batch, and rank 0 alone checkpoints and writes the outputs.

    ``fingerprint_of_committed``: the committed results' CPU fingerprint
    (``toonvae.fingerprint``); before training, rank 0 warns if this CPU computes any of
    its ops differently, and the model's platform record says whether it agreed.
    """
    world = distributed.world()
    set_determinism(cfg.seed, thread_count(cfg.numerics, cfg.threads, world.local_size),
                    cfg.deterministic, cfg.numerics)
    device = pick_device(cfg.device)
    record = platform(cfg.numerics)
    if world.main:
        record["arithmetic"], warning = fingerprint.check(cfg.numerics, fingerprint_of_committed,
                                                          device.type)
        if warning:
            log(f"warning: {warning}")
    cfg = resolved(cfg, model_cfg.arch, device, world.size)
    if not world.distributed:
        return _train(data_dir, model_path, curves_dir, model_cfg, cfg, checkpoint_path,
                      device, world, record)
    try:
        device = distributed.init(device, world)
        return _train(data_dir, model_path, curves_dir, model_cfg, cfg, checkpoint_path,
                      device, world, record)
    except Exception as exc:
        if distributed.peer_lost(exc):  # the launcher reports the process that failed first
            raise SystemExit(distributed.PEER_LOST) from None
        raise
    finally:
        distributed.finish()


def resolved(cfg: TrainConfig, arch_name: str, device: torch.device,
             processes: int = 1) -> TrainConfig:
    """``cfg`` with its auto and null values decided: the batch size, the arch's lr, the
    device type and the precision it trains in."""
    return dataclasses.replace(
        cfg, batch_size=resolve_batch_size(cfg.batch_size, device, processes, arch_name),
        lr=cfg.lr if cfg.lr is not None else arch(arch_name).lr, device=device.type,
        precision=resolve_precision(cfg.precision, device))


def _train(data_dir, model_path, curves_dir, model_cfg: ModelConfig, cfg: TrainConfig,
           checkpoint_path, device, world: World, record: dict) -> dict:
    parts = Parts(sync=torch.cuda.synchronize if device.type == "cuda" else None)
    data = PreparedData(data_dir)
    if data.image_size != model_cfg.image_size:
        raise ToonvaeError(f"{data_dir}: prepared at {data.image_size} px but image_size is "
                           f"{model_cfg.image_size}; rerun the preprocess stage")
    train_set, val_set = data.split("train"), data.split("val")
    if world.distributed and len(train_set) < cfg.batch_size:
        raise ToonvaeError(f"train.nproc: {world.size} processes share each batch of "
                           f"train.batch_size {cfg.batch_size}, but there are only "
                           f"{len(train_set)} training images; lower train.batch_size")
    if device.type == "cuda":
        with parts("data to device"):
            train_set, val_set = (stage_on_device(train_set, device),
                                  stage_on_device(val_set, device))
    state = new_state(model_cfg, cfg, device, len(train_set))
    how = Pass(cfg.batch_size, device, world, channels_last=state.channels_last)
    log(f"training {model_cfg.arch} VAE ({count_parameters(state.model):,} parameters, "
        f"{state.likelihood} likelihood) on {len(train_set)} images, batch {cfg.batch_size}, "
        f"lr {cfg.lr:g}, device {device}, {cfg.precision}"
        + (", channels_last" if state.channels_last else "")
        + (", data in device memory" if isinstance(train_set, torch.Tensor) else "")
        + (f", {world.size} processes (DDP, {'nccl' if device.type == 'cuda' else 'gloo'})"
           if world.distributed else ""))

    ckpt = None
    pos = Position()
    if checkpoint_path is not None:
        run = {"model": model_cfg.to_dict(), "data": data_digest(data.root),
               "train": cfg.run_settings()}
        ckpt = Checkpointer(checkpoint_path, run, writer=world.main)
        pos = ckpt.resume(state.model, state.optimizer, state.ema) or pos
    model = state.model
    evaluated = state.ema.module if state.ema is not None else model  # validated and saved
    if world.distributed:  # after the resume, so every process starts from the same weights
        from torch.nn.parallel import DistributedDataParallel

        state.net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda"
                                            else None)

    with _live(curves_dir) if world.main else contextlib.nullcontext() as live:
        for entry in pos.history:  # epochs done before an interruption: the same curve files
            _log_epoch(live, entry)
        for epoch in range(pos.epoch, cfg.epochs):
            rng = np.random.default_rng([cfg.seed, epoch])
            if world.distributed:  # each process its own reparameterisation noise
                torch.manual_seed(int(np.random.SeedSequence([cfg.seed, epoch, world.rank])
                                      .generate_state(1)[0]))
            with parts("epochs"):
                tr = train_epoch(state, train_set, how, rng, epoch,
                                 start=pos if pos.epoch == epoch else None,
                                 after_step=_every(ckpt, cfg.checkpoint_every, state, epoch,
                                                   pos.history),
                                 desc=f"epoch {epoch + 1}/{cfg.epochs}")
            with parts("validation"):
                va = validate(evaluated, val_set, state.likelihood, how, epoch,
                              cfg.precision) if len(val_set) else None
            entry = {split: {k: round(float(v), 4) for k, v in values.items()}
                     for split, values in (("train", tr), ("val", va)) if values}
            pos.history.append(entry)
            with parts("logging"):
                _log_epoch(live, entry)
            if ckpt:
                with parts("checkpoints"):
                    ckpt.save(model, state.optimizer,
                              Position(epoch + 1, 0, history=pos.history), state.ema)
            log(f"epoch {epoch + 1}/{cfg.epochs}: train loss {tr['loss']:.2f}"
                + (f", val loss {va['loss']:.2f}" if va else "")
                + f" (recon {tr['recon']:.2f}, kl {tr['kl']:.2f})")

    result = {"epochs": cfg.epochs, "images": len(train_set), "batch_size": cfg.batch_size,
              "lr": cfg.lr, "history": pos.history, "parts": parts}
    if world.main:  # rank 0 finishes the model alone
        if state.ema is not None:
            model.load_state_dict(state.ema.module.state_dict())
        result["flow_fit"] = _finish(model, train_set, val_set, cfg, device, parts)
        with parts("save"):
            save_model(model, model_path, extra={"train": cfg.model_file_record(),
                                                 "data": data.manifest["counts"],
                                                 "platform": record,
                                                 "flow_fit": result["flow_fit"]})
            if ckpt:
                ckpt.remove()
    return result


def new_state(model_cfg: ModelConfig, cfg: TrainConfig, device: torch.device,
              images: int) -> TrainState:
    """A fresh model of ``model_cfg`` on ``device`` and everything its training steps
    use, for ``images`` training images under the resolved ``cfg`` (see ``resolved``)."""
    device = torch.device(device)
    channels_last = use_channels_last(device)
    model = build(model_cfg).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = [p for n, p in model.named_parameters() if n != "log_scale"]
    return TrainState(
        net=model, optimizer=make_optimizer(cfg.optimizer, params, cfg.lr, cfg.weight_decay,
                                            device),
        recipe=Recipe(cfg, cfg.lr, images // cfg.batch_size or 1),
        likelihood=archs.likelihood(model_cfg), free_bits=cfg.free_bits,
        clip=arch(model_cfg.arch).grad_clip(model_cfg),
        ema=make_ema(model, cfg.ema) if cfg.ema > 0 else None,
        precision=cfg.precision, channels_last=channels_last)


def _finish(model: LatentVAE, train_set, val_set, cfg: TrainConfig, device,
            parts) -> dict | None:
    """After the last epoch: the likelihood's scale, the latent mixture, then the learned
    prior over the top ``flow_levels`` levels (its fit's held-out NLL, or None)."""
    with parts("log-scale fit"):
        fit_log_scale(model, val_set if len(val_set) else train_set, cfg.batch_size, device)
    with parts("posterior means"):
        index = subset(len(train_set), GMM_IMAGES, cfg.seed)
        means = posterior_means(model, train_set, cfg.batch_size, device, index=index)
    with parts("mixture fit"):
        model.gmm = fit_gmm(means, cfg.gmm_components, cfg.seed, device)
    if not cfg.flow_levels:
        return None
    with parts("flow fit"):
        levels = model.latent_levels()[:cfg.flow_levels]  # a flat latent has one
        end = levels[-1][1]
        index = subset(len(train_set), FLOW_IMAGES, cfg.seed)
        fit = posterior_draws(model, train_set, end, FLOW_DRAWS, cfg.seed, cfg.batch_size,
                              device, index=index)
        held = posterior_draws(model, val_set if len(val_set) else train_set, end, FLOW_DRAWS,
                               cfg.seed + 1, cfg.batch_size, device)
        flow, nll = fit_flow(fit, held, cfg.seed, device, steps=cfg.flow_steps)
        model.flow = flow.to(device)
    names = ", ".join(name for name, _ in levels)
    log(f"learned prior over {names} ({end} dims): held-out NLL {nll['flow_nll']:.3f} "
        f"nats/dim against N(0, I)'s {nll['prior_nll']:.3f}, kept from step "
        f"{nll['flow_step']} of {cfg.flow_steps}")
    return {"levels": names, "dims": end, **nll}


def _log_epoch(live, entry: dict) -> None:
    if live is None:  # not rank 0
        return
    for split, values in entry.items():
        for key, value in values.items():
            live.log_metric(f"{split}/{key}", value)
    live.next_step()


def _every(ckpt, every: int, state: TrainState, epoch: int, history: list):
    """The after_step callback that checkpoints every ``every`` batches, or None."""
    if ckpt is None or every <= 0:
        return None

    def after_step(step, totals, seen):
        if step % every == 0:
            ckpt.save(state.model, state.optimizer,
                      Position(epoch, step, totals.tolist(), seen, history), state.ema)
    return after_step
