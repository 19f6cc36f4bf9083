"""Options and fixtures of the pytest-benchmark suite (see benchmarks/NOTES.md and README).

With ``--benchmark-disable`` (what CI runs) every benchmark runs once on shrunk
shapes, so the suite is checked in seconds; otherwise at the paper's shapes.
"""

import pytest
import torch

from harness.core.runtime import resolve_device


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bench-device", default="auto", choices=("cpu", "cuda", "auto"),
        help="device to benchmark on (default: cuda if visible, else cpu)",
    )  # fmt: skip


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> torch.device:
    return resolve_device(request.config.getoption("--bench-device"))


@pytest.fixture(scope="session")
def quick(request: pytest.FixtureRequest) -> bool:
    """True when benchmarks only run once (CI): shrink the shapes."""
    return bool(request.config.getoption("benchmark_disable"))
