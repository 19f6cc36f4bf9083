"""The MNIST network of the paper's section 4.1(A) and the seven rows of Table 1.

conv3x3 1->16, conv3x3 16->32 (both 'same' padding, ReLU, no spatial pooling),
then the reduction point, flatten 28*28*C and FC 512 -> FC 10. With this layout
the baseline has 12,855,498 trainable parameters, which is the paper's 12.260M in
units of 2^20. The activation function is not stated; ReLU is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._registry import PaperRow, register_arch, register_variant
from ..reduction import Reduction

if TYPE_CHECKING:
    from ..nets.mnist import MnistCNN

CONV2_CHANNELS = 32


@register_arch("mnist")
def mnist_cnn(reduction: Reduction = Reduction(), **kwargs: object) -> MnistCNN:
    from ..nets.mnist import MnistCNN

    return MnistCNN(reduction=reduction, **kwargs)


def _table1(row: str, accuracy: str, train: str, test: str, params: str, flops: str) -> PaperRow:
    return PaperRow(
        "table1",
        row,
        {
            "accuracy": accuracy,
            "train_time_s": train,
            "test_time_s": test,
            "params_M_paper_conv": params,
            "flops_paper_conv": flops,
        },
    )


# Table 1 as printed (the paper's timings: GTX 1070, TensorFlow).
_TABLE1 = [
    ("baseline", Reduction(), "Baseline",
     _table1("Baseline", "0.9791", "4.68", "0.256", "12.260", "2.571e7")),
    ("fp_max_s2", Reduction("fp_max", 2), "Spatial feature pooling (max), stride 2",
     _table1("Feature pooling (spatial pooling) 50%", "0.9891", "4.14", "0.262", "6.135", "1.286e7")),
    ("fp_max_s4", Reduction("fp_max", 4), "Spatial feature pooling (max), stride 4",
     _table1("Feature pooling (spatial pooling) 75%", "0.9909", "4.63", "0.250", "3.072", "6.442e6")),
    ("topk_s2", Reduction("topk", 2), "Top-k feature pooling, k = 16",
     _table1("Feature pooling (top-k) 50%", "0.9857", "80.31", "12.624", "6.135", "1.286e7")),
    ("topk_s4", Reduction("topk", 4), "Top-k feature pooling, k = 8",
     _table1("Feature pooling (top-k) 75%", "0.9857", "64.31", "8.930", "3.072", "6.442e6")),
    ("conv_s2", Reduction("conv", 2), "conv2 with 16 output maps",
     _table1("Dimension reduction of Conv 50%", "0.9788", "3.48", "0.207", "6.133", "1.286e7")),
    ("conv_s4", Reduction("conv", 4), "conv2 with 8 output maps",
     _table1("Dimension reduction of Conv 75%", "0.982", "2.94", "0.190", "3.069", "6.435e6")),
]  # fmt: skip

for _tag, _reduction, _description, _paper in _TABLE1:
    register_variant(
        f"mnist.{_tag}", "mnist", reduction=_reduction, description=_description, paper=(_paper,)
    )

# Ablations the paper does not print: min-pooling and a learned 1x1 conv.
for _stride in (2, 4):
    register_variant(
        f"mnist.fp_min_s{_stride}", "mnist", reduction=Reduction("fp_min", _stride),
        description=f"Spatial feature pooling (min), stride {_stride}; not in the paper",
    )  # fmt: skip
    register_variant(
        f"mnist.conv1x1_s{_stride}", "mnist", reduction=Reduction("conv1x1", _stride),
        description=f"1x1 conv reduction, stride {_stride}; not in the paper",
    )  # fmt: skip
