"""Shared fixtures: the CUDA and INT8 markers and their auto-skips, devices, RNG, real data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import cellrt
from cellrt.kernels import available_backends

# CELLRT_SHARED_DATA points elsewhere (a copy beside a checkout on another machine).
SHARED_DATA = Path(os.environ.get("CELLRT_SHARED_DATA")
                   or Path(__file__).resolve().parents[1].parent / "shared" / "data")

HOST_BACKENDS = [b for b in ("cpu", "numba") if b in available_backends()]


def cuda_usable() -> bool:
    if "cuda" not in available_backends():
        return False
    try:
        import cupy  # noqa: F401
    except ImportError:
        return False
    return True


def pytest_collection_modifyitems(config, items):
    from cellrt.runtime.ort import int8_dot_product

    int8_exact, cpu = int8_dot_product()
    for item in items:
        if "int8" in item.keywords and int8_exact is not True:
            item.add_marker(pytest.mark.skip(reason=f"runs INT8 models, refused on this CPU ({cpu})"))
    if cuda_usable():
        return
    reason = ("needs a CUDA GPU, a CUDA build of cellrt and cupy "
              f"(built with CUDA: {cellrt.has_cuda()}, backends here: {available_backends()})")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


needs_cuda = pytest.mark.cuda


@pytest.fixture
def rng():
    return np.random.default_rng(20261122)


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data not present at {path} (see shared/data/README.md)")
    return path


@pytest.fixture(scope="session")
def dsb_dir() -> Path:
    return shared_data("dsb2018_fluo")


@pytest.fixture(scope="session")
def isl_dir() -> Path:
    return shared_data("isl_phase_fluo")
