import os

import pytest
import torch
from hypothesis import HealthCheck, settings


@pytest.fixture(autouse=True, scope="session")
def _own_cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """Cached model costs (harness.store.cache) go to a folder of this test session, not
    the user's cache, and start empty (subprocesses inherit the variable)."""
    saved = os.environ.get("HARNESS_CACHE_DIR")
    os.environ["HARNESS_CACHE_DIR"] = str(tmp_path_factory.mktemp("harness-cache"))
    yield
    if saved is None:
        os.environ.pop("HARNESS_CACHE_DIR", None)
    else:
        os.environ["HARNESS_CACHE_DIR"] = saved


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
