"""Connecting a bench config's instruments: over VISA, or on an embedded simulated bench.

Each instrument is opened with its kind's driver class (:mod:`labpgt.bench.kinds`). A VISA resource
is opened through pyvisa-py with newline terminations and the bench's timeout, and must answer
``*IDN?`` before it counts as connected; a refused or dropped first contact is retried within the
bench's retry budget, and an instrument that stays silent is one line of
:class:`InstrumentUnreachable`. An instrument whose ``*IDN?`` names a model its driver kind is not
written for (another instrument at that address) is one line of :class:`WrongInstrument`, before
anything else is sent to any instrument. A resource ``sim::NAME`` is served in-process by an embedded
:class:`~labpgt.instruments.simulated.SimulatedBench`, through the same SCPI handlers that
``labpgt sim`` serves over TCP.
"""

from __future__ import annotations

import socket
import time
import weakref
from dataclasses import replace

import pyvisa
from pyvisa import constants

from labpgt.bench.config import BenchConfig, InstrumentConfig
from labpgt.errors import UserError


class InstrumentUnreachable(UserError):
    """An instrument did not answer when (re)connecting."""


IDENTITY_ASKS = 3  # *IDN? answers that must all name another model before an instrument is refused


class WrongInstrument(UserError):
    """What answers at an address identifies as a model its driver kind is not written for (never retried)."""


# What a query survives by retrying: transport failures, timeouts, garbled or bad answers.
TRANSIENT_ERRORS = (OSError, TimeoutError, ValueError, pyvisa.errors.Error, InstrumentUnreachable)


def uses_embedded_simulator(config: BenchConfig) -> bool:
    return any(inst.simulated_name is not None for inst in config.instruments.values())


def embedded_simulator(config: BenchConfig):
    """The in-process simulated bench of the config's ``[simulator]`` table."""
    from labpgt.instruments.simulated import SimulatedBench

    sim = config.simulator
    try:
        return SimulatedBench(
            n_generators=int(sim.get("generators", len(config.generators))),
            seed=int(sim.get("seed", 0)),
            noise=bool(sim.get("noise", True)),
            analyzer_model=str(sim.get("analyzer", "esa")),
            generator_models=sim.get("generator_models", "psg"),
            behaviours=simulator_behaviours(sim),
            realtime=bool(sim.get("realtime", False)),
            device=int(sim.get("device", 0)),
            ring_parts=simulator_ring_parts(sim),
            timing=simulator_timing(sim),
        )
    except (TypeError, ValueError) as exc:
        raise UserError(f"bench config {config.source} [simulator]: {exc}") from None


def simulator_behaviours(sim: dict):
    """The ring behaviours a ``[simulator]`` table asks for: its ``preset`` (real: all, ideal: none),
    then each behaviour's own switch."""
    from labpgt.instruments.simulated.ring import Behaviours

    preset = Behaviours.ideal() if sim.get("preset", "real") == "ideal" else Behaviours()
    return replace(preset, **{name: bool(sim[name]) for name in Behaviours.names() if name in sim})


def simulator_ring_parts(sim: dict):
    """``None`` (the ring controller) or the (attenuator, gaussmeter) models of a ``[simulator]`` table's ``ring``."""
    ring = sim.get("ring", "controller")
    if ring == "controller":
        return None
    return str(sim.get("attenuator", "hp11713")), str(sim.get("gaussmeter", "ls421"))


def simulator_timing(sim: dict):
    """The clock's rates of a ``[simulator]`` table (:mod:`labpgt.instruments.simulated.timing`; defaults unset)."""
    from labpgt.instruments.simulated.timing import BenchTiming

    return BenchTiming(**{name: float(sim[name]) for name in BenchTiming.names() if name in sim})


def connect_instruments(config: BenchConfig, simulator=None) -> dict:
    """Open every instrument of the config with its driver; unreachable → one-line UserError.

    ``sim::NAME`` resources are served by ``simulator`` (an embedded ``SimulatedBench``; one is
    made from the config's ``[simulator]`` table when none is given).
    """
    if simulator is None and uses_embedded_simulator(config):
        simulator = embedded_simulator(config)
    connected = {}
    try:
        for name, inst in config.instruments.items():
            if inst.simulated_name is not None:
                driver = inst.kind.driver_class(_simulated_adapter(simulator, inst, config))
                _IDENTITIES[driver] = inst.kind.identify(driver).strip()  # the messages a VISA connection sends
                connected[name] = prepared(inst, driver)
            else:
                connected[name] = _open_visa_retrying(inst, config)
    except BaseException:
        for driver in connected.values():
            close_quietly(driver)
        raise
    return connected


def reconnect(inst: InstrumentConfig, driver, config: BenchConfig):
    """A fresh connection to a VISA instrument, discarding answers still in flight on the old one.

    An embedded simulated instrument has no connection to lose: its driver is returned as it is.
    """
    if inst.simulated_name is not None:
        return driver
    close_quietly(driver)
    return _open_visa(inst, config.timeout_ms)


# What each connected driver's instrument answered to *IDN? when it was connected: asked once, whoever wants it
# later (on the simulated bench's clock, which charges every message, a second *IDN? over TCP made its
# measurements differ from the embedded bench's)
_IDENTITIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def identity_at_connection(driver) -> str | None:
    """What ``driver``'s instrument answered to ``*IDN?`` when :func:`connect_instruments` or :func:`reconnect`
    opened it (None for a driver opened elsewhere)."""
    return _IDENTITIES.get(driver)


def prepared(inst: InstrumentConfig, driver):
    """``driver`` once its kind's preparation (a calibration, a mode, a unit) is done."""
    if inst.kind.prepare is not None:
        inst.kind.prepare(driver, inst)
    return driver


def close_quietly(driver) -> None:
    try:
        driver.adapter.close()
    except Exception:  # noqa: BLE001 - closing what may already be gone
        pass


def _simulated_adapter(simulator, inst: InstrumentConfig, config: BenchConfig):
    from labpgt.instruments.simulated import SimulatedAdapter

    try:
        device = simulator[inst.simulated_name]
    except KeyError:
        raise UserError(
            f"bench config {config.source}: the embedded simulator has no instrument "
            f"{inst.simulated_name!r}; it has {', '.join(simulator.instruments)}"
        ) from None
    return SimulatedAdapter(device)


def _open_visa_retrying(inst: InstrumentConfig, config: BenchConfig):
    """Open an instrument, retrying a refused or dropped first contact within the bench's budget."""
    for attempt in range(1, config.max_attempts + 1):
        try:
            return _open_visa(inst, config.timeout_ms)
        except InstrumentUnreachable:
            if attempt == config.max_attempts:
                raise
            time.sleep(config.wait_after(attempt))


def _open_visa(inst: InstrumentConfig, timeout_ms: int):
    try:
        driver = inst.kind.driver_class(
            inst.resource, visa_library="@py", read_termination="\n", write_termination="\n", timeout=timeout_ms
        )
        if inst.resource.upper().endswith("::SOCKET"):
            _disable_nagle(driver)
        identity = inst.kind.identify(driver).strip()  # a first round trip proves the instrument answers
        for _ in range(IDENTITY_ASKS - 1):  # a garbled reply is not another instrument: that one says so each time
            if inst.kind.accepts_identity(identity):
                break
            identity = inst.kind.identify(driver).strip()
    except Exception as exc:  # pyvisa raises many types for "not there"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InstrumentUnreachable(f"cannot reach {inst.name} at {inst.resource}: {reason}") from None
    _IDENTITIES[driver] = identity
    if not inst.kind.accepts_identity(identity):
        close_quietly(driver)
        raise WrongInstrument(
            f"{inst.name} at {inst.resource} answers *IDN? with {identity!r}, which is not "
            f"{inst.kind.family} as its driver {inst.kind.name!r} needs; check the bench "
            f"file's address (nothing but *IDN? was sent)"
        )
    try:
        return prepared(inst, driver)
    except Exception as exc:  # noqa: BLE001 - a preparation that fails is an instrument that does not answer right
        close_quietly(driver)
        raise InstrumentUnreachable(f"cannot prepare {inst.name} at {inst.resource}: {exc}") from None


def _disable_nagle(driver) -> None:
    """Turn TCP_NODELAY on for a raw-socket VISA session.

    NI-VISA's default for sockets is NODELAY on; pyvisa-py 0.8 leaves it off, and Nagle's algorithm
    against the peer's delayed ACK then holds a small write that follows another for ~40 ms.
    pyvisa-py also refuses to set VI_ATTR_TCPIP_NODELAY (its setter is not wired), so set the
    option on its socket; with another VISA library the attribute is tried instead.
    """
    connection = driver.adapter.connection
    session = getattr(connection.visalib, "sessions", {}).get(connection.session)
    sock = getattr(session, "interface", None)
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return
    try:
        connection.set_visa_attribute(constants.VI_ATTR_TCPIP_NODELAY, constants.VI_TRUE)
    except Exception:  # noqa: BLE001 - a VISA without the attribute: correct, only slower
        pass
