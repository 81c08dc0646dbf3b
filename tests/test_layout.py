"""The layout metrics against reference implementations on fixed features (torch-fidelity
for FD and KID, the prdc package for precision/recall/density/coverage), and the feature
network against what its ImageNet training taught it."""

import numpy as np
import prdc as prdc_reference
import pytest
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from toonvae import layout


def two_sets(n=300, d=24):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    mix = torch.eye(d, dtype=torch.float64) + 0.3 * torch.randn(d, d, generator=g,
                                                                dtype=torch.float64)
    b = torch.randn(n + 37, d, generator=g, dtype=torch.float64) @ mix + 0.5
    return a, b


def test_fd_is_torch_fidelitys():
    a, b = two_sets()
    ref = fid_statistics_to_metric(fid_features_to_statistics(a), fid_features_to_statistics(b),
                                   verbose=False)["frechet_inception_distance"]
    assert layout.fd(a, b) == pytest.approx(ref, rel=1e-9)
    assert abs(layout.fd(a, a)) < 1e-9 and layout.fd(a, b) > 1


def test_kid_is_torch_fidelitys_times_1000():
    a, b = two_sets()
    ref = kid_features_to_metric(a, b, kid_subsets=20, kid_subset_size=100, rng_seed=7,
                                 kid_kernel="poly", kid_degree=3, kid_gamma=None,
                                 kid_coef0=1, verbose=False)["kernel_inception_distance_mean"]
    assert layout.kid(a, b, seed=7, subset=100, subsets=20) == pytest.approx(1000 * ref,
                                                                             rel=1e-9)
    # Unbiased: a set against another draw of its own distribution is about 0.
    c = torch.randn(300, 24, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert abs(layout.kid(a, c, seed=0)) < 0.02 * layout.kid(a, b, seed=0)


def test_prdc_is_the_prdc_packages(capsys):
    a, b = two_sets()
    ref = prdc_reference.compute_prdc(a.numpy(), b.numpy(), nearest_k=5)
    mine = layout.prdc(a, b)
    assert mine.keys() == ref.keys()
    for key, value in ref.items():
        assert mine[key] == pytest.approx(float(value), abs=1e-12), key
    # A set against itself: every sample sits in its own ball, every real image is covered.
    same = layout.prdc(a, a)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0


def test_the_feature_network_knows_imagenet():
    """scikit-learn's two sample photos (a temple by a lake, a flower): the network's top
    guesses are what they show, so its weights, padding and input scaling are right."""
    from sklearn.datasets import load_sample_images

    from toonvae import features

    net = features.load()
    images = torch.stack([torch.from_numpy(np.array(i)).permute(2, 0, 1)
                          for i in load_sample_images().images])
    with torch.no_grad():
        top = net(images.float() / 255).topk(5).indices.tolist()
    assert top[1][0] == 985  # daisy
    assert {442, 449, 483, 698, 975} & set(top[0][:3])  # bell cote, boathouse, castle,
    # palace, lakeside
    feats = features.extract(net, images)
    assert feats.shape == (2, features.FEATURES) and feats.dtype == torch.float64
