"""Importing the CLI loads torch and the harness, not the libraries only some commands need
(issue 29: ``list``, ``plan``, ``report`` and ``--help`` start about as fast as torch)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Each takes from a fraction of a second to seconds to import (torchvision also pulls
# in torch._dynamo and sympy); the commands that need them import them when used.
HEAVY = ("torchvision", "torch._dynamo", "sympy", "scipy", "pandas", "matplotlib", "fvcore",
         "skimage", "ray", "jinja2")  # fmt: skip


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
