import os

import pytest
import torch
from hypothesis import HealthCheck, settings


@pytest.fixture(autouse=True)
def _fixed_threads():
    """Keep CPU tests reproducible and from oversubscribing small CI machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    yield
    torch.set_num_threads(threads)


# Hypothesis (the fuzz tests, tests/test_fuzz*.py): a fixed, modest example set in CI
# (derandomized, so every run tries the same inputs); HYPOTHESIS_PROFILE=long for a
# longer, random search on demand.
settings.register_profile(
    "ci", derandomize=True, max_examples=30, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip
settings.register_profile(
    "long", max_examples=2000, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
