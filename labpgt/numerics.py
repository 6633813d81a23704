"""JAX as labpgt uses it: float64 everywhere and one CPU thread, set before the first computation.

Import ``jax`` and ``jnp`` from here, never directly, so the settings below hold for every digital
stage, twin and optimizer:

* **float64** (``jax_enable_x64``): gradients of the digital parts are compared bit for bit on replay
  and resume, and the perturbative estimators divide loss differences by small δ.
* **one intra-op thread** for XLA's CPU kernels, unless ``XLA_FLAGS`` is already set: the networks are
  small (a multithreaded matmul of a 32×64 batch costs more in hand-off than it saves), and a fixed
  thread count fixes the order of floating-point sums, so the same seed gives the same bits whether
  a run is alone or shares the machine with a benchmark's other workers.

:func:`fingerprint` names what else decides the bits of a result — the CPU, the architecture, the
SIMD extensions numpy dispatches to, the BLAS and the kernel it chose for this CPU (OpenBLAS picks
one per CPU, ``OPENBLAS_CORETYPE`` overrides it) and the numerical libraries' versions. Sessions
record it; a resume on a machine with another fingerprint says that its continuation is not
bit-identical, and replay names the recording machine (see :mod:`labpgt.replay`).
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


def _simd() -> str:
    """The SIMD extensions numpy found on this CPU beyond its build's baseline (e.g. "X86_V3 X86_V4")."""
    import numpy

    try:
        return " ".join(numpy.show_config(mode="dicts")["SIMD Extensions"]["found"])
    except (KeyError, TypeError):
        return "unknown"


def _blas() -> str:
    """The BLAS libraries numpy and scipy (the ridge readout) call, with the kernel each chose for this CPU
    (threadpoolctl's report; scipy is imported first so that the answer does not depend on what ran before)."""
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_info

    found = {
        " ".join(str(info.get(key, "")) for key in ("internal_api", "version", "architecture")).strip()
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    }
    return "; ".join(sorted(found)) or "none"


def fingerprint() -> dict:
    """What, besides the code and the seed, decides the floating-point bits of a run (JSON-able)."""
    import numpy

    return {
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "simd": _simd(),
        "blas": _blas(),
        "numpy": numpy.__version__,
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def fingerprint_differences(recorded, here: dict | None = None) -> list[str]:
    """The entries of ``recorded`` (a session's fingerprint; None: not recorded) that differ from this
    machine's, as ``name: recorded -> here`` (["not recorded"] for a session without one)."""
    here = fingerprint() if here is None else here
    if not isinstance(recorded, dict):
        return ["not recorded"]
    return [f"{key}: {recorded.get(key, '?')} -> {value}" for key, value in here.items() if recorded.get(key) != value]


__all__ = ["fingerprint", "fingerprint_differences", "jax", "jnp"]
