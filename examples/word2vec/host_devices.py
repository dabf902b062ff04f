"""Virtual CPU devices for ``--devices N``, requested before JAX starts (standard library only).

XLA creates the CPU backend's devices once, when JAX first touches a backend. Their number comes from
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (read by XLA when JAX is imported) or from JAX's public
option ``jax.config.update("jax_num_cpu_devices", N)``, which works after ``import jax`` and is refused once the
backends have started. Each virtual device runs in its own thread, so N cores can work in parallel.

``python -m examples.word2vec.train`` calls :func:`configure_host_devices` first thing, before it imports JAX;
``main`` asks again, which works when its caller imported JAX but did not start it (and does nothing after: the
trainer then finds fewer devices than ``--devices`` and says so).

>>> devices_flag(["--corpus", "c.txt", "--devices=4"]), devices_flag(["--devices", "x"]), devices_flag([])
(4, None, None)
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence

__all__ = ["configure_host_devices", "devices_flag", "request_cpu_devices"]

_COUNT_FLAG = "--xla_force_host_platform_device_count"


def devices_flag(argv: Sequence[str]) -> int | None:
    """``--devices N`` from a raw command line (before argparse), or None."""
    for i, a in enumerate(argv):
        value = a.split("=", 1)[1] if a.startswith("--devices=") else (
            argv[i + 1] if a == "--devices" and i + 1 < len(argv) else None)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def request_cpu_devices(n: int) -> None:
    """Ask for at least ``n`` virtual CPU devices (never fewer than ``XLA_FLAGS`` already asks for)."""
    flags = os.environ.get("XLA_FLAGS", "")
    m = re.search(rf"{_COUNT_FLAG}=(\d+)", flags)
    current = int(m.group(1)) if m else 1
    if n > current:
        flags = re.sub(rf"\s*{_COUNT_FLAG}=\d+", "", flags)
        os.environ["XLA_FLAGS"] = f"{flags} {_COUNT_FLAG}={n}".strip()
    jax = sys.modules.get("jax")
    if jax is None:  # XLA reads XLA_FLAGS when jax is imported
        return
    wanted = max(n, current)
    try:
        if jax.config.jax_num_cpu_devices < wanted:
            jax.config.update("jax_num_cpu_devices", wanted)
    except (AttributeError, RuntimeError):  # a jax without the option, or its backends started: too late
        pass


def configure_host_devices(argv: Sequence[str] | None = None) -> None:
    """Create the virtual CPU devices a later ``main(argv)`` will use (``--devices N``, default
    ``sys.argv``). Call it before JAX starts."""
    argv = sys.argv[1:] if argv is None else argv
    n = devices_flag(argv)
    if n is not None and n > 1:
        request_cpu_devices(n)
