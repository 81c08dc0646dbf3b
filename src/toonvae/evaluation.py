"""Every number of metrics/<dataset>.json, computed from a model and its prepared data.

The metric definitions live in ``metrics`` (likelihood, reconstruction, latent health),
``swd``, ``fid`` and ``attributes``; this module runs them on the right splits with
fixed seeds and subsets, so the same model and data always give the same file.
"""

from __future__ import annotations

import numpy as np
import torch

from toonvae import attributes, metrics
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


def sample_quality(model: LatentVAE, test: np.ndarray, train: np.ndarray, cfg, sampler: str,
                   seed: int, device) -> dict:
    """swd of each sampler's samples against test images, its train-vs-test floor, fid."""
    n = min(len(test), len(train), cfg.swd_images)
    real = to_float(test[:n])
    swd_to_test = SlicedWasserstein(real, seed, device)
    out = {"sampler": sampler, "swd_images": n}
    samples = {}
    for name in SAMPLERS:
        if name == "gmm" and model.gmm is None:
            out["swd_gmm"] = None
            continue
        z = model.sample_latents(n, torch.Generator().manual_seed(seed), sampler=name)
        samples[name] = metrics.decode_in_batches(model, z, cfg.batch_size, device)
        out[f"swd_{name}"] = swd_to_test(samples[name])
    out["swd"] = out[f"swd_{sampler}"]
    out["swd_floor"] = swd_to_test(to_float(train[floor_rows(len(train), n, seed)]))
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
