import subprocess
import sys

import pytest
import torch

import registry
from registry import (
    Reduction,
    create_model,
    list_variants,
    printed_value,
    register_variant,
    variant_info,
)

TABLE1_ROWS = [
    "mnist.baseline",
    "mnist.fp_max_s2",
    "mnist.fp_max_s4",
    "mnist.topk_s2",
    "mnist.topk_s4",
    "mnist.conv_s2",
    "mnist.conv_s4",
]


def test_registry_imports_without_the_harness():
    code = "import sys, registry; registry.create_model('mnist.baseline'); print('harness' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_list_variants_patterns():
    assert set(TABLE1_ROWS) <= set(list_variants("mnist.*"))
    found = list_variants("mnist.topk_s?")  # a study loaded earlier may have added more
    assert {"mnist.topk_s2", "mnist.topk_s4"} <= set(found)
    assert found == sorted(found) and {len(name) for name in found} == {len("mnist.topk_s2")}
    assert list_variants("nothing*") == []
    assert list_variants() == sorted(list_variants())


def test_duplicates_are_rejected():
    with pytest.raises(ValueError, match="already registered"):
        register_variant("mnist.baseline", "mnist")
    with pytest.raises(ValueError, match="already registered"):
        registry.register_arch("mnist")(lambda: None)


def test_unknown_names_suggest_close_matches():
    with pytest.raises(ValueError, match=r"did you mean mnist\.baseline"):
        create_model("mnist.baselin")
    with pytest.raises(ValueError, match="unknown architecture"):
        register_variant("x.y", "no-such-arch")


def test_metadata_names_table_row_and_paper_numbers():
    info = variant_info("mnist.topk_s2")
    assert info.arch == "mnist" and info.in_paper
    row = info.paper_row("table1")
    assert row.row == "Feature pooling (top-k) 50%"
    assert row.number("train_time_s") == 80.31
    assert not variant_info("mnist.fp_min_s2").in_paper


def test_overrides_and_bare_architectures():
    model = create_model("mnist.fp_max_s2", num_classes=3)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 3)
    bare = create_model("mnist", reduction=Reduction("fp_min", 4))
    assert bare.hidden[1].in_features == 8 * 28 * 28


def test_user_variant_in_a_few_lines():
    name = "mnist.test_conv1x1_s8"
    if name not in list_variants():
        register_variant(name, "mnist", reduction=Reduction("conv1x1", 8), description="test")
    assert create_model(name).hidden[1].in_features == 4 * 28 * 28


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        ("12.260", 12.26, 0.001),
        ("2.571e7", 2.571e7, 1e4),
        ("93.25%", 0.9325, 1e-4),
        ("64.31", 64.31, 0.01),
    ],
)
def test_printed_value(text, value, unit):
    got_value, got_unit = printed_value(text)
    assert got_value == pytest.approx(value) and got_unit == pytest.approx(unit)


@pytest.mark.parametrize(
    ("kind", "stride", "message"),
    [
        ("fp_mean", 2, "unknown reduction kind"),
        ("fp_max", 1, "stride of 2 or more"),
        ("none", 2, "stride 1"),
        ("topk", 2.0, "integer"),
    ],
)
def test_bad_reductions(kind, stride, message):
    with pytest.raises(ValueError, match=message):
        Reduction(kind, stride)


def test_reduction_channels():
    assert Reduction("conv", 4).conv_channels(32) == 8
    assert Reduction("fp_max", 4).conv_channels(32) == 32
    assert Reduction("topk", 4).out_channels(32) == 8
    with pytest.raises(ValueError, match="not divisible"):
        Reduction("fp_max", 3).out_channels(32)
