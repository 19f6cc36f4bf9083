"""What each paper table is, as data: its rows, columns and protocol per profile.

Adding a table means adding a :class:`TableSpec` here (and registering its
variants in ``registry``); the runner, store and reports need no new code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from registry import variant_info
from registry.models.vgg import TABLE_STRIDES, table_rows

from .errors import UserError

PROFILES: Mapping[str, str] = MappingProxyType(
    {
        "paper": "the paper's protocol on the full datasets (downloaded under --data-root)",
        "demo": "offline, real data shipped inside installed packages, CPU, minutes; "
        "not comparable to the paper",
        "smoke": "seconds on tiny data; what the tests use",
    }
)


@dataclass(frozen=True)
class Protocol:
    """How one cell is trained and tested. Fields the paper leaves open are documented
    in ``choices`` and shown in every report."""

    dataset: str
    epochs: int
    batch_size: int
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    # (epoch, lr) pairs: from that epoch on the learning rate is lr
    lr_steps: tuple[tuple[int, float], ...] = ()
    eval_points_per_epoch: int = 4
    test_batch_size: int = 1000
    test_repeats: int = 3
    train_limit: int | None = None
    test_limit: int | None = None
    # augmentation of training batches: random crop after zero padding by this many
    # pixels (0: none) and random horizontal flips
    crop_padding: int = 0
    hflip: bool = False
    choices: str = ""


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    rows: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    protocols: Mapping[str, Protocol] = field(default_factory=dict)
    # how the paper's FLOPs column is derived: "2x_params" or "2x_weights" (biases excluded)
    paper_flops: str = "2x_params"
    notes: tuple[str, ...] = ()
    built: bool = True
    issue: str = ""

    def protocol(self, profile: str) -> Protocol:
        if profile not in PROFILES:
            raise UserError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
        if profile not in self.protocols:
            raise UserError(
                f"{self.name} has no {profile!r} profile; choose one of: {', '.join(self.protocols)}"
            )
        return self.protocols[profile]

    def row_label(self, variant: str) -> str:
        """The paper's label for a row, or the variant's description marked as extra."""
        info = variant_info(variant)
        paper = info.paper_row(self.name)
        return paper.row if paper else f"{info.description} (not in the paper)"


_MNIST_CHOICES = (
    "The paper does not name the optimiser or the activation: Adam (lr 1e-3, the "
    "TensorFlow default) and ReLU are used. Weights Xavier-uniform, biases zero."
)

TABLE1 = TableSpec(
    name="table1",
    title="Table 1: MNIST test results, feature pooling vs. conv dimension reduction",
    rows=(
        "mnist.baseline",
        "mnist.fp_max_s2",
        "mnist.fp_max_s4",
        "mnist.topk_s2",
        "mnist.topk_s4",
        "mnist.conv_s2",
        "mnist.conv_s4",
    ),
    columns=(
        "accuracy",
        "train_time_s",
        "test_time_s",
        "params",
        "params_M_paper_conv",
        "flops",
        "flops_paper_conv",
    ),
    protocols=MappingProxyType(
        {
            "paper": Protocol(dataset="mnist", epochs=5, batch_size=100, choices=_MNIST_CHOICES),
            "demo": Protocol(
                dataset="mnist5k",
                epochs=3,
                batch_size=100,
                choices=_MNIST_CHOICES + " Demo: 3 epochs instead of 5.",
            ),
            "smoke": Protocol(
                dataset="mnist5k",
                epochs=1,
                batch_size=50,
                eval_points_per_epoch=2,
                test_repeats=1,
                train_limit=300,
                test_limit=100,
                choices=_MNIST_CHOICES + " Smoke: 300 training and 100 test digits, 1 epoch.",
            ),
        }
    ),
    paper_flops="2x_weights",
    notes=(
        "Compression: share of conv2's 32 maps removed before the FC layers (50% = stride 2).",
        "Paper timings were taken on a GTX 1070 with TensorFlow; ours on the device named above.",
    ),
)


_VGG_CHOICES = (
    "Weight decay is not stated in the paper: 5e-4 is used (the usual value for VGG on "
    "CIFAR-10). Inputs normalised per channel with CIFAR-10's training mean and std; random "
    "crops pad with zeros; weights Xavier-uniform, biases zero (the TensorFlow defaults); no BN "
    "after the single FC layer. Test accuracy once per epoch."
)
_VGG_PAPER = Protocol(
    dataset="cifar10", epochs=180, batch_size=250, optimizer="sgd", lr=0.1, momentum=0.9,
    weight_decay=5e-4, lr_steps=((80, 0.01), (120, 0.001), (150, 0.0005)),
    crop_padding=4, hflip=True, eval_points_per_epoch=1, choices=_VGG_CHOICES,
)  # fmt: skip


def _vgg_table(name: str) -> TableSpec:
    """Table 2 (stride 2) or 3 (stride 4): the same protocol, rows differing in stride."""
    stride = TABLE_STRIDES[name]
    return TableSpec(
        name=name,
        title=f"Table {name[-1]}: VGG-16 on CIFAR-10, feature pooling with stride {stride}",
        rows=table_rows(name),
        columns=(
            "accuracy",
            "train_time_s",
            "test_time_s",
            "params",
            "params_M_paper_conv",
            "flops",
            "flops_paper_conv",
        ),
        protocols=MappingProxyType(
            {
                "paper": _VGG_PAPER,
                "demo": replace(
                    _VGG_PAPER,
                    dataset="cifar10_synthetic",
                    epochs=4,
                    batch_size=20,
                    lr=0.01,
                    lr_steps=(),
                    test_batch_size=160,
                    test_repeats=1,
                    choices=_VGG_CHOICES + " Demo: GENERATED images (tinted gratings), not "
                    "CIFAR-10; 320 train / 160 test, 4 epochs, batch 20, lr 0.01 throughout "
                    "(0.1 is unstable over so few steps). Its accuracies are not comparable "
                    "to the paper's.",
                ),
                "smoke": replace(
                    _VGG_PAPER,
                    dataset="cifar10_fixture",
                    epochs=1,
                    batch_size=8,
                    train_limit=16,
                    test_limit=8,
                    test_batch_size=8,
                    test_repeats=1,
                    choices=_VGG_CHOICES + " Smoke: 16 training and 8 test images from the "
                    "CIFAR-10-layout fixture, 1 epoch, batch 8.",
                ),
            }
        ),
        paper_flops="2x_params",
        notes=(
            "Rows as in the paper (ConvX = feature pooling behind block X: after its max pool "
            "for X = 1..4, after its last conv for X = 5), then rows marked 'not in the paper': "
            "a 1x1 conv and top-k feature pooling at single positions.",
            "The baseline's 93.25% is quoted by the paper from another work.",
            "Paper accuracy: one training run each, seeds and spread not given.",
        ),
    )


def _planned(name: str, title: str, issue: str) -> TableSpec:
    return TableSpec(name=name, title=title, built=False, issue=issue)


TABLES: Mapping[str, TableSpec] = MappingProxyType(
    {
        t.name: t
        for t in (
            TABLE1,
            _vgg_table("table2"),
            _vgg_table("table3"),
            _planned("table4", "Table 4: denoiser PSNR on BSD500", "issue 4"),
            _planned("table5", "Table 5: denoiser on CIFAR-10, spatial vs top-k", "issue 4"),
            _planned("table6", "Table 6: vs BM3D, K-SVD, SURE-GMM, NL-Bayes", "issue 5"),
            _planned("table7", "Table 7: vs DnCNN on BSD68", "issue 5"),
            _planned("table8", "Table 8: vs RED-Net on BSD200", "issue 5"),
            _planned("imagenet", "ResNet-50 on ImageNet", "issue 8"),
            _planned("adversarial", "FGSM adversarial denoising", "issue 8"),
        )
    }
)


def get_table(name: str) -> TableSpec:
    """The spec of a built table, or a UserError naming the valid choices."""
    spec = TABLES.get(name)
    built = [t.name for t in TABLES.values() if t.built]
    if spec is None:
        raise UserError(f"unknown table {name!r}; choose one of: {', '.join(built)}")
    if not spec.built:
        raise UserError(
            f"{name} is not built yet ({spec.issue}); tables available now: {', '.join(built)}"
        )
    return spec
