"""One training step (forward, backward, Adam) of each Table 1 row at the paper's batch."""

import pytest

from harness.tables.paper import TABLE1
from harness.tools.bench import train_step


@pytest.mark.parametrize("variant", TABLE1.rows)
def test_train_step(benchmark, device, quick, variant):
    load = train_step(variant, 10 if quick else TABLE1.protocol("paper").batch_size, device)
    benchmark.group = "table1 train step"
    benchmark.extra_info.update(load.info)
    benchmark(load.fn)
