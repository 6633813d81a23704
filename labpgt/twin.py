r"""Twins of a reservoir: a differentiable model of u → features, learned from measured pairs.

Physics-aware training (Wright et al., *Nature* 601, 549, 2022) runs the forward pass on the hardware
and the backward pass through a differentiable model of it. This module owns that model and what is
built on it:

* :class:`TwinModel` — an MLP in JAX (float64): u ∈ [0,1]^d, centred to [−1, 1], through ``hidden``
  tanh layers to the features, predicted standardised (per-feature mean, one common scale — the RMS of
  the per-feature standard deviations, as the network standardises its features — frozen at the first
  fit, so warm-started refits keep one target); fitted by optax's Adam on the mean squared error, on
  minibatches drawn by its own seeded generator. Its VJP is the physical layer's backward pass of the
  ``twin`` training method (:mod:`labpgt.methods`).
* :func:`standardised_error` — the one error measure used everywhere: the RMS of (prediction −
  measurement) over rows and features, divided by the common scale, so 0 is perfect and 1 is no better
  than predicting each feature's mean. Features that barely move (a noise-floor bin) weigh as little
  as they vary; measurement noise sets its floor.
* :class:`Anchors` — the last measured (u, features) of every row of every training sample (a sample's
  rows: one per physical layer and token), and the twin's prediction *anchored* to them: at a new u the
  features measured at the anchor plus the twin's change from there, F(u_a) + T(u) − T(u_a), so that a
  step taken on the twin sees the features the reservoir gave, noise included, and only the change is
  modelled; a row never measured gets the twin's prediction. How far a sample's inputs have moved from
  its anchors (:meth:`Anchors.staleness`) says what the twin most needs measured again.
* :class:`Layout` — what must match for measured pairs to be pooled: input width, feature count,
  and what an input means (the bench's encoding and feature map, a sweep's setting and range, or a
  digital reservoir's map).
* the **twin file** (HDF5, schema ``labpgt-twin/1``): a fitted twin, its layout, the sessions it was
  fitted on, its held-out error per feature and the residual noise; :func:`fit_twin` makes one from
  sessions (``labpgt twin fit``) and :class:`TwinReservoir` measures with it (``--reservoir
  twin:FILE``): the prediction plus Gaussian noise of the held-out residual's size per feature, seeded —
  a lab rehearses on a model of its own ring, learned from its own logs.

A twin file is data: attributes and numeric datasets only; every problem reading one is one
:class:`~labpgt.errors.UserError` line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optax

from labpgt.errors import UserError
from labpgt.numerics import jax, jnp
from labpgt.reservoir import Measurement
from labpgt.session.twinfile import TwinRecord, read_twin_file, write_twin_file


# --------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class TwinSpec:
    """A twin's shape and how it learns: ``hidden`` widths of the tanh layers, Adam's ``learning_rate``,
    ``batch`` rows per minibatch."""

    input_width: int
    feature_width: int
    hidden: tuple = (64, 64)
    learning_rate: float = 3e-3
    batch: int = 256

    def to_dict(self) -> dict:
        return {
            "input_width": self.input_width,
            "feature_width": self.feature_width,
            "hidden": list(self.hidden),
            "learning_rate": self.learning_rate,
            "batch": self.batch,
        }

    @classmethod
    def from_dict(cls, values: dict) -> TwinSpec:
        return cls(
            int(values["input_width"]),
            int(values["feature_width"]),
            tuple(int(h) for h in values["hidden"]),
            float(values["learning_rate"]),
            int(values["batch"]),
        )


def _mlp(params: dict, U, layers: int):
    h = 2.0 * U - 1.0
    for i in range(layers):
        h = jnp.tanh(h @ params[f"W{i}"] + params[f"b{i}"])
    return h @ params["W_out"] + params["b_out"]


def standardised_error(predicted: np.ndarray, measured: np.ndarray, scale, axis=None):
    """RMS of (predicted − measured)/scale: 0 perfect, 1 no better than each feature's mean (``scale``
    the common scale, the RMS of the per-feature standard deviations)."""
    return np.sqrt(np.mean(((np.asarray(predicted) - np.asarray(measured)) / scale) ** 2, axis=axis))


class TwinModel:
    """A differentiable u → features model; ``fit`` continues from where the last fit stopped."""

    def __init__(self, spec: TwinSpec, seed: int = 0):
        self.spec = spec
        rng = np.random.default_rng([int(seed), 13])
        sizes = (spec.input_width, *spec.hidden)
        params = {}
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            params[f"W{i}"] = rng.standard_normal((a, b)) / np.sqrt(a)
            params[f"b{i}"] = np.zeros(b)
        params["W_out"] = rng.standard_normal((sizes[-1], spec.feature_width)) / np.sqrt(sizes[-1])
        params["b_out"] = np.zeros(spec.feature_width)
        self.params = params
        self.mean = np.zeros(spec.feature_width)
        self.scale = np.ones(spec.feature_width)
        self.standardised = False  # mean and scale are frozen by the first fit
        self.optimizer = optax.adam(spec.learning_rate)
        self.opt_state = self.optimizer.init(params)
        self.rng = np.random.default_rng([int(seed), 17])
        layers = len(spec.hidden)
        self._predict = jax.jit(lambda p, mean, scale, U: _mlp(p, U, layers) * scale + mean)
        self._vjp = jax.jit(
            lambda p, mean, scale, U, g: jax.vjp(lambda u: _mlp(p, u, layers) * scale + mean, U)[1](g)[0]
        )
        self._fit = jax.jit(self._fit_batches)

    def _fit_batches(self, params, opt_state, U, F):
        """Adam over the minibatches U (k, batch, d), F (k, batch, m) (standardised targets)."""
        layers = len(self.spec.hidden)

        def loss(p, u, f):
            return jnp.mean((_mlp(p, u, layers) - f) ** 2)

        def one(carry, batch):
            p, state = carry
            value, grads = jax.value_and_grad(loss)(p, *batch)
            updates, state = self.optimizer.update(grads, state, p)
            return (optax.apply_updates(p, updates), state), value

        (params, opt_state), losses = jax.lax.scan(one, (params, opt_state), (U, F))
        return params, opt_state, losses[-1]

    # ---- use
    def predict(self, U: np.ndarray) -> np.ndarray:
        return np.asarray(self._predict(self.params, self.mean, self.scale, np.asarray(U, dtype=np.float64)))

    def vjp(self, U: np.ndarray, grad_features: np.ndarray) -> np.ndarray:
        """dL/dU (N, d) of the twin at U for dL/dF = ``grad_features`` (N, m)."""
        return np.asarray(
            self._vjp(
                self.params,
                self.mean,
                self.scale,
                np.asarray(U, dtype=np.float64),
                np.asarray(grad_features, dtype=np.float64),
            )
        )

    def error(self, U: np.ndarray, F: np.ndarray, axis=None):
        """:func:`standardised_error` of the twin on measured pairs it may or may not have seen."""
        return standardised_error(self.predict(U), F, self.scale, axis=axis)

    # ---- learning
    def fit(self, U: np.ndarray, F: np.ndarray, iterations: int, recent: int = 0) -> float:
        """``iterations`` Adam steps on minibatches drawn from the pairs (U, F) — with ``recent`` > 0, half
        of each from the last ``recent`` rows — and returns the last batch's loss."""
        U, F = np.asarray(U, dtype=np.float64), np.asarray(F, dtype=np.float64)
        if not self.standardised:
            from labpgt.network import standardisation

            self.mean, self.scale = standardisation(F)
            self.standardised = True
        rows = self.rng.integers(0, len(U), size=(int(iterations), self.spec.batch))
        if recent:
            newest = self.rng.integers(max(0, len(U) - recent), len(U), size=(int(iterations), self.spec.batch // 2))
            rows[:, : self.spec.batch // 2] = newest
        params, self.opt_state, loss = self._fit(
            self.params, self.opt_state, U[rows], (F[rows] - self.mean) / self.scale
        )
        self.params = {k: np.asarray(v) for k, v in params.items()}
        return float(loss)

    # ---- state, for checkpoints and files
    def state_arrays(self, prefix: str = "") -> dict:
        from labpgt.optimizers import state_arrays

        arrays = {f"{prefix}{k}": np.array(v) for k, v in self.params.items()}
        arrays[f"{prefix}mean"], arrays[f"{prefix}scale"] = self.mean.copy(), self.scale.copy()
        arrays.update({f"{prefix}adam.{k}": v for k, v in state_arrays(self.opt_state).items()})
        return arrays

    def load_state_arrays(self, arrays: dict, prefix: str = "") -> None:
        from labpgt.optimizers import load_state_arrays

        self.params = {k: np.array(arrays[f"{prefix}{k}"], dtype=np.float64) for k in self.params}
        self.mean = np.array(arrays[f"{prefix}mean"], dtype=np.float64)
        self.scale = np.array(arrays[f"{prefix}scale"], dtype=np.float64)
        adam = {k[len(prefix) + 5 :]: v for k, v in arrays.items() if k.startswith(f"{prefix}adam.")}
        self.opt_state = load_state_arrays(self.opt_state, adam)

    def get_state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "standardised": self.standardised}

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.standardised = bool(state["standardised"])


# --------------------------------------------------------------------------- anchored to measurements
ANCHORING_ROLES = ("calibration", "baseline")  # the queries at a sample's own inputs (probes are beside them)


class Anchors:
    """The last measured inputs and features of each row of each of ``n_samples`` training samples, by physical
    layer and token (see the module docstring); filled from the run's queries (:meth:`observe`), so that a
    resumed run shown its recorded queries again holds exactly what it held."""

    def __init__(self, n_samples: int):
        self.n_samples = int(n_samples)
        self.inputs: dict[int, np.ndarray] = {}  # layer -> (n_samples, tokens, d), NaN where never measured
        self.features: dict[int, np.ndarray] = {}  # layer -> (n_samples, tokens, m)
        self._journal: list[tuple] = []  # (row numbers, sample, layer, token, U, features) observed

    def observe(self, labels, U: np.ndarray, features: np.ndarray, row_numbers: np.ndarray) -> None:
        """Take the rows of a measurement at the samples' own inputs (calibration, baseline) as their anchors;
        ``row_numbers`` numbers the measurement's rows in the run's order (what :meth:`forget_after` cuts)."""
        own = np.isin(labels.role, ANCHORING_ROLES) & (labels.sample >= 0) & (labels.sample < self.n_samples)
        if own.any():
            entry = (
                np.asarray(row_numbers)[own],
                labels.sample[own],
                labels.layer[own],
                labels.token[own],
                np.asarray(U)[own],
                np.asarray(features)[own],
            )
            self._journal.append(entry)
            self._apply(*entry[1:])

    def forget_after(self, rows: int) -> None:
        """Forget every anchor taken from a row numbered ``rows`` or later (a step measured again after a pause)."""
        kept = [tuple(a[entry[0] < rows] for a in entry) for entry in self._journal]
        self.inputs, self.features, self._journal = {}, {}, []
        for entry in kept:
            if len(entry[0]):
                self._journal.append(entry)
                self._apply(*entry[1:])

    def _apply(self, sample, layers, token, U, features) -> None:
        for layer in np.unique(layers):
            rows = layers == layer
            column = np.maximum(token[rows], 0)
            inputs, anchored = self._layer(int(layer), int(column.max()) + 1, U.shape[1], features.shape[1])
            inputs[sample[rows], column] = U[rows]
            anchored[sample[rows], column] = features[rows]

    def _layer(self, layer: int, tokens: int, d: int, m: int) -> tuple[np.ndarray, np.ndarray]:
        if layer not in self.inputs or self.inputs[layer].shape[1] < tokens:
            grown = np.full((self.n_samples, tokens, d), np.nan)
            grown_f = np.zeros((self.n_samples, tokens, m))
            if layer in self.inputs:
                old = self.inputs[layer].shape[1]
                grown[:, :old], grown_f[:, :old] = self.inputs[layer], self.features[layer]
            self.inputs[layer], self.features[layer] = grown, grown_f
        return self.inputs[layer], self.features[layer]

    def _anchor(self, layer: int, samples: np.ndarray, tokens: np.ndarray):
        """``(inputs, features)`` of the anchors of the rows (NaN inputs where a row has none)."""
        if layer not in self.inputs:
            return np.full((len(samples), 0), np.nan), None
        inputs, features = self.inputs[layer], self.features[layer]
        column = np.maximum(tokens, 0)
        inside = column < inputs.shape[1]
        anchor_u = np.full((len(samples), inputs.shape[2]), np.nan)
        anchor_f = np.zeros((len(samples), features.shape[2]))
        anchor_u[inside], anchor_f[inside] = (
            inputs[samples[inside], column[inside]],
            features[samples[inside], column[inside]],
        )
        return anchor_u, anchor_f

    def predict(self, model, layer: int, samples: np.ndarray, tokens: np.ndarray, U: np.ndarray) -> np.ndarray:
        """The features of the rows (training ``samples``, ``tokens``) at inputs ``U``: anchored where a row has
        an anchor, the twin's prediction where it has none."""
        predicted = np.array(model.predict(U))
        anchor_u, anchor_f = self._anchor(layer, samples, tokens)
        have = ~np.isnan(anchor_u).any(axis=1) if anchor_u.shape[1] else np.zeros(len(U), dtype=bool)
        if have.any():
            predicted[have] += anchor_f[have] - model.predict(anchor_u[have])
        return predicted

    def staleness(self, layer: int, samples: np.ndarray, tokens: np.ndarray, U: np.ndarray) -> np.ndarray:
        """The squared distance of each row's inputs ``U`` from its anchor's (inf where it has none)."""
        anchor_u, _ = self._anchor(layer, samples, tokens)
        if not anchor_u.shape[1]:
            return np.full(len(U), np.inf)
        distance = np.sum((U - anchor_u) ** 2, axis=1)
        return np.where(np.isnan(distance), np.inf, distance)


# --------------------------------------------------------------------------- what an input means
def layout_of_config(config: dict) -> dict:
    """The layout of a session's measurements, from its root config: ``{"input_width", "feature_width",
    "inputs", "features"}`` — pairs can be pooled only when the layouts are equal."""
    reservoir = config.get("reservoir") or {}
    widths = {
        "input_width": int(reservoir.get("input_width", 0)),
        "feature_width": int(reservoir.get("feature_width", 0)),
    }
    if isinstance(config.get("layout"), dict):  # a run against a twin: the twin's layout
        return {**config["layout"], **widths}
    bench = config.get("bench") or {}
    features = bench.get("features")
    sweep = config.get("sweep")
    if isinstance(sweep, dict):
        return {
            **widths,
            "inputs": [[sweep.get("instrument"), sweep.get("setting"), sweep.get("start"), sweep.get("stop")]],
            "features": features,
        }
    if bench:
        return {
            **widths,
            "inputs": [
                [e.get("instrument"), e.get("setting"), e.get("min"), e.get("max")] for e in bench.get("encoding", [])
            ],
            "features": features,
        }
    train = config.get("train") or {}
    return {
        **widths,
        "inputs": ["digital reservoir", int(train.get("seed", 0))],
        "features": ["digital reservoir", int(train.get("seed", 0))],
    }


def layout_mismatch(mine: dict, theirs: dict) -> str | None:
    """What differs between two layouts, in words (None when they match)."""
    for key, what in (
        ("input_width", "input width"),
        ("feature_width", "feature count"),
        ("inputs", "meaning of the inputs (encoding)"),
        ("features", "feature map"),
    ):
        if json.dumps(mine.get(key), sort_keys=True) != json.dumps(theirs.get(key), sort_keys=True):
            return f"different {what}: {_short(theirs.get(key))} instead of {_short(mine.get(key))}"
    return None


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- pairs from sessions
@dataclass
class Pairs:
    """Measured (u, features) pairs, with where they came from."""

    U: np.ndarray
    F: np.ndarray
    sources: list
    layout: dict


def session_pairs(paths, layout: dict | None = None, roles=None) -> Pairs:
    """Every query row (or those of ``roles``) of the sessions at ``paths``, which must share one layout
    (``layout``, or the first session's); another layout is one UserError line naming the file."""
    from labpgt.session import SessionReader

    U, F, sources = [], [], []
    for path in paths:
        with SessionReader(path) as reader:
            theirs = layout_of_config(reader.config)
            if layout is None:
                layout = theirs
            problem = layout_mismatch(layout, theirs)
            if problem:
                raise UserError(f"{Path(path).name} comes from another bench layout ({problem})")
            q = reader.queries(fields=("role", "u", "features"))
            keep = (
                np.ones(len(q["role"]), dtype=bool)
                if roles is None
                else np.isin(np.array(reader.role_names)[q["role"]], roles)
            )
            U.append(q["u"][keep])
            F.append(q["features"][keep])
            sources.append({"path": str(path), "sha256": _sha256(path), "rows": int(keep.sum()), "kind": reader.kind})
    if not U or sum(len(u) for u in U) == 0:
        raise UserError("the sessions hold no measurements to learn from")
    assert layout is not None, "the first session gives the layout"
    return Pairs(np.concatenate(U), np.concatenate(F), sources, layout)


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- fitting a twin file
@dataclass
class TwinFit:
    """What :func:`fit_twin` measured: held-out error per feature, overall, and the sizes involved."""

    path: str
    rows_fitted: int
    rows_held_out: int
    iterations: int
    heldout_error: float
    heldout_error_per_feature: np.ndarray
    train_error: float
    residual_std: np.ndarray
    predicted: np.ndarray = field(repr=False)
    measured: np.ndarray = field(repr=False)


def fit_twin(
    paths, out, hidden=(64, 64), iterations: int = 20_000, held_out: float = 0.2, seed: int = 0, check_every: int = 500
) -> TwinFit:
    """Fit a twin on every query of the sessions at ``paths`` (one layout), hold out ``held_out`` of the
    rows (seeded) to measure it, stop early when the held-out error stops falling, and write ``out``."""
    pairs = session_pairs(paths)
    n = len(pairs.U)
    if n < 10:
        raise UserError(f"{n} measured pairs are too few to fit a twin (at least 10)")
    order = np.random.default_rng([seed, 23]).permutation(n)
    n_held = max(1, int(round(held_out * n)))
    held, fitted = order[:n_held], order[n_held:]
    spec = TwinSpec(pairs.U.shape[1], pairs.F.shape[1], tuple(hidden), batch=min(256, len(fitted)))
    model = TwinModel(spec, seed)
    best, best_state, done = np.inf, None, 0
    while done < iterations:
        model.fit(pairs.U[fitted], pairs.F[fitted], check_every)
        done += check_every
        error = model.error(pairs.U[held], pairs.F[held])
        if error < best:
            best, best_state = error, model.state_arrays()
        elif done >= 4 * check_every and error > 1.05 * best:
            break  # the held-out error has turned: stop before overfitting
    assert best_state is not None, "the first check of a finite held-out error keeps its state"
    model.load_state_arrays(best_state)
    predicted = model.predict(pairs.U[held])
    per_feature = standardised_error(predicted, pairs.F[held], model.scale, axis=0)
    residual = (predicted - pairs.F[held]).std(axis=0)
    result = TwinFit(
        str(out),
        len(fitted),
        n_held,
        done,
        float(best),
        per_feature,
        float(model.error(pairs.U[fitted], pairs.F[fitted])),
        residual,
        predicted,
        pairs.F[held],
    )
    write_twin(out, model, pairs.layout, pairs.sources, result)
    return result


def write_twin(path, model: TwinModel, layout: dict, sources: list, fit: TwinFit) -> None:
    """The twin file of ``model`` (its layout through :mod:`labpgt.session.twinfile`)."""
    summary = {
        "rows_fitted": fit.rows_fitted,
        "rows_held_out": fit.rows_held_out,
        "iterations": fit.iterations,
        "heldout_error": fit.heldout_error,
        "train_error": fit.train_error,
    }
    write_twin_file(
        path,
        TwinRecord(
            spec=model.spec.to_dict(),
            layout=layout,
            sources=sources,
            fit=summary,
            params=model.params,
            arrays={
                "mean": model.mean,
                "scale": model.scale,
                "heldout_error_per_feature": fit.heldout_error_per_feature,
                "residual_std": fit.residual_std,
            },
        ),
    )


@dataclass
class TwinFile:
    """A twin file read back: the model, its layout, and what its fit measured."""

    path: Path
    model: TwinModel
    layout: dict
    sources: list
    fit: dict
    residual_std: np.ndarray
    heldout_error_per_feature: np.ndarray
    sha256: str


def read_twin(path) -> TwinFile:
    """Open a twin file read-only; anything that is not a whole twin file is one UserError line."""
    path = Path(path)

    def param_names(spec: dict):
        try:
            return list(TwinModel(TwinSpec.from_dict(spec)).params)
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{path.name}: damaged twin spec ({exc})") from None

    record = read_twin_file(path, param_names)
    spec = TwinSpec.from_dict(record.spec)
    model = TwinModel(spec)
    for name, value in record.params.items():
        if value.shape != model.params[name].shape or not np.all(np.isfinite(value)):
            raise UserError(f"{path.name}: damaged twin parameter {name}")
    model.params = record.params
    model.mean, model.scale = record.arrays["mean"], record.arrays["scale"]
    model.standardised = True
    for name in ("mean", "scale", "residual_std"):
        value = record.arrays[name]
        if value.shape != (spec.feature_width,) or not np.all(np.isfinite(value)):
            raise UserError(f"{path.name}: damaged {name}")
    return TwinFile(
        path,
        model,
        record.layout,
        record.sources,
        record.fit,
        record.arrays["residual_std"],
        record.arrays["heldout_error_per_feature"],
        _sha256(path),
    )


# --------------------------------------------------------------------------- a twin as a reservoir
class TwinReservoir:
    """A twin as a reservoir: the model's features plus seeded Gaussian noise of the held-out residual's
    size per feature (``noise=False``: the model alone). Differentiable: backprop can run against it."""

    differentiable = True

    def __init__(self, path, seed: int = 0, noise: bool = True):
        self.file = read_twin(path)
        model = self.file.model
        self.input_width, self.feature_width = model.spec.input_width, model.spec.feature_width
        self.setting_names: tuple[str, ...] = ()
        self.layout = {**self.file.layout, "twin_sha256": self.file.sha256}
        self.noise = bool(noise)
        self._rng = np.random.default_rng([int(seed), 19])

    def measure(self, U: np.ndarray) -> Measurement:
        import time

        U = np.asarray(U, dtype=np.float64)
        if U.ndim != 2 or U.shape[1] != self.input_width:
            raise ValueError(f"U must have shape (B, {self.input_width}), got {U.shape}")
        features = self.file.model.predict(U)
        if self.noise:
            features = features + self.file.residual_std * self._rng.standard_normal(features.shape)
        return Measurement(
            features=features, started=np.full(len(U), time.time()), attempts=np.ones(len(U), dtype=np.int64)
        )

    def vjp(self, U: np.ndarray, grad_features: np.ndarray) -> np.ndarray:
        return self.file.model.vjp(U, grad_features)

    def identities(self) -> dict[str, str]:
        return {
            "twin": f"labpgt twin {self.file.path.name} sha256 {self.file.sha256[:16]} "
            f"of {len(self.file.sources)} session(s)"
        }

    def get_rng_state(self) -> dict:
        return {"twin_noise": self._rng.bit_generator.state}

    def set_rng_state(self, state: dict) -> None:
        if "twin_noise" in state:
            self._rng.bit_generator.state = state["twin_noise"]

    def close(self) -> None:
        pass
