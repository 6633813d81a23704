"""labpgt: train neural networks through a physical reservoir by perturbative gradient training.

The package owns the core (tasks, model, reservoirs, estimators, optimizers, trainer, session,
replay, bench, CLI); ``labpgt.instruments`` owns drivers and the simulated bench, and
``labpgt.procedures`` the PyMeasure procedures and GUI.

From Python (a notebook), :mod:`labpgt.api` gives :func:`open_session`, :func:`inspect`,
:func:`replay`, :func:`train` and :func:`sweep` as ``labpgt.<name>``; they are imported on first
use, so ``import labpgt`` stays cheap (no JAX, no pandas).
"""

from __future__ import annotations

import sys
import types

TYPE_CHECKING = False  # typing's flag without importing typing: labpgt.__main__ answers Ctrl+C only after this
__version__ = "0.2.0"
API = ("Session", "open_session", "inspect", "replay", "train", "sweep")
__all__ = ["__version__", *API]
#: the signals that ask a run to stop, by name (those this platform has: labpgt.signals.STOP_SIGNALS); here, where
#: labpgt.__main__ reads them before anything slow is imported
STOP_SIGNAL_NAMES = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGPWR", "SIGXCPU")

if TYPE_CHECKING:
    from typing import Any

    from labpgt.api import Session, inspect, open_session, replay, sweep, train  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in API:
        from labpgt import api

        return getattr(api, name)
    raise AttributeError(f"module 'labpgt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(API))


class _Package(types.ModuleType):
    """``labpgt.replay`` is the API's function, though a submodule has the same name: importing a submodule
    binds it on its package, which would hide the function once anything imported :mod:`labpgt.replay`.
    The submodule stays in ``sys.modules`` (``from labpgt.replay import …`` is unchanged)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
