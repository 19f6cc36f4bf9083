"""FGSM adversarial examples and denoising them (the paper's section 4.2(D) extension).

Images stay in pixel space (0..1) so the denoiser sees what it was trained on; the
classifier carries its own normalisation. FGSM: x_adv = clip(x + eps * sign(grad_x loss),
0, 1), one step, against the classifier's own prediction target (the true label).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from harness.core.errors import UserError
from harness.data.imagenet import (
    FOLDER_SETS,
    MEAN,
    STD,
    _missing,
    folder_of,
    folder_sources,
    loader_workers,
)
from harness.store.records import load_tensors
from harness.train.loop import TrainResult
from harness.train.measure import MachineWatch, Stopwatch
from registry import create_model

if TYPE_CHECKING:
    from harness.tasks.adversarial.protocol import AttackProtocol


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
    from torchvision.models import resnet101 as build

    net = build(weights=None)
    if pretrained:
        net.load_state_dict(imagenet_weights())
    return Normalized(net).eval()


def imagenet_weights() -> dict[str, Tensor]:
    """torchvision's ResNet-101 IMAGENET1K_V1 state dict from the local torch hub cache."""
    from torchvision.models import ResNet101_Weights

    weights = ResNet101_Weights.IMAGENET1K_V1
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not path.is_file():
        raise UserError(
            f"ResNet-101 ImageNet weights are not at {path}; on a machine with network run "
            "python -c 'import torchvision as t; t.models.resnet101(weights=\"IMAGENET1K_V1\")' "
            "and copy that file there (or set TORCH_HOME)"
        )
    return load_tensors(path)


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


@dataclass(frozen=True)
class AttackData:
    """N validation images in pixel space (0..1), sampled with the cell's seed later."""

    images: Dataset
    crop: int
    description: str
    sources: tuple[dict[str, Any], ...] = ()  # the val folder (harness.data.fingerprint)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3, self.crop, self.crop)


def open_attack_images(name: str, data_root: Path) -> AttackData:
    """The validation ImageFolder of ``name``: resize, centre crop, no normalisation."""
    from torchvision import datasets, transforms

    spec = FOLDER_SETS[name]
    root = folder_of(name, data_root)
    tf = transforms.Compose(
        [transforms.Resize(spec.resize), transforms.CenterCrop(spec.crop), transforms.ToTensor()]
    )
    try:
        images = datasets.ImageFolder(str(root / "val"), tf)
    except (FileNotFoundError, NotADirectoryError):
        raise UserError(_missing(root)) from None
    return AttackData(
        images, spec.crop, f"{len(images):,} val images in {len(images.classes)} classes from "
        f"{root / 'val'} (ImageFolder), {spec.crop}px centre crops",
        folder_sources(spec, root, ("val",)),
    )  # fmt: skip


@dataclass(frozen=True)
class Attackers:
    """What a cell needs besides its classifier, checked before any data is read."""

    classifier_state: dict[str, Tensor] | None
    denoiser_state: dict[str, Tensor] | None
    notes: tuple[str, ...]


def build_denoiser(protocol: AttackProtocol, state: dict[str, Tensor] | None) -> nn.Module:
    """The protocol's denoiser with ``state`` loaded (random weights without one)."""
    denoiser = create_model(protocol.denoiser, **dict(protocol.denoiser_kwargs))
    if state is not None:
        try:
            denoiser.load_state_dict(state)
        except (RuntimeError, ValueError, TypeError):
            raise UserError(
                f"--denoiser-weights do not fit {protocol.denoiser} "
                f"{dict(protocol.denoiser_kwargs) or ''}: pass the .pt of a cell of that variant"
            ) from None
    return denoiser


def prepare_attack(protocol: AttackProtocol, denoiser_weights: Path | None) -> Attackers:
    """Load (or refuse, in one line) the classifier's and the denoiser's weights."""
    notes = []
    classifier = imagenet_weights() if protocol.pretrained else None
    if classifier is None:
        net = protocol.stand_in or "ResNet-101"
        notes.append(f"RANDOM classifier weights ({net}, untrained): the numbers mean nothing")
    if denoiser_weights is None and protocol.pretrained:
        raise UserError(
            f"pass --denoiser-weights PATH: the .pt of a {protocol.denoiser} cell of a denoising "
            "run (runs/<table>/paper/*.pt, e.g. table4 sigma 20)"
        )
    denoiser = load_tensors(denoiser_weights) if denoiser_weights is not None else None
    build_denoiser(protocol, denoiser)  # weights that do not fit are refused before any work
    notes.append(
        f"denoiser weights from {denoiser_weights}"
        if denoiser is not None
        else "RANDOM denoiser weights (untrained)"
    )
    return Attackers(classifier, denoiser, tuple(notes))


def run_attack_cell(
    model: nn.Module, data: AttackData, protocol: AttackProtocol, config: dict[str, Any],
    attackers: Attackers, *, device: torch.device,
) -> TrainResult:  # fmt: skip
    """No training: top-1 of ``model`` on clean, FGSM and denoised FGSM images."""
    if attackers.classifier_state is not None:
        model.load_state_dict(attackers.classifier_state)
    denoiser = build_denoiser(protocol, attackers.denoiser_state)
    classifier = Normalized(model).to(device).eval()
    denoiser.to(device).eval()
    n = min(protocol.test_limit or len(data.images), len(data.images))  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(config["seed"])
    order = torch.randperm(len(data.images), generator=generator)[:n].tolist()  # type: ignore[arg-type]
    loader = DataLoader(
        Subset(data.images, order), batch_size=protocol.test_batch_size,
        num_workers=loader_workers(FOLDER_SETS[protocol.dataset]), pin_memory=device.type == "cuda",
    )  # fmt: skip
    result = TrainResult(
        notes=[*attackers.notes, f"{n:,} images, FGSM epsilon {protocol.epsilon:.6g}"]
    )
    with MachineWatch(device) as seen, Stopwatch(device) as watch:
        result.metrics = attack_and_denoise(classifier, denoiser, loader, protocol.epsilon, device)
    result.test_times_s, result.test_machine = [watch.elapsed], seen.state
    return result
