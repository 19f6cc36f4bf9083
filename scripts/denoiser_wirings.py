"""Candidate wirings of the paper's denoiser against its parameter counts and its clock.

Prints a Markdown table: for each candidate, the conv kernel weights (the paper's
counting rule, 2^20 units), the forward cost of one 32x32 image (``count_flops``:
MACs + elementwise ops) and the numbers that would leave the last reduction point, for
the baseline and Baseline+2FP; then the most each network may cost per image if
Table 5's times were taken at a GTX 1070's fp32 peak. See README, "The denoiser's wiring".

    PYTHONPATH=. python scripts/denoiser_wirings.py
"""

from __future__ import annotations

import torch

from harness.train.measure import count_conv_weights, count_flops
from registry import Reduction, printed_value, variant_info
from registry.nets.denoiser import Denoiser

GTX1070_FLOPS = 1920 * 2 * 1.683e9  # CUDA cores x 2 FLOP (FMA) x boost clock
FP = {"fp1": Reduction("fp_max", 2), "fp2": Reduction("fp_max", 2)}

CANDIDATES: dict[str, tuple[dict[str, object], int]] = {
    "A. full resolution, 3 residual blocks (earlier wiring)": ({"strides": (1, 1, 1), "skips": False}, 32),
    "A1. full resolution, 1 residual block": ({"strides": (1, 1, 1), "skips": False, "residual_blocks": 1}, 32),
    "A0. full resolution, no residual block": ({"strides": (1, 1, 1), "skips": False, "residual_blocks": 0}, 32),
    "A8. full resolution on 8x8 inputs": ({"strides": (1, 1, 1), "skips": False}, 8),
    "B. strides 2,2,2 in the inception blocks, x2 upsampling in each deconv block": ({"skips": False}, 32),
    "B+S. B with additive skips inception -> deconv of the same size (chosen)": ({"skips": True}, 32),
    "B6. B+S with 6 residual blocks of one conv per branch": ({"residual_blocks": 6, "branch_convs": 1}, 32),
    "D. strides 1,2,4 with skips (inception 1 at full size)": ({"strides": (1, 2, 4)}, 32),
    "C. strides 2,2,1 (residual blocks at 8x8)": ({"strides": (2, 2, 1)}, 32),
}  # fmt: skip


def _after_fp2(model: Denoiser, side: int) -> int:
    """Numbers per image leaving the residual stage (after FP2): all that the decoder
    sees when there are no skips."""
    with torch.no_grad():
        return model.reduce2(model.residual(model.encoder(torch.zeros(1, 3, side, side)))).numel()


def main() -> None:
    print("| candidate | params (2^20, conv weights) | MACs/image | numbers after FP2 (of 3072) |")
    print("|---|---|---|---|")
    for name, (kwargs, side) in CANDIDATES.items():
        cells = []
        for fp in ({}, FP):
            model = Denoiser(**kwargs, **fp).eval()  # type: ignore[arg-type]
            cells.append(
                (
                    f"{count_conv_weights(model) / 2**20:.2f}",
                    f"{count_flops(model, (3, side, side)):.3g}",
                    f"{_after_fp2(model, side)}{' + skips' if model.skips else ''}",
                )
            )
        row = [" / ".join(c[i] for c in cells) for i in range(3)]
        print(f"| {name} | {' | '.join(row)} |")
    print("\nBound from Table 5's clock at 6.46 TFLOP/s (forward MACs per 32x32 image):")
    for variant in ("denoiser.baseline", "denoiser.fp2", "denoiser.topk2"):
        values = variant_info(variant).paper_row("table5").values
        train = printed_value(values["train_time_s"])[0] * GTX1070_FLOPS / (50_000 * 6)
        test = printed_value(values["test_time_s"])[0] * GTX1070_FLOPS / (10_000 * 2)
        print(f"- {variant}: train {train:.3g}, test {test:.3g}")


if __name__ == "__main__":
    main()
