"""Studies: a TOML file (or ``ablate``) runs through the paper tables' plan, executor,
store, report and claims, on real smoke data; bad files are one line and exit 2."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pandas as pd
import pytest

import harness
from harness.cli import main
from harness.core.errors import UserError
from harness.core.task import RunOptions
from harness.run.cell import FAILED, execute_cell
from harness.store.records import jsonable
from harness.tables.cells import table_cells
from harness.tables.paper import TABLES
from harness.tables.study import load_study
from harness.tables.variants import decode
from registry import list_variants, variant_info

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "studies"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def ablated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``ablate mnist`` on smoke: the baseline and one reduction, 2 seeds each (4 cells)."""
    tmp = tmp_path_factory.mktemp("ablate")
    runs, out = tmp / "runs", tmp / "out"
    code = main(["ablate", "mnist", "--method", "fp_max", "--stride", "2", "--seeds", "2",
                 "--profile", "smoke", "--runs-dir", str(runs), "--out", str(out),
                 "--device", "cpu", "--name", "mini"])  # fmt: skip
    assert code == 0
    return {"runs": runs, "out": out, "study": out / "smoke" / "mini.toml", "tmp": tmp}


def test_ablate_writes_its_study_and_a_rerun_finds_every_cell_done(ablated, capsys) -> None:
    text = ablated["study"].read_text()
    assert "[grid]" in text and 'arch = "mnist"' in text and "at =" not in text
    runs = str(ablated["runs"])
    assert main(["run", str(ablated["study"]), "--profile", "smoke", "--runs-dir", runs,
                 "--out", str(ablated["out"]), "--device", "cpu"]) == 0  # fmt: skip
    assert "mini [smoke]: 0 trained, 4 already done" in capsys.readouterr().out
    assert main(["plan", str(ablated["study"]), "--profile", "smoke", "--runs-dir", runs]) in (
        0,
        None,
    )
    assert "4 of 4 cells done" in capsys.readouterr().out


def test_study_report_has_the_paper_tables_statistics_and_the_ablation_plot(ablated) -> None:
    out = ablated["tmp"] / "report"
    assert main(["report", str(ablated["study"]), "--profile", "smoke", "--runs-dir",
                 str(ablated["runs"]), "--out", str(out), "--format", "json"]) in (0, None)  # fmt: skip
    assert main(["report", str(ablated["study"]), "--profile", "smoke", "--runs-dir",
                 str(ablated["runs"]), "--out", str(out)]) in (0, None)  # fmt: skip
    frame = pd.read_csv(out / "smoke" / "mini.csv")
    assert list(frame["variant"]) == ["mnist.baseline", "mnist.fp_max_s2"]
    for col in ("accuracy_ci95_low", "accuracy_ci95_high", "accuracy_delta", "accuracy_p"):
        assert col in frame
    assert frame["n_seeds"].tolist() == [2, 2]
    assert frame["accuracy_delta"].notna().tolist() == [False, True]  # the reference has none
    data = json.loads((out / "smoke" / "mini.json").read_text())
    assert data["meta"]["baseline"] == "mnist.baseline" and data["meta"]["cells_done"] == 4
    markdown = (out / "smoke" / "mini.md").read_text()
    assert "![" in markdown and (out / "smoke" / "figures" / "mini.png").stat().st_size > 10_000
    assert "Pei et al." not in markdown  # a study prints no paper values


def test_a_study_with_claims_shares_the_records_and_gets_verdicts(
    ablated, tmp_path, capsys
) -> None:
    study = ablated["study"].read_text() + (
        '\n[[claims]]\ntext = "FP within 50 points of the baseline"\nkind = "greater"\n'
        'rows = ["mnist.fp_max_s2", "reference"]\ncolumns = ["accuracy"]\nlow = -0.5\n'
    )
    path = _write(tmp_path / "mini.toml", study)
    assert main(["claims", str(path), "--runs-dir", str(ablated["runs"]), "--format", "json"]) in (
        0,
        None,
    )
    (check,) = json.loads(capsys.readouterr().out)
    assert check["table"] == "mini" and check["profile"] == "smoke"
    assert check["verdict"] == "not evidence (demo/smoke)" and check["n"] == 2
    # the command that would decide it names the study's file: its name alone is not found
    assert f"`python -m harness run {path} --profile paper --seeds " in check["to_decide"]


def test_site_and_claims_name_the_files_of_studies_they_leave_out(
    ablated, tmp_path, capsys, monkeypatch
) -> None:
    """A study is built only when its file is named (it may import plugins); with no
    names, ``site`` and ``claims`` say which records are a study's and where its file is."""
    runs = ablated["runs"]
    study = Path("reports/smoke/mini.toml")  # where ablate writes it by default
    monkeypatch.chdir(tmp_path)
    study.parent.mkdir(parents=True)
    shutil.copy(ablated["study"], study)
    assert main(["site", "--runs-dir", str(runs), "--out", str(tmp_path / "site")]) == 2
    note, error = capsys.readouterr().err.splitlines()
    assert note.endswith(f"studies, left out unless their files are named: {study}")
    assert error.startswith(f"error: no records under {runs} for any paper table; name")
    assert not (tmp_path / "site").exists()
    assert main(["claims", "--runs-dir", str(runs)]) in (0, None)
    assert capsys.readouterr().err.strip() == note
    assert main(["site", str(study), "--runs-dir", str(runs), "--out", "site"]) == 0
    assert "mini" in (tmp_path / "site" / "mini.html").read_text()
    capsys.readouterr()
    # asked for by its bare name (as its summary lines print it): pointed to its file
    said = f"mini is a study, not a paper table ({runs} holds its records): name its file, {study}"
    for command in ("report", "plan", "claims", "run", "figures"):
        assert main([command, "mini", "--runs-dir", str(runs)]) == 2
        assert capsys.readouterr().err == f"error: {said}\n", command
    with pytest.raises(UserError, match="mini is a study, not a paper table"):
        harness.results("mini", runs_dir=runs)
    (tmp_path / "elsewhere" / "smoke").mkdir(parents=True)  # records outside the runs folder
    shutil.copy(next(runs.glob("mini/smoke/*.json")), tmp_path / "elsewhere" / "smoke")
    (tmp_path / "runs").mkdir()
    assert main(["report", "../elsewhere", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "unknown table '../elsewhere'" in capsys.readouterr().err  # never looked for there
    (tmp_path / "runs" / "\x1b[2Jx" / "smoke").mkdir(parents=True)  # no study is named so
    shutil.copy(next(runs.glob("mini/smoke/*.json")), tmp_path / "runs" / "\x1b[2Jx" / "smoke")
    assert main(["claims", "--runs-dir", str(tmp_path / "runs")]) in (0, None)
    assert "\x1b" not in capsys.readouterr().err


def test_paper_cells_keep_their_configs() -> None:
    """No ``plugins`` key and the same definition: the golden runs' hashes stay valid
    (tests/test_golden.py checks the hashes themselves)."""
    for spec in TABLES.values():
        for config in table_cells(spec, next(iter(spec.protocols)), 1)[:3]:
            assert "plugins" not in config


def test_every_registered_model_is_rebuilt_from_its_config_entry() -> None:
    """What a worker does with a cell's ``model`` entry gives back the registry's kwargs."""
    for name in list_variants():
        info = variant_info(name)
        assert jsonable(decode(jsonable(info.kwargs))) == jsonable(info.kwargs), name


def test_structured_rows_take_the_registered_names_and_the_grid_expands(tmp_path) -> None:
    path = _write(
        tmp_path / "g.toml",
        """
protocol = "table2:smoke"
rows = ["vgg16.at3_fp_max_s2", { arch = "vgg16", reductions = [{ at = 2, method = "topk", stride = 4 },
        { at = 4, method = "fp_max", stride = 2 }], label = "mixed" }]
[grid]
arch = "vgg16"
at = [3, [3, 4]]
method = ["fp_max", "conv1x1"]
stride = 2
exclude = [{ method = "conv1x1", at = [[3, 4]] }]  # a list: any of its values
""",
    )
    spec = load_study(path)
    assert spec.name == "g" and list(spec.protocols) == ["smoke"]
    assert spec.rows == ("vgg16.baseline", "vgg16.at3_fp_max_s2", "vgg16.at2_topk_s4_at4_fp_max_s2",
                         "vgg16.at3_conv1x1_s2", "vgg16.at34_fp_max_s2")  # fmt: skip
    assert spec.reference == "vgg16.baseline" and spec.row_label(spec.rows[2]) == "mixed"
    assert spec.axes["vgg16.at34_fp_max_s2"] == {
        "arch": "vgg16",
        "at": "3+4",
        "method": "fp_max",
        "stride": 2,
    }
    config = table_cells(spec, "smoke", 1)[2]
    assert config["model"] == {"reductions": {
        "2": {"__type__": "Reduction", "kind": "topk", "stride": 4},
        "4": {"__type__": "Reduction", "kind": "fp_max", "stride": 2}}}  # fmt: skip


def test_protocol_overrides_per_profile(tmp_path) -> None:
    path = _write(
        tmp_path / "p.toml",
        """
rows = ["mnist.baseline"]
[protocol]
base = "table1"
lr = 0.01
[protocol.smoke]
epochs = 2
lr_steps = [[1, 0.001]]
""",
    )
    spec = load_study(path)
    assert spec.protocols["smoke"].epochs == 2 and spec.protocols["demo"].epochs == 3
    assert spec.protocols["smoke"].lr == spec.protocols["paper"].lr == 0.01
    assert spec.protocols["smoke"].lr_steps == ((1, 0.001),)


BAD = {
    "syntax": ("protocol = \"table1\"\nrows = [\"mnist.baseline\"\nseeds = 2\n", r"bad.toml:3:1: "),
    "unknown key": ('protocol = "table1"\n[grid]\narch = "mnist"\nmethod = "topk"\nstrid = 2\n',
                    "unknown key 'strid' in [grid]; did you mean 'stride'?"),
    "position": ('protocol = "table2"\n[grid]\narch = "vgg16"\nat = 7\nmethod = "topk"\nstride = 2\n',
                 "vgg16 has no reduction position 7; choose 1..5"),
    "stride": ('protocol = "table2"\nrows = [{ arch = "vgg16", reductions = [{ at = 1, method = "fp_max", stride = 3 }] }]\n',
               "stride 3 does not divide the 64 maps after block 1"),
    "mnist at": ('protocol = "table1"\n[grid]\narch = "mnist"\nat = 1\nmethod = "topk"\nstride = 2\n',
                 "mnist has one reduction point"),
    "empty grid": ('protocol = "table1"\n[grid]\narch = "mnist"\nmethod = []\nstride = 2\n',
                   "the grid is empty: [grid] method has no values"),
    "all excluded": ('protocol = "table1"\n[grid]\narch = "mnist"\nmethod = "topk"\nstride = 2\n'
                     'exclude = [{ method = "topk" }]\n', "exclude entries remove all 1 points"),
    "huge grid": ('protocol = "table2"\n[grid]\narch = "vgg16"\nat = [1, 2, 3, 4, 5]\n'
                  'method = ["fp_max", "topk"]\nstride = [' + ", ".join(map(str, range(2, 10_003))) + "]\n",
                  "the grid has 100,010 rows (over 100,000); pass --yes"),
    "plugin": ('protocol = "table1"\nplugins = ["broken_plugin_for_tests"]\nrows = ["mnist.baseline"]\n',
               "plugin 'broken_plugin_for_tests' failed to import: ZeroDivisionError: float division by zero"),
    "column": ('protocol = "table1"\nrows = ["mnist.baseline"]\ncolumns = ["acuracy"]\n',
               "unknown column 'acuracy'; did you mean 'accuracy'?"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_bad_study_is_one_line_exit_2_and_writes_nothing(
    case, tmp_path, capsys, monkeypatch
) -> None:
    text, expected = BAD[case]
    (tmp_path / "broken_plugin_for_tests.py").write_text("import math\nmath.pi / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _write(tmp_path / "bad.toml", text)
    runs, out = tmp_path / "runs", tmp_path / "out"
    assert (
        main(["run", str(path), "--profile", "smoke", "--runs-dir", str(runs), "--out", str(out)])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert expected in err[-1] and err[-1].startswith("error: ")
    assert len([line for line in err if line.startswith("error")]) == 1
    assert not runs.exists() and not out.exists()


def test_plugins_are_named_before_they_are_imported(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "said_plugin_for_tests.py").write_text(
        "import sys\nprint('imported', file=sys.stderr)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _write(
        tmp_path / "s.toml",
        'protocol = "table1"\nplugins = ["said_plugin_for_tests"]\nrows = ["mnist.baseline"]\n',
    )
    load_study(path)
    err = capsys.readouterr().err
    announced = "importing plugins (this runs their code): said_plugin_for_tests"
    assert announced in err and err.index(announced) < err.index("imported\n")


def test_duplicate_rows_are_warned_once_and_run_once(tmp_path, capsys) -> None:
    path = _write(
        tmp_path / "d.toml",
        """
protocol = "table1"
rows = ["mnist.topk_s2", { arch = "mnist", reductions = [{ method = "topk", stride = 2 }] }, "mnist.baseline"]
[grid]
arch = "mnist"
method = "topk"
stride = [2, 4]
""",
    )
    spec = load_study(path)
    assert spec.rows == ("mnist.topk_s2", "mnist.baseline", "mnist.topk_s4")
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert (
        len(warnings) == 1
        and "2 row(s) resolve to a model listed before (mnist.topk_s2)" in warnings[0]
    )


def test_example_stride_sweep_runs_on_smoke(tmp_path) -> None:
    """Table 1's network, stride 2/4/8 x 3 methods: a subset of its rows on smoke (the
    file's protocol and claims as they are), and its plot of accuracy against stride."""
    text = (EXAMPLES / "mnist_stride_sweep.toml").read_text()
    text = text.replace('method = ["fp_max", "topk", "conv"]', 'method = ["fp_max"]')
    text = text.replace("stride = [2, 4, 8]", "stride = [4, 8]")
    path = _write(tmp_path / "mnist_stride_sweep.toml", text)
    out = tmp_path / "out"
    assert main(["run", str(path), "--profile", "smoke", "--seeds", "1", "--runs-dir",
                 str(tmp_path / "runs"), "--out", str(out), "--device", "cpu"]) == 0  # fmt: skip
    assert (out / "smoke" / "figures" / "mnist_stride_sweep.png").is_file()
    assert (
        "max feature pooling with stride 4" in (out / "smoke" / "mnist_stride_sweep.md").read_text()
    )


def test_every_example_compiles() -> None:
    for path in sorted(EXAMPLES.glob("*.toml")):
        spec = load_study(path)
        assert spec.name == path.stem and spec.rows and spec.reference in spec.rows


@pytest.mark.slow
def test_example_vgg16_grid_runs_on_smoke(tmp_path) -> None:
    """Two of the grid's rows (the reference and block 5 FP) on smoke, one seed."""
    text = (EXAMPLES / "vgg16_grid.toml").read_text()
    text = (
        text.replace("at = [1, 3, 5]", "at = [5]")
        .replace('method = ["fp_max", "topk", "conv1x1"]', 'method = ["fp_max"]')
        .replace("stride = [2, 4]", "stride = [2]")
    )
    path = _write(tmp_path / "vgg16_grid.toml", text)
    assert main(["run", str(path), "--profile", "smoke", "--seeds", "1", "--runs-dir",
                 str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--data-root",
                 str(tmp_path / "data"), "--device", "cpu"]) == 0  # fmt: skip
    frame = pd.read_csv(tmp_path / "out" / "smoke" / "vgg16_grid.csv")
    assert frame["variant"].tolist() == ["vgg16.baseline", "vgg16.at5_fp_max_s2"]


def test_example_custom_reduction_runs_on_smoke(tmp_path) -> None:
    """channel_avg from examples/plugins/my_reductions.py, named by its path from the study."""
    text = (EXAMPLES / "custom_reduction.toml").read_text().replace("stride = [2, 4]", "stride = 2")
    text = text.replace(
        "../plugins/my_reductions.py", str(ROOT / "examples/plugins/my_reductions.py")
    )
    path = _write(tmp_path / "custom_reduction.toml", text)
    assert main(["run", str(path), "--profile", "smoke", "--seeds", "1", "--runs-dir",
                 str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0  # fmt: skip
    frame = pd.read_csv(tmp_path / "out" / "smoke" / "custom_reduction.csv")
    assert "mnist.channel_avg_s2" in frame["variant"].tolist()
    assert frame["accuracy"].notna().all()


@pytest.mark.slow
def test_ray_runs_a_study_with_the_local_numbers(tmp_path, monkeypatch) -> None:
    """A Ray worker cannot look a study up: its spec travels with the cells, and each
    cell defines its model from its config. Same seed, same numbers as local."""
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a local Ray instance for the run
    path = _write(tmp_path / "r.toml", 'protocol = "table1"\nrows = [{ arch = "mnist", reductions = '
                  '[{ method = "fp_min", stride = 8 }] }]\nreference = "mnist.fp_min_s8"\n')  # fmt: skip
    accuracy = {}
    for executor in ("local", "ray"):
        runs = tmp_path / executor
        assert main(["run", str(path), "--profile", "smoke", "--runs-dir", str(runs), "--out",
                     str(tmp_path / "out"), "--device", "cpu", "--executor", executor]) == 0  # fmt: skip
        (record,) = [json.loads(p.read_text()) for p in (runs / "r" / "smoke").glob("*.json")]
        assert record["executor"] == executor and record["config"]["variant"] == "mnist.fp_min_s8"
        accuracy[executor] = record["metrics"]["accuracy"]
    assert accuracy["local"] == accuracy["ray"]


def test_the_readme_study_compiles(tmp_path) -> None:
    """The study shown in the README's "Your own ablation in one file" is a valid study."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Your own ablation in one file", 1)[1]
    text = section.split("```toml\n", 1)[1].split("```", 1)[0]
    spec = load_study(_write(tmp_path / "my_vgg.toml", text))
    assert spec.name == "my_vgg" and spec.seeds == 3 and len(spec.rows) == 17
    assert spec.claims[0].rows == ("vgg16.at5_topk_s2", "vgg16.baseline")


def test_figures_draws_a_study_plot(ablated, tmp_path) -> None:
    out = tmp_path / "figures"
    assert main(["figures", str(ablated["study"]), "--runs-dir", str(ablated["runs"]),
                 "--out", str(out)]) in (0, None)  # fmt: skip
    assert (out / "mini.png").is_file() and (out / "mini.pdf").is_file()


def test_figures_of_a_study_without_records_says_how_to_run_it(ablated, tmp_path, capsys):
    assert main(["figures", str(ablated["study"]), "--profile", "smoke", "--runs-dir",
                 str(tmp_path / "empty"), "--out", str(tmp_path / "figures")]) == 2  # fmt: skip
    assert f"`python -m harness run {ablated['study']} --profile smoke`" in capsys.readouterr().err


def test_ablate_needs_positions_where_the_network_has_several(tmp_path, capsys) -> None:
    assert (
        main(["ablate", "vgg16", "--method", "topk", "--stride", "2", "--out", str(tmp_path / "o")])
        == 2
    )
    assert "pass --at, positions 1..5" in capsys.readouterr().err
    assert main(["ablate", "mnist", "--at", "1", "--method", "topk", "--stride", "2",
                 "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    assert "leave out --at" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_cell_whose_plugin_does_not_import_fails_alone_naming_module_and_host(tmp_path) -> None:
    """What a Ray worker without the user's module reports: that cell fails, the run goes on."""
    spec = load_study(
        _write(tmp_path / "p.toml", 'protocol = "table1"\nrows = ["mnist.baseline"]\n')
    )
    config = {**table_cells(spec, "smoke", 1)[0], "plugins": ["no_such_plugin_module"]}
    outcome = execute_cell(config, RunOptions(runs_dir=tmp_path / "runs", device="cpu"), spec=spec)
    assert outcome.status == FAILED
    assert "no_such_plugin_module" in outcome.message and socket.gethostname() in outcome.message
