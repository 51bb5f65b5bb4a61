"""pytest settings for the test folder."""

import os

import pytest

# The CUDA kernels run in Numba's simulator unless KERNELS_TEST_GPU=1 (tier 3, on a real
# GPU). NOTE: Numba reads this when it is first imported, so it is set here, first.
if os.environ.get("KERNELS_TEST_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

from backends import cuda_available  # noqa: E402 - after the environment is set

# A module that fails on import on purpose (the --torch error tests import it through the
# CLI); --doctest-modules would otherwise import it while collecting.
collect_ignore = ["torch_factory_broken.py"]

BACKENDS = ["cpu"] + (["cuda"] if cuda_available() else [])


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each kernel test that takes this runs on every backend there is."""
    return request.param
