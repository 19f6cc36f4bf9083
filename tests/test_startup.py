"""Importing the CLI loads the harness, not the libraries only some commands need, torch
included (issue 29: ``list``, ``plan``, ``report`` and ``--help`` start about as fast as
torch, and the commands that only read metadata and records never import it)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Each takes from a fraction of a second to seconds to import (torchvision also pulls
# in torch._dynamo and sympy); the commands that need them import them when used.
HEAVY = ("torch", "torchvision", "torch._dynamo", "sympy", "scipy", "pandas", "matplotlib",
         "fvcore", "skimage", "ray", "jinja2")  # fmt: skip
GOLDEN_TABLE1 = ROOT / "tests" / "golden" / "runs" / "table1"


def test_importing_the_cli_leaves_heavy_libraries_unloaded():
    probe = (
        "import json, sys; import harness.cli; "
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == []


def test_a_lazy_module_imports_on_first_use():
    probe = (
        "import sys; from harness.core.lazy import lazy; c = lazy('colorsys'); "
        "assert 'colorsys' not in sys.modules; print(c.rgb_to_hsv(1.0, 0.0, 0.0))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "(0.0, 1.0, 1.0)"


def test_plan_and_report_again_on_the_same_inputs_neither_count_nor_draw(tmp_path):
    """The second ``plan`` reads its models' costs from the cost cache (no fvcore, and no
    torch: the first built the models), the second ``report`` keeps its plot (no matplotlib)."""
    runs, out = tmp_path / "runs", tmp_path / "reports"
    shutil.copytree(ROOT / "tests" / "golden" / "runs" / "table1", runs / "table1")
    probe = (
        "import json, sys; from harness.cli import main; "
        f"main(['plan', 'table1', '--profile', 'smoke', '--seeds', '2', '--runs-dir', {str(tmp_path / 'other')!r}]); "
        f"main(['report', 'table1', '--profile', 'smoke', '--runs-dir', {str(runs)!r}, '--format', 'md', '--out', {str(out)!r}]); "
        "print(json.dumps(sorted(m for m in ('fvcore', 'matplotlib', 'torch') if m in sys.modules)))"
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    loaded = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                              text=True, timeout=300, env=env)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        loaded.append(json.loads(done.stdout.splitlines()[-1]))
    assert loaded == [["fvcore", "matplotlib", "torch"], []]


def _harness(args: list[str], env: dict[str, str]) -> tuple[bool, str]:
    """``python -m harness ARGS`` (exit code 0): whether it had imported torch when it
    ended, and its standard output."""
    probe = (
        "import atexit, sys; "
        "atexit.register(lambda: print('torch' in sys.modules, file=sys.stderr)); "
        "import runpy; sys.argv[0] = 'harness'; runpy.run_module('harness', run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", probe, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return {"True": True, "False": False}[done.stderr.splitlines()[-1]], done.stdout


def test_commands_that_read_records_never_import_torch(tmp_path):
    """``--help``, ``list``, ``report`` (its plot drawn, then kept), ``claims``, ``site`` and
    ``figures`` drawn from records alone, with a cold cost cache: every golden row has
    records, so no model is built. ``run`` imports torch where it builds one
    (tests/test_cli.py runs cells); Figs. 1, 2 and 5 run networks."""
    runs, out = tmp_path / "runs", tmp_path / "out"
    shutil.copytree(GOLDEN_TABLE1, runs / "table1")
    env = {"PYTHONPATH": str(ROOT), "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    read = ["--runs-dir", str(runs)]
    report = ["report", "table1", *read, "--format", "md", "--out", str(out / "reports")]
    outcomes = {name: _harness(args, env) for name, args in (
        ("--help", ["--help"]), ("list", ["list"]), ("report, new plot", report),
        ("report, plot kept", report), ("claims", ["claims", "table1", *read]),
        ("site", ["site", "table1", *read, "--out", str(out / "site")]),
        ("figures", ["figures", "table1", "fig4", *read, "--out", str(out / "figures")]),
    )}  # fmt: skip
    assert "wrote" in outcomes["report, new plot"][1] and ".png" in outcomes["report, new plot"][1]
    assert "kept" in outcomes["report, plot kept"][1]
    assert sorted(p.name for p in (out / "figures").glob("*.png")) == ["fig4.png", "table1.png"]
    assert {name: loaded for name, (loaded, _) in outcomes.items()} == dict.fromkeys(
        outcomes, False
    )


def test_the_registry_reads_and_registers_without_torch():
    """Variants, architectures and reduction kinds are listed, looked up and registered
    (as a user's plugin does) with torch unimportable; building a model needs it."""
    probe = "\n".join([
        "import sys; sys.modules['torch'] = None",
        "import registry",
        "assert registry.variant_info('mnist.topk_s2').kwargs['reduction'] == registry.Reduction('topk', 2)",
        "assert 'vgg16' in registry.list_archs() and 'conv1x1' in registry.list_reductions()",
        "registry.register_reduction('probe_sum')(lambda channels, stride: None)",
        "registry.register_variant('mnist.probe_sum_s2', 'mnist', reduction=registry.Reduction('probe_sum', 2))",
        "print(registry.list_variants('mnist.probe_*'))",
        "try:",
        "    registry.create_model('mnist.baseline')",
        "except ImportError as exc:",
        "    print(exc.name)",
    ])  # fmt: skip
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["['mnist.probe_sum_s2']", "torch"]


def test_building_and_running_a_top_k_model_leaves_torch_dynamo_unloaded():
    """Planning counts each row's FLOPs on a model it builds and runs: importing
    torch._dynamo for the top-k kernel's graph break took 1.4 s of a cold ``plan``'s
    1.6 s more than torch (1.63x), so it is made only under torch.compile."""
    probe = (
        "import sys, torch; from registry import create_model; "
        "create_model('mnist.topk_s2')(torch.randn(2, 1, 28, 28)); "
        "print('torch._dynamo' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False"]
