"""How much of a face's attributes the model keeps, for datasets that label them.

- ``probe_accuracy``: linear probes (multinomial logistic regression) from posterior
  means to each attribute: is the attribute linearly readable from the latent code?
- ``AttributeClassifier``: a small CNN, trained on real training images, that predicts
  every attribute at once; its accuracy on reconstructions against its accuracy on the
  originals says whether reconstructions keep the attributes a person would check.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from toonvae.data import batches, to_float
from toonvae.optim import Adam, minimize_lbfgs


def chance_accuracy(train_y: np.ndarray, test_y: np.ndarray) -> float:
    """Mean over attributes of the accuracy of always answering the training majority."""
    accs = []
    for j in range(train_y.shape[1]):
        tr, te = train_y[:, j], test_y[:, j]
        tr, te = tr[tr >= 0], te[te >= 0]
        if len(tr) and len(te):
            accs.append(float(np.mean(te == np.bincount(tr).argmax())))
    return float(np.mean(accs)) if accs else float("nan")


def probe_accuracy(train_z, train_y: np.ndarray, test_z, test_y: np.ndarray,
                   device=None) -> float:
    """Mean over attributes of a linear probe's test accuracy (labels < 0 are missing).

    Codes are standardised with the training codes' mean and std; each probe is fitted by
    ``fit_logistic`` in torch on ``device`` (default: where ``train_z`` is).
    """
    train_z, test_z = torch.as_tensor(train_z).float(), torch.as_tensor(test_z).float()
    device = device or train_z.device
    train_z, test_z = train_z.to(device), test_z.to(device)
    mean, std = train_z.mean(0), train_z.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))  # a constant code stays as it is
    train_z, test_z = (train_z - mean) / std, (test_z - mean) / std
    accs = []
    for j in range(train_y.shape[1]):
        tr, te = train_y[:, j] >= 0, test_y[:, j] >= 0
        if len(np.unique(train_y[tr, j])) < 2 or not te.any():
            continue
        labels = torch.from_numpy(train_y[tr, j]).long().to(device)
        weight, bias = fit_logistic(train_z[torch.from_numpy(tr).to(device)], labels)
        pred = (test_z[torch.from_numpy(te).to(device)] @ weight.T + bias).argmax(1).cpu()
        accs.append(float(np.mean(pred.numpy() == test_y[te, j])))
    return float(np.mean(accs)) if accs else float("nan")


def fit_logistic(z: torch.Tensor, y: torch.Tensor, c: float = 1.0,
                 max_iter: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression with an L2 penalty on the weights, the objective of
    scikit-learn's ``LogisticRegression(C=c)``: C * sum of cross-entropies + |W|^2 / 2.

    Written with L-BFGS in torch (``optim.minimize_lbfgs``) so it runs on the training
    device (scikit-learn runs on the CPU only). The objective is strictly convex: any solver
    finds the same optimum. Returns (weights: classes x features, bias: classes) for the
    labels 0..max(y).
    """
    classes, features = int(y.max()) + 1, z.shape[1]
    penalty = 0.5 / (c * len(z))  # the objective divided by C * N: the same minimum

    def objective(x):
        x = x.detach().requires_grad_(True)
        weight, bias = x[:classes * features].view(classes, features), x[classes * features:]
        loss = F.cross_entropy(z @ weight.T + bias, y) + penalty * weight.pow(2).sum()
        return loss.detach(), torch.autograd.grad(loss, x)[0]

    with torch.enable_grad():
        x = minimize_lbfgs(objective, torch.zeros(classes * (features + 1), device=z.device),
                           max_iter=max_iter)
    return x[:classes * features].view(classes, features), x[classes * features:]


class AttributeClassifier(nn.Module):
    """Three strided convs at 32 px, global max pooling (small parts such as eyes and
    glasses must not be averaged away), then one linear head per attribute."""

    def __init__(self, classes: list[int]):
        super().__init__()
        self.classes = classes
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.SiLU(),
            nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Linear(128, sum(classes))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-1] != 32:
            x = F.interpolate(x, size=(32, 32), mode="area")
        return list(self.head(self.features(x)).split(self.classes, dim=1))


def train_classifier(images: np.ndarray, labels: np.ndarray, seed: int, device,
                     epochs: int = 8, batch_size: int = 64) -> AttributeClassifier:
    """Fit the classifier on uint8 images and integer labels (< 0: missing)."""
    torch.manual_seed(seed)
    classes = [int(max(labels[:, j].max(), 0)) + 1 for j in range(labels.shape[1])]
    clf = AttributeClassifier(classes).to(device)
    opt = Adam(clf.parameters(), lr=2e-3)
    index = np.arange(len(images))
    for epoch in range(epochs):
        rng = np.random.default_rng([seed, epoch])
        for idx in batches(index, batch_size, shuffle=True, rng=rng, drop_last=True):
            x = to_float(images[idx], device)
            y = torch.from_numpy(labels[idx]).long().to(device)
            loss = sum(F.cross_entropy(logits, y[:, j], ignore_index=-1)
                       for j, logits in enumerate(clf(x)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return clf.eval()


@torch.inference_mode()
def predict(clf: AttributeClassifier, x: torch.Tensor) -> np.ndarray:
    """Predicted class of every attribute for float images ``x``: (N x attributes)."""
    return torch.stack([logits.argmax(1) for logits in clf(x)], dim=1).cpu().numpy()


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Mean over attributes of the accuracy on the labelled images (labels < 0: missing)."""
    accs = [float(np.mean(pred[labels[:, j] >= 0, j] == labels[labels[:, j] >= 0, j]))
            for j in range(labels.shape[1]) if (labels[:, j] >= 0).any()]
    return float(np.mean(accs)) if accs else float("nan")


def classifier_accuracy(clf: AttributeClassifier, x: torch.Tensor, labels: np.ndarray) -> float:
    return accuracy(predict(clf, x), labels)
