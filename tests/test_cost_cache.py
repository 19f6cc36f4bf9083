"""``plan`` and ``report`` do not redo slow work whose inputs have not changed (issue 29):
a model's parameter and FLOP counts come from its records or the cost cache, and a plot
drawn from the same records is kept; any change to what determines them recomputes."""

from __future__ import annotations

import dataclasses
import importlib
import shutil
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import registry.bitonic
from harness.cli import main
from harness.core.task import get_task
from harness.render import plotstyle
from harness.store import cache
from harness.tables import costs
from harness.tables.paper import TABLES

GOLDEN_RUNS = Path(__file__).parent / "golden" / "runs"


@pytest.fixture
def builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The variants whose models are built from now on, with an empty cost cache of
    this test's own and no counts kept in this process."""
    monkeypatch.setenv(cache.ENV, str(tmp_path / "cache"))
    costs._model_cost.cache_clear()
    built: list[str] = []
    task_type = type(get_task("classification"))
    build = task_type.build_model

    def counting(self, protocol, variant):
        built.append(variant)
        return build(self, protocol, variant)

    monkeypatch.setattr(task_type, "build_model", counting)
    yield built
    costs._model_cost.cache_clear()


def test_plan_builds_each_model_once_then_reads_the_cost_cache(builds, tmp_path, capsys):
    argv = ["plan", "table1", "--profile", "smoke", "--runs-dir", str(tmp_path / "runs")]
    main(argv)
    first = capsys.readouterr().out
    assert sorted(builds) == sorted(TABLES["table1"].rows)  # each model once, not twice
    assert first.count("to run (~") == len(TABLES["table1"].rows)
    costs._model_cost.cache_clear()  # as in a new process: only the cache folder remembers
    main(argv)
    assert capsys.readouterr().out == first
    assert len(builds) == len(TABLES["table1"].rows)  # nothing built the second time


def test_a_changed_protocol_is_priced_again(builds):
    spec = TABLES["table1"]
    before = costs.model_cost(spec, "smoke", "mnist.baseline")
    assert costs.model_cost(spec, "smoke", "mnist.baseline") == before
    assert builds == ["mnist.baseline"]
    # the same variant with 100 classes: a different head, so a different count
    protocol = dataclasses.replace(
        spec.protocol("smoke"), arch_kwargs=(("mnist", (("num_classes", 100),)),)
    )
    changed = dataclasses.replace(spec, protocols={**spec.protocols, "smoke": protocol})
    after = costs.model_cost(changed, "smoke", "mnist.baseline")
    assert builds == ["mnist.baseline", "mnist.baseline"]
    assert after.columns["params"] - before.columns["params"] == 90 * 512 + 90
    assert after.columns["flops"] - before.columns["flops"] == 90 * 512


def test_plan_prices_a_variant_from_its_records(builds, tmp_path, capsys):
    runs = tmp_path / "runs"
    shutil.copytree(GOLDEN_RUNS / "table1", runs / "table1")
    main(["plan", "table1", "--profile", "smoke", "--seeds", "2", "--runs-dir", str(runs)])
    printed = capsys.readouterr().out
    assert "7 of 14 cells done" in printed
    assert builds == []  # seed 1 of each row is priced from seed 0's record


def test_the_code_fingerprint_covers_a_plugin_loaded_from_a_checkout(tmp_path, monkeypatch):
    before = cache.code_fingerprint()
    (tmp_path / "my_cost_plugin.py").write_text("WIDTH = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("my_cost_plugin")
    try:
        assert cache.code_fingerprint() != before
    finally:
        del sys.modules["my_cost_plugin"]
    assert cache.code_fingerprint() == before


def test_the_code_fingerprint_holds_the_kernels_source_whether_or_not_it_is_loaded():
    """registry's C kernel is loaded only with torch (``plan`` and ``report`` may never
    import it): its source is in the key, its build and the modules loaded are not."""
    kernel = Path(registry.bitonic.__file__).with_name("_topk_kernel.c")
    assert str(kernel.resolve()) in cache._package_files()
    with_torch = cache.code_fingerprint()
    hidden = {n: sys.modules.pop(n) for n in list(sys.modules) if n.startswith("registry.")}
    try:
        assert cache.code_fingerprint() == with_torch
    finally:
        sys.modules.update(hidden)


def test_an_entry_is_read_back_only_for_its_own_key(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV, str(tmp_path))
    cache.remember("costs", {"a": 1}, {"flops": 5})
    assert cache.lookup("costs", {"a": 1}) == {"flops": 5}
    assert cache.lookup("costs", {"a": 2}) is None
    path = next((tmp_path / "costs").glob("*.json"))
    path.write_text(path.read_text().replace('"a": 1', '"a": 3'))  # the file of another key
    assert cache.lookup("costs", {"a": 1}) is None
    path.write_text("not json")
    assert cache.lookup("costs", {"a": 1}) is None


def test_report_keeps_a_plot_of_the_same_records_and_redraws_after_a_change(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv(cache.ENV, str(tmp_path / "cache"))
    runs, out = tmp_path / "runs", tmp_path / "reports"
    shutil.copytree(GOLDEN_RUNS / "table1", runs / "table1")
    argv = ["report", "table1", "--profile", "smoke", "--runs-dir", str(runs), "--format", "md",
            "--out", str(out)]  # fmt: skip
    png = out / "smoke" / "figures" / "table1.png"
    main(argv)
    assert f"wrote {png}\n" in capsys.readouterr().out
    drawn = png.read_bytes()
    main(argv)
    assert f"kept {png} (inputs unchanged)\n" in capsys.readouterr().out
    assert png.read_bytes() == drawn
    # a plot file changed by someone else is drawn again
    png.with_suffix(".pdf").write_bytes(b"%PDF-1.4 not the plot")
    main(argv)
    assert f"replaced {png.with_suffix('.pdf')}\n" in capsys.readouterr().out
    # different records: one row fewer
    next((runs / "table1" / "smoke").glob("*.json")).unlink()
    main(argv)
    printed = capsys.readouterr().out
    assert f"replaced {png}\n" in printed and f"kept {png}" not in printed
    assert png.read_bytes() != drawn


@pytest.mark.parametrize(
    ("table", "variant"), [("table1", "mnist.topk_s2"), ("table2", "vgg16.at1_topk_s2")]
)
def test_a_model_counted_without_initialising_it_counts_the_same(table, variant):
    spec = TABLES[table]
    protocol, shape = spec.protocol("smoke"), costs.training_shape(spec, "smoke").shape
    task = get_task(spec.task)
    initialised = costs.measure_model(task.build_model(protocol, variant), spec.paper_flops, shape)
    counted = costs._count(task, protocol, variant, spec.paper_flops, shape)
    assert counted == costs.ModelCost(classical=False, columns=initialised)


@pytest.mark.parametrize("how", ["meta", "values"])
def test_a_cells_counts_leave_the_random_state_alone(how, monkeypatch):
    """A cell counts its row's FLOPs after seeding its training: the count, made once per
    process, must not shift what the training draws next."""
    if how == "values":  # a builder that needs real weights: built and drawn as usual
        monkeypatch.setattr(costs, "_uninitialised", _refuse)
    spec = TABLES["table1"]
    protocol, shape = spec.protocol("smoke"), costs.training_shape(spec, "smoke").shape
    costs.measured_columns.cache_clear()
    torch.manual_seed(3)
    before = torch.get_rng_state()
    columns = costs.measured_columns(spec.task, protocol, "mnist.topk_s2", spec.paper_flops, shape)
    assert columns["params"] > 0 and columns["flops"] > 0
    assert torch.equal(torch.get_rng_state(), before)


def _refuse(*_args):
    raise NotImplementedError("no meta kernel")


class _ReadsItsWeights(nn.Module):
    """A model whose builder reads a tensor's value, which the meta device cannot give."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.signed = bool((self.fc.weight < 0).any())

    def forward(self, x):
        return self.fc(x)


class _Builds:
    def build_model(self, protocol, variant):
        return _ReadsItsWeights()


def test_a_builder_that_reads_values_is_counted_as_usual():
    cost = costs._count(_Builds(), None, "reads_weights", "2x_params", (4,))
    assert cost == costs.ModelCost(
        classical=False,
        columns={"params": 10, "flops": 8, "params_M_paper_conv": 10 / 2**20,
                 "flops_paper_conv": 20.0},
    )  # fmt: skip


def test_a_users_matplotlibrc_is_part_of_a_plots_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path))
    monkeypatch.delenv("MATPLOTLIBRC", raising=False)
    monkeypatch.chdir(tmp_path)
    before = plotstyle._user_rc()
    (tmp_path / "matplotlibrc").write_text("lines.linewidth: 3\n")
    assert plotstyle._user_rc() != before
