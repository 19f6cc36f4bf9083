"""The compiled top-k kernel (registry/_topk_kernel.c); the rest is in pyproject.toml.

Optional: an install without a C compiler still succeeds, and registry/bitonic.py runs
its tensor ops instead, with the same results.
"""

import sys

from setuptools import Extension, setup

# OpenMP on Linux, where torch's wheels load their own libgomp (soname libgomp.so.1), so
# the kernel's threads are torch's; elsewhere the kernel runs on one thread
openmp = ["-fopenmp"] if sys.platform.startswith("linux") else []

setup(
    ext_modules=[
        Extension(
            "registry._topk_kernel",
            ["registry/_topk_kernel.c"],
            optional=True,
            extra_compile_args=["-O3", *openmp],
            extra_link_args=openmp,
        )
    ]
)
