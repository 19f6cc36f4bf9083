"""torchvision's ResNet-50 with a channel reduction before stage 2 (section 4.1(C)).

The paper inserts feature pooling between ``layer1`` and ``layer2``: the 256 maps
leaving stage 1 become 128 (stride 2; CHOICE: the paper gives no stride for ResNet-50,
2 is the stride of its Table 2), so the first bottleneck of ``layer2`` takes
128 inputs, its 1x1 reduction conv and its downsample projection both shrinking.
Position 3 (between ``layer2`` and ``layer3``, 512 -> 256) is an extra, not in the
paper. The reduction layer is appended to the preceding stage, so every other
parameter keeps torchvision's name and the baseline is exactly
``torchvision.models.resnet50(weights=None)`` (25,557,032 parameters).

The ``conv`` kind (the preceding conv emitting fewer maps) does not fit a residual
stage whose output width is fixed by its identity shortcut, so it is refused;
``conv1x1`` is the learned alternative.

Also here: plain ResNet-101 (the classifier of the FGSM experiment, section 4.2(D),
loaded with torchvision's ImageNet weights by the harness) and ResNet-18, its fast
random-weight stand-in in smoke runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .._registry import PaperRow, register_arch, register_variant
from ..reduction import Reduction

if TYPE_CHECKING:  # torch and torchvision are imported where a ResNet is built: importing
    from torch import nn  # torchvision costs seconds (it loads torch._dynamo)
    from torchvision.models.resnet import ResNet

# reduction before stage X: (stage module before it, stage module rebuilt, maps arriving)
POSITIONS: Mapping[int, tuple[str, str, int]] = {
    2: ("layer1", "layer2", 256),
    3: ("layer2", "layer3", 512),
}


def _init_like_torchvision(module: nn.Module) -> None:
    """The init torchvision's ResNet applies, for the modules rebuilt here."""
    from torch import nn

    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _reduce_before(model: ResNet, position: int, reduction: Reduction) -> None:
    if position not in POSITIONS:
        raise ValueError(
            f"unknown ResNet-50 reduction position {position!r}; choose one of "
            f"{', '.join(map(str, POSITIONS))} (before stage X)"
        )
    if reduction.kind == "conv":
        raise ValueError(
            "reduction kind 'conv' cannot shrink a residual stage's output; use conv1x1 or fp_max"
        )
    before, after, channels = POSITIONS[position]
    if reduction.kind == "none":
        return
    from torch import nn
    from torchvision.models.resnet import Bottleneck, conv1x1

    layer = reduction.layer(channels)
    _init_like_torchvision(layer)
    setattr(model, before, nn.Sequential(*getattr(model, before), layer))
    stage: nn.Sequential = getattr(model, after)
    first: Bottleneck = stage[0]
    inputs = reduction.out_channels(channels)
    out = first.conv3.out_channels
    stride = first.conv2.stride
    block = Bottleneck(
        inputs, first.conv1.out_channels, stride=stride[0],
        downsample=nn.Sequential(conv1x1(inputs, out, stride[0]), nn.BatchNorm2d(out)),
    )  # fmt: skip
    _init_like_torchvision(block)
    stage[0] = block


@register_arch("resnet50")
def resnet50(reductions: Mapping[int, Reduction] | None = None, num_classes: int = 1000) -> ResNet:
    """ResNet-50 (torchvision, random init) with reductions ``{position: Reduction}``."""
    from torchvision.models import resnet50 as tv_resnet50

    model = tv_resnet50(weights=None, num_classes=num_classes)
    for position, reduction in (reductions or {}).items():
        if not isinstance(reduction, Reduction):
            raise ValueError(f"position {position}: expected a Reduction, got {reduction!r}")
        _reduce_before(model, position, reduction)
    return model


register_variant(
    "resnet50.baseline",
    "resnet50",
    description="ResNet-50 (torchvision)",
    paper=(PaperRow("imagenet", "Baseline", {"top1": "71.434%", "top5": "89.882%"}),),
)
register_variant(
    "resnet50.fp_max_s2",
    "resnet50",
    reductions={2: Reduction("fp_max", 2)},
    description="ResNet-50, max feature pooling stride 2 before stage 2 (256 -> 128 maps)",
    paper=(PaperRow("imagenet", "Baseline+FP", {"top1": "71.476%", "top5": "89.756%"}),),
)
register_variant(
    "resnet50.at3_fp_max_s2",
    "resnet50",
    reductions={3: Reduction("fp_max", 2)},
    description="ResNet-50, max feature pooling stride 2 before stage 3 (512 -> 256 maps)",
)
IMAGENET_ROWS = ("resnet50.baseline", "resnet50.fp_max_s2", "resnet50.at3_fp_max_s2")


@register_arch("resnet101")
def resnet101(num_classes: int = 1000) -> ResNet:
    """torchvision's ResNet-101 (random init; parameter names match its ImageNet weights)."""
    from torchvision.models import resnet101 as tv_resnet101

    return tv_resnet101(weights=None, num_classes=num_classes)


@register_arch("resnet18")
def resnet18(num_classes: int = 1000) -> ResNet:
    """torchvision's ResNet-18 (random init): a fast stand-in for ResNet-101 in smoke runs."""
    from torchvision.models import resnet18 as tv_resnet18

    return tv_resnet18(weights=None, num_classes=num_classes)


register_variant(
    "resnet101.imagenet",
    "resnet101",
    description="ResNet-101 (torchvision ImageNet weights) under FGSM, then our denoiser",
    paper=(
        PaperRow(
            "adversarial",
            "ResNet-101 + FGSM",
            {"top1_adversarial": "27.18%", "top1_denoised": "36.05%"},
        ),
    ),
)
