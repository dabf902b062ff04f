"""Shared test setup: CPU by default, float32 everywhere, x64 off (as users run)."""

import jax
import pytest


@pytest.fixture(params=[False, True], ids=["nojit", "jit"])
def maybe_jit(request):
    """Run a function eagerly and under jax.jit: every behaviour must hold both ways."""
    return jax.jit if request.param else (lambda f, **kw: f)


# A script run as separate processes by test_sharding.py, not a test module.
collect_ignore = ["distributed/worker.py"]
