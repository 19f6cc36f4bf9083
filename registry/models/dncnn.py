"""DnCNN (Zhang et al., 2017), the colour variant the paper's Table 7 compares with.

Conv+ReLU, then ``depth - 2`` x (Conv+BN+ReLU), then Conv to the image's channels;
the network predicts the noise (residual learning) and ``forward`` subtracts it.
``depth=20`` with 64 maps is DnCNN's colour model (CDnCNN-B): 669,379 parameters.
CHOICE: a conv followed by BN has no bias (BN's shift makes it redundant; some
implementations keep it, adding 1,152 parameters); the first and last convs keep
theirs. Weights are Kaiming-normal, as DnCNN initialises its convs.

Checked against the authors' PyTorch training code (github.com/cszn/DnCNN,
``TrainingCodes/dncnn_pytorch/main_train.py``): the same layers, widths and residual
output. Differences, all CHOICES kept here: their last conv has no bias (ours: +3
parameters), their BN uses eps 1e-4 and momentum 0.95 (ours: PyTorch's defaults), and
they initialise orthogonally (ours: Kaiming-normal, the initialisation DnCNN's paper names).

``zero_last`` starts the last conv at zero, so the untrained network is the identity
(predicted noise 0). A short training needs it: from Kaiming init the predicted noise is
several times the true noise, and in the demo's 256 steps Adam only shrinks it to zero
(the network then returns its input unchanged). Off by default, as DnCNN trains.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._registry import PaperRow, register_arch, register_variant

if TYPE_CHECKING:
    from ..nets.dncnn import DnCNN


@register_arch("dncnn")
def dncnn(**kwargs: object) -> DnCNN:
    from ..nets.dncnn import DnCNN

    return DnCNN(**kwargs)  # type: ignore[arg-type]


register_variant(
    "dncnn.color20", "dncnn", depth=20,
    description="DnCNN, colour, 20 layers, 64 maps (trained here like our denoiser)",
    paper=(
        # the paper's DnCNN numbers are DnCNN-3's on grey BSD68 (see Table 7's note)
        PaperRow.psnr("table7", "DnCNN", {15: "31.46", 25: "29.02", 50: "26.10"}),
    ),
)  # fmt: skip
