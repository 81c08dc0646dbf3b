"""Every number of metrics/<dataset>.json, computed from a model and its prepared data.

The metric definitions live in ``metrics`` (likelihood, reconstruction, latent health),
``swd``, ``layout``, ``fid`` and ``attributes``; this module runs them on the right splits with
fixed seeds and subsets, so the same model and data always give the same file.
"""

from __future__ import annotations

import numpy as np
import torch

from toonvae import attributes, features, layout, metrics
from toonvae.archs import SAMPLERS
from toonvae.archs.base import LatentVAE
from toonvae.data import PreparedData, batches, seeded_rows, to_float
from toonvae.fid import frechet_distance, weights_problem
from toonvae.progress import log
from toonvae.sampler import posterior_means
from toonvae.swd import SlicedWasserstein


def evaluate(model: LatentVAE, data: PreparedData, cfg, sampler: str, seed: int,
             device, attributes: bool = True) -> tuple[dict, list[float]]:
    """(metrics, per-dimension KL). ``cfg`` is params' ``evaluate`` section. ``attributes``
    False leaves out the attribute probe (its L-BFGS fit dominates a GPU's evaluation)."""
    test, train = data.split("test"), data.split("train")
    result = metrics.reconstruction_metrics(model, test, cfg.batch_size, seed, device)
    kl_per_dim = result.pop("kl_per_dim")
    iwae_set = test[:cfg.iwae_images]  # the test split is already a seeded shuffle
    result["iwae_bpd"] = metrics.iwae_bpd(model, iwae_set, cfg.iwae_samples, cfg.batch_size,
                                          seed, device)
    result["iwae_k"] = cfg.iwae_samples
    result["iwae_images"] = len(iwae_set)
    result.update(sample_quality(model, test, train, cfg, sampler, seed, device))
    if attributes:
        result.update(attribute_metrics(model, data, cfg.batch_size, seed, device))
    return result, kl_per_dim


def floor_rows(n_train: int, n: int, seed: int) -> np.ndarray:
    """The train images of swd's floor: ``n`` of them, seeded."""
    return seeded_rows(n_train, n, seed)


class SampleScores:
    """Scores sets of images against the first ``n`` test images, each as one sampler's
    samples are scored: patch swd (``toonvae.swd``), and the layout metrics in the
    features of a network that is not the VAE (``toonvae.layout``): fd, kid, precision,
    recall. The same seed and test images give the same scores."""

    LAYOUT = ("fd", "kid", "precision", "recall")

    def __init__(self, real: torch.Tensor, seed: int, batch_size: int, device):
        self.seed, self.batch_size, self.device = seed, batch_size, device
        self.swd = SlicedWasserstein(real, seed, device)
        self.network = features.load(device)
        self.real_features = self.features(real)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return features.extract(self.network, images, self.batch_size, self.device)

    def __call__(self, images: torch.Tensor) -> dict[str, float]:
        scores = layout.scores(self.real_features, self.features(images), self.seed)
        return {"swd": self.swd(images), **{k: scores[k] for k in self.LAYOUT}}


def sample_quality(model: LatentVAE, test: np.ndarray, train: np.ndarray, cfg, sampler: str,
                   seed: int, device) -> dict:
    """Each sampler's samples against test images (swd_<sampler>, fd_<sampler>, ...), the
    train-vs-test floor of each metric (swd_floor, fd_floor, ...), and the chosen sampler's
    under the plain names (swd, fd, ...); fid."""
    model.require_sampler(sampler)  # before any work: the sampler scored must exist
    n = min(len(test), len(train), cfg.swd_images)
    real = to_float(test[:n])
    score = SampleScores(real, seed, cfg.batch_size, device)
    out = {"sampler": sampler, "swd_images": n}
    samples = {}
    for name in SAMPLERS:
        if (name == "gmm" and model.gmm is None) or (name == "flow" and model.flow is None):
            out.update({f"{k}_{name}": None for k in ("swd", *score.LAYOUT)})
            continue
        z = model.sample_latents(n, torch.Generator().manual_seed(seed), sampler=name)
        samples[name] = metrics.decode_in_batches(model, z, cfg.batch_size, device)
        out.update({f"{k}_{name}": v for k, v in score(samples[name]).items()})
    for k in ("swd", *score.LAYOUT):
        out[k] = out[f"{k}_{sampler}"]
    floor = score(to_float(train[floor_rows(len(train), n, seed)]))
    out.update({f"{k}_floor": v for k, v in floor.items()})
    problem = weights_problem(cfg.fid_weights)
    if sampler not in samples:
        problem = f"the model has no {sampler} sampler"
    if problem:
        log(f"fid: null: {problem}")
        out["fid"] = None
    else:
        out["fid"] = frechet_distance(real, samples[sampler], cfg.batch_size,
                                      weights_path=cfg.fid_weights)
    return out


def attribute_metrics(model: LatentVAE, data: PreparedData, batch_size: int, seed: int,
                      device) -> dict:
    """Probe and classifier accuracies where the dataset labels attributes; else nulls."""
    keys = ("attr_probe_acc", "attr_recon_acc", "attr_orig_acc", "attr_chance_acc")
    train_y, test_y = data.attributes("train"), data.attributes("test")
    if train_y is None or test_y is None or not len(test_y):
        return dict.fromkeys(keys)
    train, test = data.split("train"), data.split("test")
    train_z = torch.from_numpy(posterior_means(model, train, batch_size, device))
    clf = attributes.train_classifier(train, train_y, seed, device)
    test_z, pred_orig, pred_recon = [], [], []
    with torch.inference_mode():
        for xb in batches(test, batch_size):
            x = to_float(xb, device)
            mu = model.encode(x)[0]
            test_z.append(mu.float())
            pred_orig.append(attributes.predict(clf, x))
            pred_recon.append(attributes.predict(clf, model.decode(mu).float()))
    test_z = torch.cat(test_z).clone()  # a plain tensor again, outside inference mode
    return {
        "attr_probe_acc": attributes.probe_accuracy(train_z.to(device), train_y, test_z,
                                                    test_y),
        "attr_recon_acc": attributes.accuracy(np.concatenate(pred_recon), test_y),
        "attr_orig_acc": attributes.accuracy(np.concatenate(pred_orig), test_y),
        "attr_chance_acc": attributes.chance_accuracy(train_y, test_y),
    }
