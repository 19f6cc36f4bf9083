"""FGSM adversarial examples and denoising them (the paper's section 4.2(D) extension).

Images stay in pixel space (0..1) so the denoiser sees what it was trained on; the
classifier carries its own normalisation. FGSM: x_adv = clip(x + eps * sign(grad_x loss),
0, 1), one step, against the classifier's own prediction target (the true label).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .errors import UserError
from .imagenet import MEAN, STD


class Normalized(nn.Module):
    """A classifier taking 0..1 pixels: ImageNet normalisation, then the network."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.mean) / self.std)


def fgsm(model: nn.Module, x: Tensor, y: Tensor, epsilon: float) -> Tensor:
    """One signed-gradient step of size ``epsilon`` (0..1 pixel scale) up the loss."""
    x = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return (x + epsilon * grad.sign()).clamp_(0, 1).detach()


def resnet101(pretrained: bool) -> Normalized:
    """ResNet-101 with torchvision's ImageNet weights from the local torch hub cache only
    (never downloaded here), or random weights for smoke runs."""
    from torchvision.models import ResNet101_Weights
    from torchvision.models import resnet101 as build

    net = build(weights=None)
    if pretrained:
        weights = ResNet101_Weights.IMAGENET1K_V1
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        if not path.is_file():
            raise UserError(
                f"ResNet-101 ImageNet weights are not at {path}; on a machine with network run "
                "python -c 'import torchvision as t; t.models.resnet101(weights=\"IMAGENET1K_V1\")' "
                "and copy that file there (or set TORCH_HOME)"
            )
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return Normalized(net).eval()


@torch.no_grad()
def _hits(model: nn.Module, x: Tensor, y: Tensor) -> int:
    return int((model(x).argmax(1) == y).sum())


def attack_and_denoise(
    classifier: nn.Module, denoiser: nn.Module, batches: object, epsilon: float,
    device: torch.device,
) -> dict[str, float]:  # fmt: skip
    """Top-1 on clean images, on their FGSM versions, and on those after ``denoiser``."""
    counts = {"top1_clean": 0, "top1_adversarial": 0, "top1_denoised": 0}
    n = 0
    for x, y in batches:  # type: ignore[attr-defined]
        x, y = x.to(device), y.to(device)
        adv = fgsm(classifier, x, y, epsilon)
        with torch.no_grad():
            cleaned = denoiser(adv).clamp(0, 1)
        counts["top1_clean"] += _hits(classifier, x, y)
        counts["top1_adversarial"] += _hits(classifier, adv, y)
        counts["top1_denoised"] += _hits(classifier, cleaned, y)
        n += len(y)
    return {k: v / max(n, 1) for k, v in counts.items()}
