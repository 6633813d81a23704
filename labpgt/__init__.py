"""labpgt: train neural networks through a physical reservoir by perturbative gradient training.

The package owns the core (tasks, model, reservoirs, estimators, optimizers, trainer, session,
replay, bench, CLI); ``labpgt.instruments`` owns drivers and the simulated bench, and
``labpgt.procedures`` the PyMeasure procedures and GUI.
"""

__version__ = "0.2.0"
