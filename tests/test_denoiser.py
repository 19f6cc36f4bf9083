import pytest
import torch

from registry import Reduction, create_model, printed_value, variant_info
from registry.models.denoiser import Denoiser


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("variant", "table"),
    [("denoiser.baseline", "table5"), ("denoiser.fp2", "table5"), ("denoiser.topk2", "table5")],
)
def test_parameter_counts_within_5_percent_of_the_paper(variant, table):
    printed, _ = printed_value(variant_info(variant).paper_row(table).values["params_M_paper_conv"])
    ours = _params(create_model(variant)) / 2**20
    assert abs(ours - printed) / printed < 0.05, (ours, printed)


def test_one_fp_layer_sits_between_baseline_and_two():
    counts = [
        _params(create_model(v)) for v in ("denoiser.baseline", "denoiser.fp1", "denoiser.fp2")
    ]
    assert counts[0] > counts[1] > counts[2]


@pytest.mark.parametrize(
    ("size", "fp"),
    [
        ((21, 13), Reduction()),
        ((13, 21), Reduction("fp_max", 2)),
        ((16, 16), Reduction("topk", 2)),
        ((15, 15), Reduction("conv1x1", 2)),
    ],
)
def test_odd_sizes_keep_their_shape(size, fp):
    model = Denoiser(fp1=fp, fp2=fp if fp.kind != "none" else Reduction(), width=0.125).eval()
    y = torch.rand(2, 3, *size)
    with torch.no_grad():
        assert model(y).shape == y.shape
        torch.testing.assert_close(model(y), y - model.noise(y))


def test_full_width_odd_image_shape():
    # 481 x 321 is a BSD500 image; a crop with the same parity keeps the test fast
    model = create_model("denoiser.fp2").eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 9, 7)).shape == (1, 3, 9, 7)


def test_conv_reduction_is_refused_at_the_second_point():
    with pytest.raises(ValueError, match="fp2 cannot be a 'conv' reduction"):
        Denoiser(fp2=Reduction("conv", 2))
