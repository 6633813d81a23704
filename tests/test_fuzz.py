"""Property-based tests (hypothesis, bounded): the SCPI parser and the session reader take any input.

(a) Every simulated instrument's ``handle()`` gets arbitrary bytes and random SCPI-ish program
    messages: it never raises, returns ``\\n``-terminated bytes (or nothing), queues only standard
    error codes (never -300, the code of a handler that crashed), and still answers ``*IDN?``.
(b) A small valid session file — a training (finished, or live under its writer), a sweep, and
    each as labpgt-session/1 wrote it — corrupted (bytes flipped, truncated, attributes and
    datasets edited through h5py), is either read or refused with one :class:`UserError` line;
    never another exception, never a hang (a watchdog per example, and faulthandler as a
    backstop for a hang inside HDF5's C code).
"""

from __future__ import annotations

import contextlib
import faulthandler
import shutil
import signal
import string

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sessionfiles import dataset_names, downgrade_to_v1, write_sweep, write_v1_ring_sweep

from labpgt.errors import UserError
from labpgt.inspection import format_inspection, inspect_session
from labpgt.instruments.simulated import SimulatedBench
from labpgt.instruments.simulated.scpi import ERROR_QUEUE_LENGTH, ERROR_TEXTS
from labpgt.runs import start_training
from labpgt.session import SessionReader, SessionWriter
from labpgt.trainer import TrainConfig

# the deadline catches a reader that hangs (a corrupt file can make HDF5 retry forever); 10 s, not 1 s: on a loaded
# 2-core CI machine a file's first read has taken 2.3 s, its rerun 9 ms
FUZZ = settings(
    max_examples=200,
    deadline=10_000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Hang(Exception):
    pass


@contextlib.contextmanager
def watchdog(seconds: float):
    """Raise :class:`Hang` if the block runs longer than ``seconds`` (Python-level); faulthandler
    kills the process with a traceback if it is stuck in C code for much longer."""

    def alarm(*_):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(10 * seconds + 30, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()


# =========================================================================== (a) SCPI
BENCH = SimulatedBench(n_generators=1, seed=0, noise=False)
INSTRUMENTS = sorted(BENCH.instruments)
MNEMONICS = [
    "SOUR",
    "SOURce",
    "FREQ",
    "frequency",
    "CW",
    "FIX",
    "POW",
    "LEV",
    "IMM",
    "AMPL",
    "OUTP",
    "STAT",
    "MOD",
    "LFO",
    "SENS",
    "CENT",
    "SPAN",
    "STAR",
    "STOP",
    "STEP",
    "BAND",
    "BWID",
    "RES",
    "AUTO",
    "SWE",
    "POIN",
    "TIME",
    "INIT",
    "CONT",
    "ABOR",
    "TRAC",
    "DATA",
    "FORM",
    "BORD",
    "LOOP",
    "GAIN",
    "FIEL",
    "SYST",
    "ERR",
    "NEXT",
    "COUN",
    "IDN",
    "RST",
    "CLS",
    "OPC",
    "WAI",
    "ESR",
    "TST",
]
UNITS = ["", "Hz", "kHz", "MHZ", "GHz", "mhz", "dBm", "dB", "s", "ms", "us", "ns", "mT", "T", "V", "mV", "xyz"]
WORDS = ["ON", "OFF", "MIN", "MAX", "DEF", "maximum", "ASC", "REAL", "NORM", "SWAP", "TRACE1", "TRACE9", "INT"]

mnemonic = st.one_of(st.sampled_from(MNEMONICS), st.text(string.ascii_letters + string.digits + "_", max_size=8))
number = st.builds(
    lambda v, unit: f"{v}{unit}",
    st.one_of(
        st.integers(-(10**12), 10**12),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(["1e999", "-0", ".5", "5.", "1e", "+", "--1", "0x10", "1,5"]),
    ),
    st.sampled_from(UNITS),
)
argument = st.one_of(
    number,
    st.sampled_from(WORDS),
    st.text(max_size=6).map(lambda t: '"' + t + '"'),
    st.text(max_size=6).map(lambda t: "'" + t.replace("'", "''") + "'"),
    st.sampled_from(['"unterminated', "'", '""""', "#14abcd", "#", ""]),
)
header = st.builds(
    lambda lead, parts, star, query: ("*" if star else lead) + ":".join(parts) + query,
    st.sampled_from(["", ":", "::", " "]),
    st.lists(mnemonic, min_size=1, max_size=4),
    st.booleans(),
    st.sampled_from(["", "?", "??"]),
)
unit = st.builds(
    lambda h, args, sep: h + (sep + ",".join(args) if args else ""),
    header,
    st.lists(argument, max_size=3),
    st.sampled_from([" ", "\t", "  ", ""]),
)
program_message = st.lists(unit, min_size=1, max_size=5).map(";".join) | st.text(max_size=80)

STANDARD_CODES = set(ERROR_TEXTS) - {0, -300}


def check_instrument_survives(name: str, message) -> None:
    instrument = BENCH[name]
    with watchdog(5):
        response = instrument.handle(message)
    assert isinstance(response, bytes)
    assert response == b"" or response.endswith(b"\n")
    assert len(instrument.errors) <= ERROR_QUEUE_LENGTH
    for code, text in instrument.errors:
        assert code in STANDARD_CODES and text == ERROR_TEXTS[code], (code, text, instrument.last_error_detail)
    assert instrument.handle(b"*CLS;*RST;*IDN?") == instrument.identity.encode() + b"\n"
    assert instrument.handle(b":SYST:ERR?") == b'+0,"No error"\n'


@FUZZ
@given(name=st.sampled_from(INSTRUMENTS), message=st.binary(max_size=200))
def test_instruments_survive_arbitrary_bytes(name, message):
    check_instrument_survives(name, message)


@FUZZ
@given(name=st.sampled_from(INSTRUMENTS), messages=st.lists(program_message, min_size=1, max_size=3))
def test_instruments_survive_random_scpi(name, messages):
    check_instrument_survives(name, "\n".join(messages))


# =========================================================================== (b) session files
CONFIG = TrainConfig.of(
    task="iris", method="node", reservoir="digital", steps=3, eval_every=2, seed=3, batch_size=8, eval_train_samples=10
)


KINDS = ("complete", "live", "sweep", "v1", "v1-sweep")


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    """A complete training, the image of one whose writer is still running (SWMR, flag set), a sweep
    (/2), and a training and a sweep as labpgt-session/1 wrote them; with each one's datasets."""
    root = tmp_path_factory.mktemp("fuzz")
    complete = root / "complete.h5"
    start_training(CONFIG, complete)
    live = root / "live.h5"
    shutil.copy(complete, live)
    writer, _ = SessionWriter.open_for_resume(live)
    live_image = live.read_bytes()  # as on disk while a writer has it open
    writer.close()
    live.write_bytes(live_image)
    v1 = root / "v1.h5"
    shutil.copy(complete, v1)
    downgrade_to_v1(v1)
    write_sweep(root / "sweep.h5", points=5)
    write_v1_ring_sweep(root / "v1-sweep.h5", points=5)
    images = {kind: (root / f"{kind}.h5").read_bytes() for kind in KINDS if kind != "live"}
    datasets = {kind: sorted(dataset_names(root / f"{kind}.h5")) for kind in KINDS if kind != "live"}
    return Files(**images, live=live_image, datasets=datasets, root=root)


class Files(dict):
    """The fixture's files, with a short repr for hypothesis' falsifying examples."""

    def __init__(self, **items):
        super().__init__(items)

    def __repr__(self):
        return "<session files>"


def read_everything(path) -> None:
    """What inspect, export, replay and resume read: either it all works or it is one UserError line."""
    try:
        with watchdog(5):
            format_inspection(inspect_session(path))
            with SessionReader(path) as session:
                session.refresh()
                session.valid_lengths()
                for row in range(session.n_steps):
                    session.perturbation(row)
                    session.step_extra(row)
                for index in range(session.n_checkpoints):
                    session.checkpoint(index)
                if session.kind == "sweep":
                    session.points()
                for _ in session.iter_queries(block_rows=64):
                    pass
    except UserError as error:
        assert str(error) and "\n" not in str(error)


def test_the_uncorrupted_files_read(sessions, tmp_path):
    for kind in KINDS:
        path = tmp_path / f"{kind}.h5"
        path.write_bytes(sessions[kind])
        info = inspect_session(path)
        if kind.endswith("sweep"):
            assert info["kind"] == "sweep" and info["points"] == 5
        else:
            assert info["kind"] == "training" and info["steps"] == 3


flips = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=16)


@settings(FUZZ, max_examples=120)
@given(kind=st.sampled_from(KINDS), flips=flips, cut=st.none() | st.floats(0, 1, exclude_max=True))
def test_flipped_or_truncated_session_files_are_read_or_refused(sessions, kind, flips, cut):
    data = bytearray(sessions[kind])
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    if cut is not None:
        data = data[: int(cut * len(data))]
    path = sessions["root"] / "corrupt.h5"
    path.write_bytes(bytes(data))
    read_everything(path)


def test_truncation_at_every_size_class_is_refused_quickly(sessions):
    """The size check holds for live (SWMR) images: HDF5 never gets to read past the end."""
    path = sessions["root"] / "truncated.h5"
    for kind in KINDS:
        whole = sessions[kind]
        for cut in sorted({0, 1, 7, 8, 47, 48, 100, 511, 512, 4096, len(whole) // 3, len(whole) - 1}):
            path.write_bytes(whole[:cut])
            with watchdog(5), pytest.raises(UserError):
                SessionReader(path)


ROOT_ATTRIBUTES = ["schema", "kind", "config", "created", "versions", "instruments"]
junk_value = st.one_of(
    st.text(max_size=20),
    st.binary(max_size=20),
    st.integers(-(2**40), 2**40),
    st.sampled_from(
        [
            '{"train": 5}',
            '{"train": {"steps": "x"}}',
            '{"train": {"method": 3}}',
            "[]",
            "null",
            '{"train": {}}',
            "labpgt-session/1",
            "{",
            '"x"',
            "labpgt-session/2",
            "training",
            "sweep",
            '{"sweep": 5}',
            '{"train": {"method": "sweep"}}',
            '{"bench": [1], "train": {}}',
            '{"sweep": {"instrument": "ring", "setting": "loop_gain_db", "start": 0, '
            '"stop": 1, "points": 3, "tones": false, "margin_db": "x"}}',
        ]
    ),
)
dtypes = st.sampled_from(["int8", "uint8", "int32", "int64", "float32", "float64", "S4"])


@st.composite
def h5_edits(draw, datasets):
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        what = draw(
            st.sampled_from(["attr", "del_attr", "del_ds", "retype", "reshape", "values", "resize", "names_attr"])
        )
        target = draw(st.sampled_from(ROOT_ATTRIBUTES if what in ("attr", "del_attr") else datasets))
        edits.append(
            (what, target, draw(junk_value), draw(dtypes), draw(st.integers(-3, 2**31)), draw(st.integers(0, 6)))
        )
    return edits


def attribute_value(junk):
    """HDF5 strings cannot hold NUL: such junk is stored as a uint8 array (another wrong type)."""
    raw = junk.encode("utf-8", "surrogatepass") if isinstance(junk, str) else junk
    if isinstance(raw, bytes) and b"\0" in raw:
        return np.frombuffer(raw, dtype=np.uint8)
    return junk


def apply_edit(f: h5py.File, edit) -> None:
    what, target, junk, dtype, integer, small = edit
    junk = attribute_value(junk)
    if what == "attr":
        f.attrs[target] = junk
    elif what == "del_attr":
        if target in f.attrs:
            del f.attrs[target]
    elif target not in f:
        return
    elif what == "del_ds":
        del f[target]
    elif what in ("retype", "reshape"):
        old = f[target]
        shape = old.shape if what == "retype" else (old.shape[:1] + (small,) * (small % 3))
        attrs = dict(old.attrs)
        del f[target]
        new = f.create_dataset(
            target,
            shape=shape,
            dtype=dtype if what == "retype" else old.dtype,
            maxshape=(None,) + shape[1:] if shape else None,
        )
        for key, value in attrs.items():
            with contextlib.suppress(ValueError, TypeError):  # junk an earlier edit wrote may not round-trip
                new.attrs[key] = value
    elif what == "values":
        ds = f[target]
        if ds.size:
            flat = np.full(min(ds.shape[0], 4), integer)
            ds[: flat.size] = (
                flat.reshape((-1,) + (1,) * (ds.ndim - 1)).astype(ds.dtype, copy=False)
                if ds.ndim > 1
                else flat.astype(ds.dtype, copy=False)
            )
    elif what == "resize":
        ds = f[target]
        if ds.maxshape and ds.maxshape[0] is None:
            ds.resize(small, axis=0)
    elif what == "names_attr":
        f[target].attrs["names"] = junk


@settings(FUZZ, max_examples=120)
@given(kind=st.sampled_from([kind for kind in KINDS if kind != "live"]), data=st.data())
def test_edited_session_files_are_read_or_refused(sessions, kind, data):
    edits = data.draw(h5_edits(sessions["datasets"][kind]))
    path = sessions["root"] / "edited.h5"
    path.write_bytes(sessions[kind])
    with h5py.File(path, "r+") as f:
        for edit in edits:
            apply_edit(f, edit)
    read_everything(path)
