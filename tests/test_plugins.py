"""A user's own code without editing the package: reduction kinds and variants registered
from the user's file (``load_plugins``, ``--plugins``) or an installed package's entry
points, counted by fvcore like the built-ins; cells that need a plugin import it wherever
they run; a model with an op no handle counts still trains and reports."""

from __future__ import annotations

import importlib
import math
import os
import socket
import sys
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest
import torch
from fvcore.nn.jit_handles import get_shape

from harness.cli import main
from harness.core.plugins import PluginError, load_plugins
from harness.core.task import RunOptions
from harness.render.figures import write_table_plot
from harness.render.report import build_report, render_markdown, write_report
from harness.run.cell import FAILED, TRAINED, execute_cell
from harness.run.executors import LocalExecutor, RayExecutor
from harness.run.runner import run_table
from harness.store.records import RunStore
from harness.tables.cells import cell_config
from harness.tables.costs import Plan, measure_model, training_shape
from harness.tables.paper import TABLE1
from harness.train.measure import (
    UncountedOps,
    count_flops,
    count_params,
    flops_or_unknown,
    register_flop_handle,
)
from registry import (
    Reduction,
    create_model,
    list_reductions,
    reduction_kind,
    register_reduction,
)

ROOT = Path(__file__).resolve().parents[1]
USER_FILE = ROOT / "examples" / "plugins" / "my_reductions.py"
MNIST = (1, 28, 28)
PIXELS = 28 * 28  # conv2's maps are 28 x 28; 32 of them reach the reduction
# Table 1's network on even less data than its smoke profile: a cell trains in seconds
TINY = replace(TABLE1.protocols["smoke"], train_limit=100, test_limit=50, eval_points_per_epoch=1)
# a reduction by an op that has no FLOP handle by default (aten::logsumexp)
UNCOUNTABLE = '''
import torch
from torch import nn
from registry import Reduction, register_reduction, register_variant

class SoftMaxPool(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        return torch.logsumexp(x.unflatten(1, (x.shape[1] // self.stride, self.stride)), 2)

@register_reduction("test_lse")
def lse(channels, stride):
    """log-sum-exp over groups of stride channels"""
    return SoftMaxPool(stride)

register_variant("mnist.test_lse_s2", "mnist", reduction=Reduction("test_lse", 2),
                 description="log-sum-exp pooling (no FLOP handle)")
'''


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def user_plugins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's file and one whose op has no FLOP handle, loaded as a user would."""
    folder = tmp_path_factory.mktemp("user")
    _write(folder, "uncountable_reductions.py", UNCOUNTABLE)
    load_plugins([str(USER_FILE), "uncountable_reductions"], search_paths=[folder])
    return folder


def test_plugins_are_named_before_they_are_imported(tmp_path: Path) -> None:
    _write(tmp_path, "named_first.py", "from registry import register_arch\n")
    seen = []
    load_plugins(["named_first"], [tmp_path], say=lambda line: seen.append(
        (line, "named_first" in sys.modules)))  # fmt: skip
    assert seen == [("importing plugins (this runs their code): named_first", False)]
    assert "named_first" in sys.modules and str(tmp_path) not in sys.path
    load_plugins(["named_first", str(tmp_path / "named_first.py")], say=seen.append)
    assert len(seen) == 1  # once per process, however it is named


def test_a_reduction_from_the_users_file_is_built_and_counted(user_plugins: Path) -> None:
    assert {"fp_max", "topk", "conv1x1", "channel_avg"} <= set(list_reductions())
    assert reduction_kind("channel_avg").description.startswith("Channel averaging")
    model = create_model("mnist", reduction=Reduction("channel_avg", 2))
    x = torch.randn(1, 32, 5, 5)
    layer = model.features[-1]
    torch.testing.assert_close(layer(x), (x[:, 0::2] + x[:, 1::2]) / 2)
    fp = create_model("mnist.fp_max_s2")
    assert count_params(model) == count_params(fp) == 6_432_970
    # the same convs and FCs; a mean of 2 costs 2 (an add and a divide), a max of 2 costs 1
    assert count_flops(model, MNIST) - count_flops(fp, MNIST) == PIXELS * 16
    assert count_params(create_model("mnist.channel_avg_s2")) == count_params(model)
    # VGG-16 after block 2, stride 4: 128 maps at 8 x 8 become 32, the mean of 4 costs 4
    vgg = create_model("vgg16", reductions={2: Reduction("channel_avg", 4)})
    vgg_fp = create_model("vgg16.at2_fp_max_s4")
    assert count_params(vgg) == count_params(vgg_fp)
    assert count_flops(vgg, (3, 32, 32)) - count_flops(vgg_fp, (3, 32, 32)) == 8 * 8 * 32


def test_reduction_names_are_checked() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_reduction("fp_max")(lambda c, s: torch.nn.Identity())
    with pytest.raises(ValueError, match="lower case"):
        register_reduction("Bad Name")(lambda c, s: torch.nn.Identity())
    with pytest.raises(ValueError, match="'aten::mean' to callables"):
        register_reduction("test_badflops", flops={"mean": len})(lambda c, s: None)
    with pytest.raises(ValueError, match="unknown reduction kind 'fp_mx'; did you mean fp_max"):
        Reduction("fp_mx", 2)
    assert list_reductions()[:7] == [
        "none",
        "conv",
        "fp_max",
        "fp_min",
        "topk",
        "topk_min",
        "conv1x1",
    ]


def test_an_installed_package_is_found_through_its_entry_points(tmp_path: Path) -> None:
    _write(tmp_path, "ep_reductions.py", (
        "from registry import register_reduction\n"
        "from registry.ops import FeaturePool\n"
        "import torch\n"
        "class GroupSum(torch.nn.Module):\n"
        "    def __init__(self, stride):\n"
        "        super().__init__(); self.stride = stride\n"
        "    def forward(self, x):\n"
        "        return x.unflatten(1, (x.shape[1] // self.stride, self.stride)).sum(2)\n"
        "@register_reduction('ep_sum')\n"
        "def ep_sum(channels, stride):\n"
        "    return GroupSum(stride)\n"
    ))  # fmt: skip
    _write(tmp_path, "ep_variants.py", (
        "from registry import Reduction, register_variant\n"
        "register_variant('mnist.ep_sum_s2', 'mnist', reduction=Reduction('ep_sum', 2))\n"
    ))  # fmt: skip
    info = tmp_path / "ep_plugin-0.1.dist-info"
    info.mkdir()
    _write(info, "METADATA", "Metadata-Version: 2.1\nName: ep-plugin\nVersion: 0.1\n")
    _write(info, "entry_points.txt", (
        "[harness.reductions]\nep_sum = ep_reductions\n\n"
        "[harness.variants]\nep_variants = ep_variants\n"
    ))  # fmt: skip
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        model = create_model("mnist.ep_sum_s2")  # not registered yet: the lookup finds it
        assert "ep_sum" in list_reductions()
        # a sum of 2 is one addition, as a max of 2 is one comparison
        assert count_flops(model, MNIST) == count_flops(create_model("mnist.fp_max_s2"), MNIST)
    finally:
        sys.path.remove(str(tmp_path))


def test_a_broken_entry_point_is_one_line(tmp_path: Path) -> None:
    _write(tmp_path, "ep_broken.py", "raise RuntimeError('needs a licence file')\n")
    info = tmp_path / "ep_broken-0.1.dist-info"
    info.mkdir()
    _write(info, "METADATA", "Metadata-Version: 2.1\nName: ep-broken\nVersion: 0.1\n")
    _write(info, "entry_points.txt", "[harness.reductions]\nbroken = ep_broken\n")
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        with pytest.raises(PluginError) as caught:
            load_plugins([], say=lambda _: None)
    finally:
        sys.path.remove(str(tmp_path))
    assert str(caught.value) == (
        "plugin 'ep_broken' failed to import: RuntimeError: needs a licence file"
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("raise ValueError('no GPU named here')\n", "ValueError: no GPU named here"),
        ("def f(:\n", "SyntaxError: invalid syntax ({path}:1)"),
        ("import not_a_module_anywhere\n",
         "ModuleNotFoundError: No module named 'not_a_module_anywhere'"),
    ],
)  # fmt: skip
def test_a_plugin_that_fails_to_import_is_one_line(tmp_path: Path, text: str, reason: str) -> None:
    path = _write(tmp_path, f"broken_{abs(hash(text))}.py", text)
    with pytest.raises(PluginError) as caught:
        load_plugins([str(path)], say=lambda _: None)
    assert str(caught.value) == f"plugin {str(path)!r} failed to import: " + reason.format(
        path=path
    )


def test_the_cli_refuses_a_broken_plugin_before_any_work(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    code = main(["plan", "table1", "--profile", "smoke", "--runs-dir", str(runs),
                 "--plugins", "no_such_plugin_module"])  # fmt: skip
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and not runs.exists()
    assert err == [
        "importing plugins (this runs their code): no_such_plugin_module",
        "error: plugin 'no_such_plugin_module' failed to import: "
        "ModuleNotFoundError: No module named 'no_such_plugin_module'",
    ]


def test_an_op_without_a_handle_makes_flops_unknown_with_one_line(user_plugins: Path) -> None:
    model = create_model("mnist.test_lse_s2")
    lines: list[str] = []
    assert flops_or_unknown(model, MNIST, say=lines.append) is None
    assert len(lines) == 1 and "aten::logsumexp" in lines[0]
    assert 'register_flop_handle("aten::logsumexp", fn)' in lines[0]
    measured = measure_model(model, "2x_weights", MNIST)
    assert measured["flops"] is None and measured["params"] == 6_432_970
    with pytest.raises(ValueError, match="already has a FLOP handle"):
        register_flop_handle("aten::mean", lambda inputs, outputs: 0)


def test_flop_handles_given_by_a_reduction_or_registered_are_used() -> None:
    class Log1p(torch.nn.Module):
        def forward(self, x):
            return torch.log1p(x[:, ::2])

    class Expm1(torch.nn.Module):
        def forward(self, x):
            return torch.expm1(x[:, ::2])

    def per_output(inputs, outputs) -> int:
        return 7 * math.prod(get_shape(outputs[0]))  # an odd price, seen in the total

    # (handles are global: ops no other test relies on being uncounted)
    register_reduction("test_log1p", flops={"aten::log1p": per_output})(lambda c, s: Log1p())
    register_reduction("test_expm1")(lambda c, s: Expm1())
    base = count_flops(create_model("mnist.conv1x1_s2"), MNIST) - PIXELS * 32 * 16
    log1p = count_flops(create_model("mnist", reduction=Reduction("test_log1p", 2)), MNIST)
    assert log1p == base + 7 * PIXELS * 16
    expm1 = create_model("mnist", reduction=Reduction("test_expm1", 2))
    with pytest.raises(UncountedOps, match="aten::expm1"):
        count_flops(expm1, MNIST)
    register_flop_handle("aten::expm1", per_output)
    assert count_flops(expm1, MNIST) == log1p


def _tiny(name: str, rows: tuple[str, ...]):
    return replace(TABLE1, name=name, rows=rows, protocols=MappingProxyType({"smoke": TINY}))


def test_an_uncountable_cell_trains_and_a_partial_table_reports(user_plugins, tmp_path) -> None:
    store = RunStore(tmp_path / "runs")
    ran = _tiny("plugins_partial", ("mnist.test_lse_s2",))
    summary = run_table(ran, profile="smoke", seeds=1, device="cpu", store=store,
                        data_root=tmp_path, log=lambda _: None)  # fmt: skip
    assert (summary.ran, summary.failed) == (1, 0)
    (record,) = store.records("plugins_partial", "smoke")
    assert record["metrics"]["flops"] is None and record["metrics"]["accuracy"] >= 0
    # a failed cell (its error file, no record) and a row never run, beside the done one
    failed = cell_config(ran, "mnist.channel_avg_s2", "smoke", 0)
    outcome = execute_cell({**failed, "plugins": ["no_such_plugin_module"]},
                           RunOptions(runs_dir=store.root, device="cpu"), spec=ran)  # fmt: skip
    assert outcome.status == FAILED
    spec = _tiny("plugins_partial", ("mnist.test_lse_s2", "mnist.channel_avg_s2", "mnist.topk_s2"))
    report = build_report(spec, "smoke", store)
    text = render_markdown(report).split("\n\n| ")[1]  # the first table (no paper rows here)
    table = [line.split("|") for line in ("| " + text).splitlines() if line[:2] == "| "]
    flops = [c.strip() for c in table[0]].index("FLOPs")
    # a row whose timing was disturbed (a busy machine) carries a mark after its label
    shown = {row[1].replace("‡", "").strip(): row[flops].strip() for row in table[1:]}
    assert shown["log-sum-exp pooling (no FLOP handle) (not in the paper)"] == "–"  # unknown
    out = tmp_path / "reports"
    assert write_table_plot(report, out)
    assert len(write_report(report, out, ("md", "tex", "csv", "json"))) == 4
    frame = report.frame.set_index("variant")
    assert frame.loc["mnist.topk_s2", "n_seeds"] == 0 and frame.loc["mnist.topk_s2", "flops"] > 0
    # no record: FLOPs are counted for the report and priced for the plan, and unknown there
    unrun = _tiny("plugins_unrun", ("mnist.test_lse_s2",))
    assert build_report(unrun, "smoke", store).frame["flops"].isna().all()
    config = cell_config(unrun, "mnist.test_lse_s2", "smoke", 0)
    price = Plan().price(unrun, config, store, training_shape(unrun, "smoke"))
    assert price == "to run (cost unknown: an op has no FLOP handle)"


def _plugin_cells(tmp_path: Path) -> tuple[list[dict], RunOptions]:
    """A cell whose model comes from the user's file (named by its path) and one naming a
    module nobody has, of a registered table, as a study's cells would be."""
    spec = replace(TABLE1, protocols=MappingProxyType({"smoke": TINY}))
    good = {**cell_config(spec, "mnist.channel_avg_s2", "smoke", 0), "plugins": [str(USER_FILE)]}
    bad = {**cell_config(spec, "mnist.baseline", "smoke", 0), "plugins": ["no_such_plugin_xyz"]}
    return [bad, good], RunOptions(data_root=tmp_path, runs_dir=tmp_path / "runs", device="cpu")


def _check_plugin_cells(outcomes: list, runs: Path) -> None:
    bad, good = sorted(outcomes, key=lambda o: o.status != FAILED)
    assert bad.status == FAILED and good.status == TRAINED, (bad.message, good.message)
    assert bad.message == (
        f"plugin 'no_such_plugin_xyz' failed to import on host {socket.gethostname()}: "
        "ModuleNotFoundError: No module named 'no_such_plugin_xyz'"
    )
    assert Path(bad.path).is_file()  # the traceback, where `plan` finds failed cells
    assert RunStore(runs).load(good.config)["metrics"]["flops"] > 0


def test_cells_import_their_plugins_and_one_that_cannot_fails_alone(user_plugins, tmp_path):
    configs, options = _plugin_cells(tmp_path)
    outcomes: list = []
    LocalExecutor().run(configs, options, outcomes.append)
    _check_plugin_cells(outcomes, options.runs_dir)


@pytest.mark.slow
def test_ray_workers_import_the_cells_plugins(user_plugins, tmp_path) -> None:
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["PYTHONPATH"] = str(ROOT)
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=128 * 2**20)
    try:
        configs, options = _plugin_cells(tmp_path)
        outcomes: list = []
        RayExecutor().run(configs, options, outcomes.append)
    finally:
        ray.shutdown()
    _check_plugin_cells(outcomes, options.runs_dir)
