"""The training loop: deterministic, logged with dvclive, one model file at the end."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from toonvae import distributed, fingerprint, losses
from toonvae.checkpoint import Checkpointer, Position, data_digest
from toonvae.data import ImageRows, PreparedData, batches, prefetched, to_float
from toonvae.distributed import World
from toonvae.errors import ToonvaeError
from toonvae.model import LatentVAE, ModelConfig, build, count_parameters, save_model
from toonvae.numerics import platform, thread_count
from toonvae.optim import make_optimizer
from toonvae.params import TrainParams
from toonvae.progress import Parts, log, progress
from toonvae.runtime import (autocast, pick_device, resolve_precision, set_determinism,
                             use_channels_last)
from toonvae.sampler import fit_gmm, posterior_means, subset

# The notebook's Adam lr; ours. At any batch size: scaling it up with the batch (by the
# square root or linearly) trained worse at batch 128 (benchmarks/recipe_bench.py batch-*).
ARCH_LR = {"seed": 0.0005, "resnet": 0.004, "hvae": 0.002}
# train.batch_size: auto, per device type. The CPU runs at the same speed per image from
# batch 32 to 128 (benchmarks/train_bench.py), so it keeps the batch the recipe was tuned
# at; a GPU pays a fixed cost per step, so it needs large batches to be busy.
AUTO_BATCH = {"cpu": 32, "mps": 32, "cuda": 512}
# ... except hvae on a CPU: its steps cost about the same per image at 16 as at 32, and in the
# same wall-clock twice the steps gave it better mse, ELBO, IWAE and prior samples on both
# datasets (experiments/hvae-sweep.json; README: hvae's batch). The resnet did not gain.
ARCH_CPU_BATCH = {"hvae": 16}
SYNC_EVERY = 32  # batches between loss read-backs on a GPU
DEVICE_DATA_FRACTION = 0.5  # put a split in GPU memory when it takes at most this much free memory
# Work after the last epoch is capped so that it does not grow with the dataset: the
# log-scale grid is fitted on at most LOG_SCALE_IMAGES validation images and the latent
# mixture on the posterior means of at most GMM_IMAGES training images (a seeded subset).
LOG_SCALE_IMAGES = 500
GMM_IMAGES = 10_000


@dataclass(frozen=True)
class TrainConfig(TrainParams):
    """params.yaml's ``train`` section plus the values of other sections that training reads."""
    seed: int = 0
    gmm_components: int = 10  # of the mixture fitted to posterior means after training
    numerics: str = "portable"  # runtime.numerics (toonvae.numerics)

    @classmethod
    def from_params(cls, p) -> "TrainConfig":
        """From a ``toonvae.params.Params``."""
        train = {f.name: getattr(p.train, f.name) for f in dataclasses.fields(p.train)}
        return cls(**train, seed=p.seed, gmm_components=p.sampler.gmm_components,
                   numerics=p.runtime.numerics)


def resolve_batch_size(batch_size: int | str, device: torch.device, processes: int = 1,
                       arch: str = "resnet") -> int:
    """``train.batch_size`` as a number of images per optimizer step (over all processes).

    ``auto`` is ``AUTO_BATCH`` of the device type (``ARCH_CPU_BATCH`` for ``arch`` on a
    CPU): per GPU on CUDA (one GPU per process), in all on the CPU; rounded up so that the
    processes share it evenly.
    """
    if batch_size != "auto":
        return int(batch_size)
    kind = torch.device(device).type
    per_device = AUTO_BATCH.get(kind, AUTO_BATCH["cpu"])
    if kind == "cpu":
        per_device = ARCH_CPU_BATCH.get(arch, per_device)
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


def run_epoch(model: LatentVAE, array, cfg: TrainConfig, likelihood: str, device, *,
              optimizer=None, rng=None, epoch: int = 0, desc: str = "",
              start: Position | None = None, after_step=None, precision: str = "fp32",
              channels_last: bool = False, sync_every: int | None = None,
              recipe: Recipe | None = None, ema=None, world: World = World()) -> dict:
    """One pass over ``array``; trains when an optimizer is given. Returns mean losses.

    ``array`` is a split on disk (``ImageRows``) or a uint8 tensor already on ``device``.
    ``start`` resumes an epoch after its first ``start.step`` batches, with the running
    sums it had then; ``after_step(step, totals, seen)`` is called after each batch.
    ``recipe`` sets the learning rate and beta of each batch; ``ema`` is updated after
    each optimizer step. The logged loss is the negative ELBO (beta 1, no free bits).
    Under DDP (``world``) each process takes its share of every batch and the read-back
    sums the losses over all processes, so every process sees the same totals.
    The losses are read back (and checked for NaN) every ``sync_every`` batches; by
    default every batch on the CPU and every ``SYNC_EVERY`` on a GPU, so the host does not
    wait for the device in between. A checkpointing ``after_step`` forces every batch.
    """
    training = optimizer is not None
    device = torch.device(device)
    model.train(training)
    start = start or Position(epoch)
    totals = np.array(start.totals, dtype=np.float64)
    seen = start.seen
    n_batches = math.ceil(len(array) / cfg.batch_size)
    if training and len(array) >= cfg.batch_size:
        n_batches = len(array) // cfg.batch_size
    if sync_every is None:
        sync_every = 1 if device.type == "cpu" else SYNC_EVERY
    if after_step is not None:
        sync_every = 1  # a checkpoint must never hold weights past an unchecked loss
    pending: list[tuple[int, int, torch.Tensor]] = []  # (step, images, [loss, recon, kl])

    def read_back():
        nonlocal totals, seen
        if world.distributed:  # image-weighted sums over every process, then means
            sums = torch.stack([torch.cat([v.double() * n, v.new_tensor([n], dtype=torch.float64)])
                                for _, n, v in pending])
            sums = distributed.all_sum(sums).cpu().numpy()
            counts = sums[:, 3]
            values = sums[:, :3] / np.maximum(counts, 1)[:, None]
            pending[:] = [(step, int(n), v) for (step, _, v), n in zip(pending, counts)]
        else:
            values = torch.stack([v for _, _, v in pending]).cpu().double().numpy()
        for (step, n, _), row in zip(pending, values):
            if not np.isfinite(row[0]):
                raise _nonfinite(float(row[0]), epoch, step, n_batches, optimizer, recipe)
            totals += n * row
            seen += n
            if after_step is not None:
                after_step(step + 1, totals, seen)
        bar.update(len(pending))
        pending.clear()

    clip = (model.module if world.distributed else model).grad_clip if training else None
    bar = progress(total=n_batches, desc=desc, unit="batch")
    bar.update(start.step)
    with bar, torch.set_grad_enabled(training):
        reader = batches(array, cfg.batch_size, shuffle=training, rng=rng, drop_last=training,
                         start=start.step, shard=(world.rank, world.size))
        if device.type == "cuda" and not isinstance(array, torch.Tensor):
            reader = prefetched(reader, pin=True)  # a split streamed from disk
        for step, xb in enumerate(reader, start=start.step):
            if len(xb) == 0:  # a last validation batch smaller than the number of processes
                pending.append((step, 0, torch.zeros(3, device=device)))
                if len(pending) >= sync_every:  # in step with the other processes' read-backs
                    read_back()
                continue
            x = to_float(xb, device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(precision, device):
                mean, mu, logvar = model(x)
            beta = cfg.beta
            if training and recipe is not None:
                global_step = epoch * n_batches + step
                beta = recipe.beta_at(global_step)
                for group in optimizer.param_groups:
                    group["lr"] = recipe.lr_at(global_step)
            loss, recon, kl = losses.training_loss(likelihood, x, mean, mu, logvar, beta,
                                                   cfg.free_bits if training else 0.0)
            if training:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                optimizer.step()
                if ema is not None:
                    ema.update_parameters(model.module if world.distributed else model)
            pending.append((step, len(x), torch.stack([recon + kl, recon, kl]).detach()))
            if len(pending) >= sync_every:
                read_back()
        if pending:
            read_back()
    loss, recon, kl = totals / max(seen, 1)
    return {"loss": loss, "recon": recon, "kl": kl}


def _nonfinite(value: float, epoch: int, step: int, n_batches: int, optimizer,
               recipe: Recipe | None = None) -> ToonvaeError:
    where = f"at epoch {epoch + 1}, batch {step + 1} of {n_batches}"
    if optimizer is None:
        return ToonvaeError(f"the validation loss became {value} {where}; the model diverged: "
                            "lower train.lr and retrain")
    lr = recipe.lr if recipe is not None else optimizer.param_groups[0]["lr"]  # not the scheduled
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
    pixel_nll = losses.PIXEL_NLL[model.cfg.eval_likelihood]
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
    cfg = dataclasses.replace(cfg, batch_size=resolve_batch_size(cfg.batch_size, device,
                                                                 world.size, model_cfg.arch))
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


def _train(data_dir, model_path, curves_dir, model_cfg, cfg, checkpoint_path, device,
           world: World, record: dict) -> dict:
    parts = Parts(sync=torch.cuda.synchronize if device.type == "cuda" else None)
    precision = resolve_precision(cfg.precision, device)
    channels_last = use_channels_last(device)
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
    model = build(model_cfg).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    likelihood = model_cfg.resolved_likelihood
    lr = cfg.lr if cfg.lr is not None else ARCH_LR[model_cfg.arch]
    params = [p for n, p in model.named_parameters() if n != "log_scale"]
    optimizer = make_optimizer(cfg.optimizer, params, lr, cfg.weight_decay, device)
    steps_per_epoch = len(train_set) // cfg.batch_size or 1
    recipe = Recipe(cfg, lr, steps_per_epoch)
    ema = make_ema(model, cfg.ema) if cfg.ema > 0 else None
    log(f"training {model_cfg.arch} VAE ({count_parameters(model):,} parameters, "
        f"{likelihood} likelihood) on {len(train_set)} images, batch {cfg.batch_size}, "
        f"lr {lr:g}, device {device}, {precision}"
        + (", channels_last" if channels_last else "")
        + (", data in device memory" if isinstance(train_set, torch.Tensor) else "")
        + (f", {world.size} processes (DDP, {'nccl' if device.type == 'cuda' else 'gloo'})"
           if world.distributed else ""))

    ckpt = None
    pos = Position()
    if checkpoint_path is not None:
        # Everything that changes the numbers; checkpoint_every does not.
        run = {"model": model_cfg.to_dict(), "data": data_digest(data.root),
               "train": {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": lr,
                         "beta": cfg.beta, "seed": cfg.seed, "threads": cfg.threads,
                         "numerics": cfg.numerics,
                         "device": device.type, "precision": precision,
                         "deterministic": cfg.deterministic, "optimizer": cfg.optimizer,
                         "weight_decay": cfg.weight_decay, "schedule": cfg.schedule,
                         "warmup_steps": cfg.warmup_steps,
                         "kl_warmup_epochs": cfg.kl_warmup_epochs,
                         "free_bits": cfg.free_bits, "ema": cfg.ema}}
        # The train.nproc of the run is not in it: a DDP checkpoint resumes in one process.
        ckpt = Checkpointer(checkpoint_path, run, writer=world.main)
        pos = ckpt.resume(model, optimizer, ema) or pos
    evaluated = ema.module if ema is not None else model  # what validation sees and is saved
    net = model
    if world.distributed:  # after the resume, so every process starts from the same weights
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda"
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
                tr = run_epoch(net, train_set, cfg, likelihood, device, optimizer=optimizer,
                               rng=rng, epoch=epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                               start=pos if pos.epoch == epoch else None,
                               after_step=_every(ckpt, cfg.checkpoint_every, model, optimizer,
                                                 epoch, pos.history, ema),
                               precision=precision, channels_last=channels_last,
                               recipe=recipe, ema=ema, world=world)
            with parts("validation"):
                va = run_epoch(evaluated, val_set, cfg, likelihood, device, epoch=epoch,
                               desc="validation", precision=precision,
                               channels_last=channels_last,
                               world=world) if len(val_set) else None
            entry = {split: {k: round(float(v), 4) for k, v in values.items()}
                     for split, values in (("train", tr), ("val", va)) if values}
            pos.history.append(entry)
            with parts("logging"):
                _log_epoch(live, entry)
            if ckpt:
                with parts("checkpoints"):
                    ckpt.save(model, optimizer, Position(epoch + 1, 0, history=pos.history),
                              ema)
            log(f"epoch {epoch + 1}/{cfg.epochs}: train loss {tr['loss']:.2f}"
                + (f", val loss {va['loss']:.2f}" if va else "")
                + f" (recon {tr['recon']:.2f}, kl {tr['kl']:.2f})")

    result = {"epochs": cfg.epochs, "images": len(train_set), "batch_size": cfg.batch_size,
              "lr": lr, "history": pos.history, "parts": parts}
    if not world.main:  # rank 0 finishes the model alone
        return result
    if ema is not None:
        model.load_state_dict(ema.module.state_dict())
    with parts("log-scale fit"):
        fit_log_scale(model, val_set if len(val_set) else train_set, cfg.batch_size, device)
    with parts("posterior means"):
        index = subset(len(train_set), GMM_IMAGES, cfg.seed)
        means = posterior_means(model, train_set, cfg.batch_size, device, index=index)
    with parts("mixture fit"):
        model.gmm = fit_gmm(means, cfg.gmm_components, cfg.seed, device)
    with parts("save"):
        save_model(model, model_path, extra={"train": {"epochs": cfg.epochs, "lr": lr,
                                                         "batch_size": cfg.batch_size,
                                                         "beta": cfg.beta, "seed": cfg.seed,
                                                         "optimizer": cfg.optimizer,
                                                         "schedule": cfg.schedule,
                                                         "ema": cfg.ema},
                                             "data": data.manifest["counts"],
                                             "platform": record})
        if ckpt:
            ckpt.remove()
    return result


def _log_epoch(live, entry: dict) -> None:
    if live is None:  # not rank 0
        return
    for split, values in entry.items():
        for key, value in values.items():
            live.log_metric(f"{split}/{key}", value)
    live.next_step()


def _every(ckpt, every: int, model, optimizer, epoch: int, history: list, ema=None):
    """The after_step callback that checkpoints every ``every`` batches, or None."""
    if ckpt is None or every <= 0:
        return None

    def after_step(step, totals, seen):
        if step % every == 0:
            ckpt.save(model, optimizer, Position(epoch, step, totals.tolist(), seen, history),
                      ema)
    return after_step
