import pytest
import torch

from harness.train.measure import count_conv_weights, count_flops, count_params, paper_convention
from registry import Reduction, create_model, printed_value, variant_info
from registry.models.denoiser import KERNELS
from registry.nets.denoiser import Denoiser

# sum of k^2 over the inception kernels 1, 3, 5, 7, 9
K2 = sum(k * k for k in KERNELS)
# GTX 1070 peak fp32: 1920 CUDA cores x 2 FLOP x 1.683 GHz boost
GTX1070_FLOPS = 1920 * 2 * 1.683e9


def _shapes_only(variant: str) -> torch.nn.Module:
    """The model on the meta device: shapes and counts, no memory or initialisation."""
    with torch.device("meta"):
        return create_model(variant)


def _hand_counts(fp: bool, residual_blocks: int = 3, branch_convs: int = 2) -> tuple[int, int]:
    """(conv kernel weights, all trainable parameters) of the denoiser, by hand.

    Every block has one branch per kernel size; each branch is a conv with bias, then BN
    (gamma, beta) except in the last deconvolution block. A residual branch of width W
    holds ``branch_convs`` such units of W -> W.
    """
    res = 128 if fp else 256
    blocks = [(3, 32), (32, 64), (64, 256), (res // 2 if fp else res, 64), (64, 32), (32, 3)]
    weights = sum(cin * cout * K2 for cin, cout in blocks)
    params = weights + sum(5 * cout * 3 for _, cout in blocks[:-1]) + 5 * 3  # +bias +BN
    units = residual_blocks * branch_convs * len(KERNELS)
    weights += residual_blocks * branch_convs * res * res * K2
    params += residual_blocks * branch_convs * res * res * K2 + units * 3 * res
    return weights, params


@pytest.mark.parametrize(
    ("variant", "fp"),
    [
        ("denoiser.baseline", False), ("denoiser.fp1", True), ("denoiser.fp2", True),
        ("denoiser.topk2", True), ("denoiser.fullres_baseline", False),
        ("denoiser.fullres_fp2", True),
    ],
)  # fmt: skip
def test_parameter_counts_match_the_hand_formula(variant, fp):
    model = _shapes_only(variant)
    weights, params = _hand_counts(fp)
    if variant.endswith("fp1"):  # FP1 only: the first deconv block takes all 128 maps
        weights += 64 * 64 * K2
        params += 64 * 64 * K2
    assert (count_conv_weights(model), count_params(model)) == (weights, params)


def test_six_residual_blocks_of_one_conv_have_the_same_counts():
    with torch.device("meta"):
        model = Denoiser(residual_blocks=6, branch_convs=1)
    weights, _ = _hand_counts(fp=False, residual_blocks=6, branch_convs=1)
    assert count_conv_weights(model) == weights == _hand_counts(fp=False)[0]


@pytest.mark.parametrize("variant", ["denoiser.baseline", "denoiser.fp2", "denoiser.topk2"])
def test_conv_weights_rule_reproduces_table5_digits(variant):
    values = variant_info(variant).paper_row("table5").values
    ours = paper_convention(_shapes_only(variant), "2x_conv_weights")
    assert f"{ours['params_M_paper_conv']:.2f}" == values["params_M_paper_conv"]
    mantissa, exponent = f"{ours['flops_paper_conv']:.2e}".split("e")
    assert f"{mantissa}e{int(exponent)}" == values["flops_paper_conv"]
    # all parameters (the rule of Tables 2-3) miss the printed digits
    assert (
        f"{paper_convention(_shapes_only(variant), '2x_params')['params_M_paper_conv']:.2f}"
        != (values["params_M_paper_conv"])
    )


def _clock_bound(variant: str) -> float:
    """Forward MACs per 32x32 image that Table 5's times allow at a GTX 1070's peak:
    an epoch of 50,000 images forward and backward (3 x forward, 2 FLOPs a MAC), and
    the 10,000-image test set forward only."""
    values = variant_info(variant).paper_row("table5").values
    train = printed_value(values["train_time_s"])[0] * GTX1070_FLOPS / (50_000 * 3 * 2)
    test = printed_value(values["test_time_s"])[0] * GTX1070_FLOPS / (10_000 * 2)
    return min(train, test)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["denoiser.baseline", "denoiser.fp2", "denoiser.topk2"])
def test_flops_per_cifar_image_fit_the_papers_clock(variant):
    bound = _clock_bound(variant)
    assert count_flops(create_model(variant), (3, 32, 32)) < bound
    # the full-resolution wiring cannot: its convs alone cost weights x 1024 pixels
    assert count_conv_weights(_shapes_only(f"denoiser.fullres_{variant[9:]}")) * 32 * 32 > bound


def test_one_fp_layer_sits_between_baseline_and_two():
    counts = [
        count_params(_shapes_only(v)) for v in ("denoiser.baseline", "denoiser.fp1", "denoiser.fp2")
    ]
    assert counts[0] > counts[1] > counts[2]


@pytest.mark.parametrize(
    ("size", "fp", "strides"),
    [
        ((21, 13), Reduction(), (2, 2, 2)),
        ((13, 21), Reduction("fp_max", 2), (2, 2, 2)),
        ((16, 16), Reduction("topk", 2), (2, 2, 2)),
        ((15, 15), Reduction("conv1x1", 2), (2, 2, 2)),
        ((1, 2), Reduction(), (2, 2, 2)),
        ((17, 10), Reduction("fp_max", 2), (1, 2, 1)),
        ((23, 18), Reduction(), (1, 2, 4)),
        ((21, 13), Reduction(), (1, 1, 1)),
    ],
)
def test_output_size_equals_input_size(size, fp, strides):
    model = Denoiser(
        fp1=fp, fp2=fp if fp.kind != "none" else Reduction(), width=0.125, strides=strides
    ).eval()
    y = torch.rand(2, 3, *size)
    with torch.no_grad():
        assert model(y).shape == y.shape
        torch.testing.assert_close(model(y), y - model.noise(y))


def test_full_size_bsds500_image_round_trips():
    model = create_model("denoiser.fp2", width=1 / 16).eval()
    with torch.no_grad():
        for size in ((481, 321), (321, 481)):
            assert model(torch.rand(1, 3, *size)).shape == (1, 3, *size)


def test_full_width_odd_image_shape():
    model = create_model("denoiser.fp2").eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 9, 7)).shape == (1, 3, 9, 7)


def test_bad_strides_and_conv_at_the_second_point_are_refused():
    with pytest.raises(ValueError, match="fp2 cannot be a 'conv' reduction"):
        Denoiser(fp2=Reduction("conv", 2))
    with pytest.raises(ValueError, match="strides must be three positive integers"):
        Denoiser(strides=(2, 0, 2))
