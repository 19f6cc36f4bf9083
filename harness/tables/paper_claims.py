"""What the paper claims, per table, in the checkable form of :class:`harness.stats.claims.Claim`.

Each claim quotes the table cells or the sentence of Pei et al. (2020) it rests on. Where
the paper says "about" or "nearly", the band used for the check is stated in the claim's
text, so a reader can see how it was made checkable.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from harness.stats.claims import Claim
from registry.models.vgg import table_rows

_TABLE4_SIGMAS = (20, 30, 40, 50, 60)


def _psnr(*sigmas: int) -> tuple[str, ...]:
    return tuple(f"psnr_sigma{s}" for s in sigmas)


def _within_factor_2(ratio: float) -> dict[str, float]:
    """Bounds for a ratio the paper measured on other hardware: 'about' that, within 2x."""
    return {"low": ratio / 2, "high": ratio * 2}


def _vgg(table: str, label: str, best: str, cell: str) -> tuple[Claim, ...]:
    """Tables 2 and 3: the row the paper marks best, and five FP layers losing accuracy."""
    rows = table_rows(table)
    paper_rows = rows[:10]  # the paper's ten rows come first, the baseline among them
    return (
        Claim(
            f"{label} has the highest accuracy of the paper's ten rows",
            f"Table {table[-1]}: {label} {cell}, marked best; Baseline+3FP is 'nearly the "
            "greatest accuracy' for both strides",
            "best",
            (best, *(r for r in paper_rows if r != best)),
            ("accuracy",),
        ),
        Claim(
            "Baseline+5FP is less accurate than the baseline (too many FP layers)",
            "'when too many feature pooling layers are added in the network, as in the case of "
            "Baseline+5fp in Table 2 and Table 3, the accuracy is reduced'",
            "greater",
            (rows[0], paper_rows[-1]),
            ("accuracy",),
        ),
    )


CLAIMS: Mapping[str, tuple[Claim, ...]] = MappingProxyType(
    {
        "table1": (
            Claim(
                "Spatial FP at 50% is more accurate than the baseline",
                "Table 1: 0.9891 vs 0.9791; 'the network with feature pooling achieved higher "
                "accuracy'",
                "greater",
                ("mnist.fp_max_s2", "mnist.baseline"),
                ("accuracy",),
            ),
            Claim(
                "Spatial FP at 75% has the highest accuracy of the seven rows",
                "Table 1: *0.9909 marked best",
                "best",
                (
                    "mnist.fp_max_s4",
                    "mnist.baseline",
                    "mnist.fp_max_s2",
                    "mnist.topk_s2",
                    "mnist.topk_s4",
                    "mnist.conv_s2",
                    "mnist.conv_s4",
                ),
                ("accuracy",),
            ),
            Claim(
                "Top-k at 50% trains about 19x slower than spatial FP at 50% (checked: the "
                "ratio of epoch times lies within a factor 2 of 19.4, i.e. 9.7 to 38.8)",
                "Table 1 training time: 80.31 s vs 4.14 s per epoch (GTX 1070, TensorFlow)",
                "ratio",
                ("mnist.topk_s2", "mnist.fp_max_s2"),
                ("train_time_s",),
                **_within_factor_2(80.31 / 4.14),
            ),
            Claim(
                "Top-k at 50% tests about 48x slower than spatial FP at 50% (checked: within "
                "a factor 2 of 48.2, i.e. 24.1 to 96.4)",
                "Table 1 testing time: 12.624 s vs 0.262 s for the whole test set",
                "ratio",
                ("mnist.topk_s2", "mnist.fp_max_s2"),
                ("test_time_s",),
                **_within_factor_2(12.624 / 0.262),
            ),
        ),
        "table2": _vgg("table2", "Baseline+3FP", "vgg16.at345_fp_max_s2", "*93.69%"),
        "table3": _vgg("table3", "Baseline+FP4", "vgg16.at4_fp_max_s4", "*93.67%"),
        "table4": (
            Claim(
                "Baseline+2FP beats Baseline+1FP at every noise level",
                "Table 4: Baseline+2FP marked best at every sigma (31.68 vs 30.76 at sigma 20)",
                "greater",
                ("denoiser.fp2", "denoiser.fp1"),
                _psnr(*_TABLE4_SIGMAS),
            ),
            Claim(
                "Baseline+1FP beats the baseline at every noise level",
                "'Both Baseline+1FP and Baseline+2FP have better PSNR results than the "
                "baseline model' (Table 4)",
                "greater",
                ("denoiser.fp1", "denoiser.baseline"),
                _psnr(*_TABLE4_SIGMAS),
            ),
            Claim(
                "Baseline+2FP is more than 1 dB above the baseline at every noise level",
                "'the PSNR values of the Baseline+1FP and Baseline+2FP models are nearly 1-2 dB "
                "higher than that of the baseline model' (Table 4: +1.74 to +2.23 dB for +2FP)",
                "greater",
                ("denoiser.fp2", "denoiser.baseline"),
                _psnr(*_TABLE4_SIGMAS),
                low=1.0,
            ),
        ),
        "table5": (
            Claim(
                "Spatial FP (Baseline+2FP) beats the baseline at every noise level",
                "'both of the networks with feature pooling methods can obtain higher PSNR than "
                "the baseline model' (Table 5)",
                "greater",
                ("denoiser.fp2", "denoiser.baseline"),
                _psnr(20, 30, 40, 50),
            ),
            Claim(
                "Top-k FP beats the baseline at every noise level",
                "the same sentence; Table 5: 28.19 / 26.32 / 24.99 / 24.02 vs 27.81 / 26.11 / "
                "24.54 / 23.82",
                "greater",
                ("denoiser.topk2", "denoiser.baseline"),
                _psnr(20, 30, 40, 50),
            ),
            Claim(
                "Top-k FP trains slower than spatial FP",
                "'compared with the spatial pooling method, the top-k method is time "
                "consumption'; Table 5: 65.15 s vs 59.81 s per epoch",
                "ratio",
                ("denoiser.topk2", "denoiser.fp2"),
                ("train_time_s",),
                low=1.0,
            ),
        ),
        "table6": (
            Claim(
                "Baseline+2FP beats BM3D at every noise level, on each test set",
                "Table 6: +0.49 / 0.72 / 1.13 / 1.15 / 1.31 dB over BM3D on BSD500 ('our method "
                "outperforms BM3D ... by 0.49 dB, ...')",
                "greater",
                ("denoiser.fp2", "classical.bm3d"),
                _psnr(20, 30, 40, 50, 60),
            ),
            Claim(
                "Baseline+2FP beats K-SVD at every noise level, on each test set",
                "Table 6: Baseline+2FP marked best in every column",
                "greater",
                ("denoiser.fp2", "classical.ksvd"),
                _psnr(20, 30, 40, 50, 60),
            ),
        ),
        "table7": (
            Claim(
                "Baseline+2FP beats DnCNN at the noise levels the paper compares",
                "'when the noise level sigma is 15, 25 and 50, our network is ahead of DnCNN by "
                "1.07 dB, 0.73 dB and 0.45 dB' (Table 7)",
                "greater",
                ("denoiser.fp2", "dncnn.color20"),
                _psnr(15, 25, 50),
            ),
        ),
        "table8": (
            Claim(
                "Baseline+2FP beats RED-Net-30 at the noise levels the paper compares",
                "Table 8: 33.71 / 28.54 / 26.53 vs 33.38 / 27.88 / 25.69 at sigma 10 / 30 / 50",
                "greater",
                ("denoiser.fp2", "rednet.red30"),
                _psnr(10, 30, 50),
            ),
        ),
        "imagenet": (
            Claim(
                "FP before stage 2 raises ResNet-50's top-1 accuracy",
                "section 4.1(C): top-1 71.476% with feature pooling vs 71.434% retrained baseline",
                "greater",
                ("resnet50.fp_max_s2", "resnet50.baseline"),
                ("top1",),
            ),
        ),
        "adversarial": (
            Claim(
                "Denoising FGSM images raises ResNet-101's top-1 accuracy",
                "section 4.2(D): 27.18% on adversarial images, 36.05% after denoising, 'The "
                "accuracy increased by 8.87%'",
                "gain",
                ("resnet101.imagenet",),
                ("top1_denoised", "top1_adversarial"),
            ),
        ),
    }
)
