"""Each reduction op at each of the paper's reduction points, forward and forward+backward."""

import pytest

from harness.tools.bench import CASES, OPS, PASSES, cases, workload

CASE_IDS = [case.name for case in CASES]


@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("index", range(len(CASES)), ids=CASE_IDS)
def test_op(benchmark, device, quick, index, op, pass_):
    case = cases(quick)[index]
    load = workload(op, case, pass_, device)
    benchmark.group = f"{case.name} {pass_}"
    benchmark.extra_info.update(load.info)
    benchmark(load.fn)


@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("index", range(len(CASES)), ids=CASE_IDS)
def test_topk_reference(benchmark, device, quick, index, pass_):
    """The plain stable-sort top-k, beside the automatic choice timed in test_op."""
    case = cases(quick)[index]
    load = workload("topk", case, pass_, device, topk_impl="reference")
    benchmark.group = f"{case.name} {pass_}"
    benchmark.extra_info.update(load.info)
    benchmark(load.fn)
