import pytest
import torch

from harness.tables.paper import TABLES
from harness.train.measure import count_flops, paper_convention
from registry import Reduction, create_model, list_variants, printed_value, variant_info
from registry.models.vgg import POSITIONS

PAPER_ROWS = [
    (table, variant)
    for table in ("table2", "table3")
    for variant in TABLES[table].rows
    if variant_info(variant).paper_row(table)
]


def test_twenty_paper_rows():
    assert len(PAPER_ROWS) == 20


@pytest.mark.parametrize(("table", "variant"), PAPER_ROWS)
def test_paper_columns_match_the_paper(table, variant):
    paper = variant_info(variant).paper_row(table)
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        ours = paper_convention(create_model(variant), TABLES[table].paper_flops)
    for column in ("params_M_paper_conv", "flops_paper_conv"):
        printed, unit = printed_value(paper.values[column])
        assert abs(ours[column] - printed) <= unit * 1.0001, (column, ours[column], printed)


def test_baseline_count_and_true_flops_by_hand():
    model = create_model("vgg16.baseline")
    assert sum(p.numel() for p in model.parameters()) == 14_743_626
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    sides = [32, 32, 16, 16, 8, 8, 8, 4, 4, 4, 2, 2, 2]
    macs = sum(
        side * side * cout * cin * 9
        for cin, cout, side in zip([3, *widths[:-1]], widths, sides, strict=True)
    )
    conv_outputs = sum(side * side * w for w, side in zip(widths, sides, strict=True))
    pool_inputs = [32 * 32 * 64, 16 * 16 * 128, 8 * 8 * 256, 4 * 4 * 512]
    # fvcore: BN at eval (affine) 2 per element; ours: ReLU 1 per element, max pool 3 per window
    expected = macs + 3 * conv_outputs + sum(p * 3 // 4 for p in pool_inputs) + 2048 * 10
    assert count_flops(model, (3, 32, 32)) == expected


def test_paper_order_then_extra_rows():
    rows = TABLES["table2"].rows
    labels = [variant_info(v).paper_row("table2") for v in rows]
    assert [p.row for p in labels[:10]] == [
        "Baseline", "Baseline+FP1", "Baseline+FP2", "Baseline+FP3", "Baseline+FP4",
        "Baseline+FP5", "Baseline+2FP", "Baseline+3FP", "Baseline+4FP", "Baseline+5FP",
    ]  # fmt: skip
    assert labels[10:] == [None] * 10
    assert set(rows[10:]) == set(list_variants("vgg16.at?_conv1x1_s2")) | set(
        list_variants("vgg16.at?_topk_s2")
    )
    assert all("not in the paper" in TABLES["table2"].row_label(v) for v in rows[10:])
    assert TABLES["table3"].rows[6] == "vgg16.at34_fp_max_s4"
    assert variant_info("vgg16.at345_fp_max_s4").paper_row("table3").values["accuracy"] == "93.65%"


# maps entering the classifier side of each block: (channels, side) after block X
_AFTER = {1: (64, 16), 2: (128, 8), 3: (256, 4), 4: (512, 2), 5: (512, 2)}


@pytest.mark.parametrize("stride", [2, 4])
@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("kind", ["fp_max", "conv1x1", "topk", "conv"])
def test_shapes_through_the_network(kind, position, stride):
    with torch.device("meta"):  # shapes only
        model = create_model("vgg16", reductions={position: Reduction(kind, stride)}).eval()
        seen = []
        for module in model.features:
            module.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[1:])))
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    channels, side = _AFTER[position]
    assert (channels // stride, side, side) in seen
    assert seen[-1] == ((512 // stride if position == 5 else 512), 2, 2)
    assert model.head.in_features == seen[-1][0] * 4


def test_any_number_of_positions_and_kinds():
    model = create_model(
        "vgg16",
        reductions={1: Reduction("fp_min", 2), 3: Reduction("topk", 4), 5: Reduction("conv", 2)},
    )
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    assert model.head.in_features == 256 * 4


@pytest.mark.parametrize(
    ("reductions", "message"),
    [
        ({6: Reduction("fp_max", 2)}, "unknown VGG-16 reduction position 6; choose one of 1..5"),
        ({0: Reduction("fp_max", 2)}, "unknown VGG-16 reduction position 0"),
        ({"conv3": Reduction("fp_max", 2)}, "unknown VGG-16 reduction position 'conv3'"),
        ({1: Reduction("fp_max", 3)}, "stride 3 does not divide the 64 maps after block 1"),
        ({1: Reduction("topk", 128)}, "stride 128 does not divide the 64 maps after block 1"),
        ({2: "fp_max"}, "expected a Reduction"),
    ],
)
def test_bad_positions_and_strides(reductions, message):
    with pytest.raises(ValueError) as err:
        create_model("vgg16", reductions=reductions)
    assert message in str(err.value) and "\n" not in str(err.value)
