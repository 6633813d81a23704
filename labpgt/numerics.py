"""JAX as labpgt uses it: float64 everywhere and one CPU thread, set before the first computation.

Import ``jax`` and ``jnp`` from here, never directly, so the settings below hold for every digital
stage, twin and optimizer:

* **float64** (``jax_enable_x64``): gradients of the digital parts are compared bit for bit on replay
  and resume, and the perturbative estimators divide loss differences by small δ.
* **one intra-op thread** for XLA's CPU kernels, unless ``XLA_FLAGS`` is already set: the networks are
  small (a multithreaded matmul of a 32×64 batch costs more in hand-off than it saves), and a fixed
  thread count fixes the order of floating-point sums, so the same seed gives the same bits whether
  a run is alone or shares the machine with a benchmark's other workers.

:func:`fingerprint` names what else decides the bits of a result — the CPU, the architecture and
the numerical libraries' versions. Sessions record it; replay demands bit-identical results where
it matches and accepts a documented tolerance where it does not (see :mod:`labpgt.replay`).
"""

from __future__ import annotations

import os
import platform

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

jax.config.update("jax_enable_x64", True)



def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith(("model name", "Processor", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fingerprint() -> dict:
    """What, besides the code and the seed, decides the floating-point bits of a run (JSON-able)."""
    import numpy

    return {"machine": platform.machine(), "cpu": _cpu_model(), "numpy": numpy.__version__,
            "jax": jax.__version__, "jaxlib": jax.lib.__version__, "xla_flags": os.environ.get("XLA_FLAGS", "")}


__all__ = ["fingerprint", "jax", "jnp"]
