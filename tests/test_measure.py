import pytest
import torch
from torch import nn

from harness.tables.paper import TABLE1
from harness.train.measure import count_flops, count_params, median_time, paper_convention
from registry import Reduction, create_model, list_reductions, printed_value, variant_info


@pytest.mark.parametrize("variant", TABLE1.rows)
def test_table1_paper_columns_match_the_paper(variant):
    paper = variant_info(variant).paper_row("table1")
    ours = paper_convention(create_model(variant), TABLE1.paper_flops)
    for column in ("params_M_paper_conv", "flops_paper_conv"):
        printed, unit = printed_value(paper.values[column])
        assert abs(ours[column] - printed) <= unit * 1.0001, (column, ours[column], printed)


def test_exact_counts_of_the_decoded_network():
    assert count_params(create_model("mnist.baseline")) == 12_855_498
    assert count_params(create_model("mnist.conv_s4")) == 3_218_226


def test_true_flops_of_the_baseline_by_hand():
    # MACs: conv1 28*28*16*9, conv2 28*28*32*16*9, fc1 25088*512, fc2 512*10;
    # ReLU comparisons: 28*28*16 + 28*28*32 + 512
    macs = 28 * 28 * 16 * 9 + 28 * 28 * 32 * 16 * 9 + 25088 * 512 + 5120
    relus = 28 * 28 * 16 + 28 * 28 * 32 + 512
    assert count_flops(create_model("mnist.baseline"), (1, 28, 28)) == macs + relus


@pytest.mark.parametrize("kind", [k for k in list_reductions() if k != "none"])
def test_every_reduction_kind_is_counted(kind):
    base = count_flops(create_model("mnist", reduction=Reduction("conv", 2)), (1, 28, 28))
    flops = count_flops(create_model("mnist", reduction=Reduction(kind, 2)), (1, 28, 28))
    assert flops > 0
    if kind in ("fp_max", "fp_min", "topk", "topk_min"):
        # same FC sizes as the conv-reduced net, plus the full conv2 and the pooling itself
        extra_conv = 28 * 28 * 16 * 16 * 9 + 28 * 28 * 16
        assert flops > base + extra_conv


def test_unsupported_ops_fail_loudly():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return torch.erf(self.conv(x))

    with pytest.raises(RuntimeError, match="aten::erf"):
        count_flops(Odd(), (1, 8, 8))


def test_median_time_runs_warmup_then_repeats():
    calls = []
    median, times = median_time(lambda: calls.append(1), torch.device("cpu"), repeats=5, warmup=2)
    assert len(calls) == 7 and len(times) == 5 and median >= 0


def test_feature_pool_comparisons_are_counted():
    # identical convs and FCs around the reduction: spatial FP costs 28*28*16 comparisons
    # (one per pair), top-k a sort of 32 channels (32*5 comparisons) per pixel
    fp = count_flops(create_model("mnist.fp_max_s2"), (1, 28, 28))
    topk = count_flops(create_model("mnist.topk_s2"), (1, 28, 28))
    conv1x1 = count_flops(create_model("mnist.conv1x1_s2"), (1, 28, 28))
    assert conv1x1 - fp == 28 * 28 * 32 * 16 - 28 * 28 * 16  # 1x1 conv MACs (fvcore omits bias)
    assert topk - fp == 28 * 28 * 32 * 5 - 28 * 28 * 16
