"""A reliability soak over TCP: one training disturbed by what a lab does to a run, compared query for query with
the same training undisturbed.

    nice python benchmarks/reliability_soak.py [--steps 300] [--every-s 20] [--seed 1] [--kinds ...] [--task iris]
        [--batch-size 4] [--directions 2] [--timeout-ms 500] [--delay-s 1]
        [--faults drop=0.004,garble=0.004,delay=0.002,error=0.002,reboot=0.0005,seed=7]

Serves two kind rings (``labpgt sim --noise 0 --ideal``: only the kind ring can be compared query for query, see
fault_soak.py). The run is trained once on the first, undisturbed. Then the same run is trained on the second,
whose TCP transport drops, delays, garbles, refuses and reboots (``--faults``), with ``[[suspend]]`` tables for
the temperature, the oscillation (a check query after every step), and every instrument answering in its bench
config; meanwhile, at seeded random moments (gaps drawn from an exponential distribution of mean ``--every-s``),
one of these is injected:

    temperature  ``:SIMulate:TEMPerature:EXCursion`` of ±3 to 6 K for 2 to 8 s (the temperature suspender)
    gain         ``:SIMulate:GAIN:DROP`` of 30 dB for 2 to 8 s: the ring stops auto-oscillating (oscillation)
    away         ``:SIMulate:AWAY`` of one instrument for 2 to 8 s (the instrument suspender, or its retries)
    SIGTERM, SIGINT, SIGHUP  to the training process: it stops between two measurements and exits 128+N
    SIGKILL      kill -9
and after each stop, ``labpgt train --resume``. The conditions are injected through the same faulty transport,
each sent again until the instrument shows it took it.

At the end the two records are compared row by row, each query row known by (step, role, sample, direction, how
many times that label came before it): *lost* are the undisturbed run's rows missing from the disturbed record,
*measured twice* the disturbed record's rows beyond the undisturbed run's (check queries and the queries a pause
discarded are kept apart, in ``checks`` and not at all), *different* the rows present in both whose inputs,
spectrum or features differ; the labels must also come in the same order, and final_params_sha256 must agree.
An injection *survived* when the run went on after it (its session gained a step, or completed, also while the
injected condition still lasted) without a training process failing in between; a signal must also end its
process with 128+N, naming the session to resume, no traceback. Prints the table; exit status 0 only when
nothing was lost, nothing measured twice or different, the parameters agree and every injection survived.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fault_soak import inspect, serve, train, train_command

import labpgt
from labpgt.bench import bench_config_toml, load_bench_config
from labpgt.inspection import inspect_session
from labpgt.session import SessionReader

CONDITIONS = ("temperature", "gain", "away")
SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT, "SIGHUP": signal.SIGHUP, "SIGKILL": signal.SIGKILL}
KINDS = CONDITIONS + tuple(SIGNALS)
STOPS = ("SIGTERM", "SIGINT", "SIGHUP")  # drawn as one kind, as often as each condition and kill -9
INSTRUMENTS = ("gen1", "gen2", "gen3", "gen4", "ring", "analyzer")
PACKAGE = Path(labpgt.__file__).parent  # a traceback through it: labpgt had begun
ROOM_C = 22.0  # the kind ring's temperature (nothing drifts)
SUSPENDERS = f"""
[[suspend]]
condition = "temperature"
min = {ROOM_C - 2}
max = {ROOM_C + 2}
hold_s = 1.0

[[suspend]]
condition = "oscillation"
min = 20.0
every_steps = 1
hold_s = 1.0

[[suspend]]
condition = "instrument"
hold_s = 1.0
max_s = 120
"""
ROW_FIELDS = ("u", "spectrum", "features")
LABEL_FIELDS = ("step", "role", "sample", "direction")


# --------------------------------------------------------------------------- injecting, through the faulty transport
def _address(resource: str) -> tuple[str, int]:
    """``TCPIP::host::port::SOCKET`` -> (host, port)."""
    _, host, port, _ = resource.split("::")
    return host, int(port)


def _exchange(resource: str, message: str, timeout_s: float = 2.0) -> bytes:
    """Send one message over a fresh connection and read the answer's line; raises OSError when none comes."""
    with socket.create_connection(_address(resource), timeout=timeout_s) as connection:
        connection.sendall(message.encode() + b"\n")
        answer = connection.recv(4096)
        if not answer:
            raise ConnectionResetError("closed")
        return answer


def inject_condition(resource: str, command: str, attempts: int = 30) -> bool:
    """``command`` joined with ``*OPC?`` until an answer (even a garbled one: the message was executed) comes."""
    for _ in range(attempts):
        try:
            _exchange(resource, f"{command};*OPC?")
            return True
        except OSError:  # dropped, refused (error) or late: perhaps not executed, so again
            time.sleep(0.1)
    return False


def inject_away(resource: str, seconds: float, attempts: int = 30) -> bool:
    """``:SIMulate:AWAY`` until the instrument refuses a new connection (it went away)."""
    for _ in range(attempts):
        try:
            with socket.create_connection(_address(resource), timeout=2.0) as connection:
                connection.sendall(f":SIMulate:AWAY {seconds:.2f}\n".encode())
            time.sleep(0.2)
            _exchange(resource, "*IDN?")
        except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError):
            return True
        except OSError:
            pass  # a late answer: ask again
    return False


# --------------------------------------------------------------------------- the disturbances
@dataclass
class Injection:
    kind: str
    at_s: float  # since the soak's start
    detail: str
    until_s: float  # when it is over (a condition's end, a signalled process's exit)
    steps_after: int | None = None  # the session's steps once it was over
    survived: bool | None = None


def draw_injection(rng: random.Random, now_s: float, kinds=KINDS) -> Injection:
    """One injection of ``kinds``: each condition, a stop (one of the three signals) and kill -9 alike likely."""
    drawn = tuple(k for k in CONDITIONS if k in kinds)
    drawn += ("stop",) * any(k in kinds for k in STOPS) + ("SIGKILL",) * ("SIGKILL" in kinds)
    kind = rng.choice(drawn)
    kind = rng.choice([k for k in STOPS if k in kinds]) if kind == "stop" else kind
    seconds = rng.uniform(2.0, 8.0)
    detail = {
        "temperature": f"{rng.choice((-1, 1)) * rng.uniform(3.0, 6.0):+.1f} K for {seconds:.1f} s",
        "gain": f"30 dB for {seconds:.1f} s",
        "away": f"{rng.choice(INSTRUMENTS)} for {seconds:.1f} s",
    }.get(kind, "")
    return Injection(kind, now_s, detail, now_s + (seconds if kind in CONDITIONS else 0.0))


def apply_condition(injection: Injection, resources: dict) -> bool:
    seconds = injection.until_s - injection.at_s
    if injection.kind == "temperature":
        size = float(injection.detail.split()[0])
        return inject_condition(resources["ring"], f":SIMulate:TEMPerature:EXCursion {size:.1f},{seconds:.2f}")
    if injection.kind == "gain":
        return inject_condition(resources["ring"], f":SIMulate:GAIN:DROP 30,{seconds:.2f}")
    return inject_away(resources[injection.detail.split()[0]], seconds)


def steps_in(path: Path) -> int:
    try:
        return inspect_session(path)["steps"] if path.exists() else 0
    except Exception:  # noqa: BLE001 - a file being laid out, or one a kill left for --resume to mend
        return 0


@dataclass
class Soak:
    """The disturbed run: its processes, the injections and the failures."""

    bench: Path
    out: Path
    options: list[str]
    resources: dict
    started: float = field(default_factory=time.monotonic)
    injections: list[Injection] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    processes: int = 0
    named_for_resume: int = 0  # stops whose line named the session (the others came before a run began)
    refused: int = 0  # processes that could not connect (exit 2, one line): started again
    before_python: int = 0  # signals that came before labpgt's first line: Python's own answer (see before_labpgt)

    def now(self) -> float:
        return time.monotonic() - self.started

    def start(self) -> subprocess.Popen:
        command = train_command(self.bench, self.out, self.options)
        if self.out.exists():
            command = [*command[: command.index("--bench")], "--resume", str(self.out), "--quiet"]
        self.processes += 1
        self._err = self.out.with_name(f"process{self.processes}.err")
        env = {k: v for k, v in os.environ.items() if k != "HDF5_USE_FILE_LOCKING"}
        with self._err.open("w") as err:
            return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env)

    def stderr(self) -> str:
        return self._err.read_text()

    def signalled(self, process: subprocess.Popen, injection: Injection) -> int:
        """Send the injection's signal and judge how the process ended; its exit status."""
        number = SIGNALS[injection.kind]
        process.send_signal(number)
        try:
            status = process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            status = process.wait()
            self.fail(f"{injection.kind} at {injection.at_s:.0f} s: the process did not stop within 90 s")
            return status
        injection.until_s = self.now()
        err = self.stderr()
        if status == 0:
            return status  # it had just finished
        if self.refused_to_start(status):  # it had just failed to connect
            self.refused += 1
            return status
        if number == signal.SIGKILL:
            if status != -signal.SIGKILL:
                self.fail(f"SIGKILL at {injection.at_s:.0f} s: exit status {status}")
            return status
        if before_labpgt(status, number, err):
            self.before_python += 1
            return status
        self.named_for_resume += f"--resume {self.out}" in err
        if status != 128 + number or "Traceback" in err:
            self.fail(
                f"{injection.kind} at {injection.at_s:.0f} s: exit status {status}; "
                f"{err.strip().splitlines()[-1] if err.strip() else 'nothing on stderr'}"
            )
        return status

    def refused_to_start(self, status: int) -> bool:
        """A process that could not connect, in one line, because an instrument did not answer as it began (gone
        away, or rebooting by a transport fault, within its bench's attempts): the soak starts it again, as a
        person would. Counted apart, not as a failure: nothing was measured."""
        err = self.stderr()
        return status == 2 and "cannot reach" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1

    def fail(self, line: str) -> None:
        self.failures.append(line)
        for injection in self.injections:
            if injection.survived is None:
                injection.survived = False

    def judge(self, steps: int, completed: bool) -> None:
        """An injection that is over survived once the session gained a step since (or completed)."""
        for injection in self.injections:
            if injection.survived is not None or self.now() < injection.until_s:
                continue
            if injection.steps_after is None:
                injection.steps_after = steps
            elif steps > injection.steps_after or completed:
                injection.survived = True

    def run(self, rng: random.Random, every_s: float, kinds=KINDS) -> float:
        """Train to the end under injections of ``kinds``; the wall time in seconds."""
        process = self.start()
        next_at = rng.expovariate(1.0 / every_s)
        last_look = 0.0
        while True:
            status = process.poll()
            if status is not None:
                if status == 0:
                    break
                if self.refused_to_start(status):
                    self.refused += 1
                    time.sleep(1.0)
                    process = self.start()
                    continue
                self.fail(
                    f"a training process failed at {self.now():.0f} s, exit status {status}: "
                    f"{self.stderr().strip().splitlines()[-1:] or 'nothing on stderr'}"
                )
                if len(self.failures) > 5:
                    raise SystemExit("more than 5 failures: the soak gives up\n" + "\n".join(self.failures))
                process = self.start()
                continue  # inject into a live process
            if self.now() >= next_at:
                injection = draw_injection(rng, self.now(), kinds)
                self.injections.append(injection)
                if injection.kind in SIGNALS:
                    if self.signalled(process, injection) == 0:
                        break  # it had just finished
                    process = self.start()
                elif not apply_condition(injection, self.resources):
                    self.fail(f"{injection.kind} at {injection.at_s:.0f} s could not be injected")
                next_at = self.now() + rng.expovariate(1.0 / every_s)
            if self.now() - last_look > 1.0:
                self.judge(steps_in(self.out), completed=False)
                last_look = self.now()
            time.sleep(0.05)
        self.judge(steps_in(self.out), completed=True)
        for injection in self.injections:  # the run completed after it (or while it lasted), with no failure since
            if injection.survived is None:
                injection.survived = not self.failures
        return self.now()


# --------------------------------------------------------------------------- comparing the records
def labelled_rows(path: Path) -> tuple[list[tuple], dict]:
    """Each query row's label (step, role, sample, direction, occurrence) in order, and its columns."""
    with SessionReader(path) as reader:
        columns = reader.queries(fields=LABEL_FIELDS + ROW_FIELDS)
        names = [reader.role_name(code) for code in columns["role"]]
    seen: Counter = Counter()
    labels = []
    for i, role in enumerate(names):
        label = (int(columns["step"][i]), role, int(columns["sample"][i]), int(columns["direction"][i]))
        labels.append((*label, seen[label]))
        seen[label] += 1
    return labels, columns


def compare(undisturbed: Path, disturbed: Path) -> dict:
    """Lost, measured twice, different and in order (see the module)."""
    labels_a, a = labelled_rows(undisturbed)
    labels_b, b = labelled_rows(disturbed)
    where_b = {label: i for i, label in enumerate(labels_b)}
    common = [label for label in labels_a if label in where_b]
    where_a = {label: i for i, label in enumerate(labels_a)}
    different = sum(
        1
        for label in common
        if not all(np.array_equal(a[f][where_a[label]], b[f][where_b[label]], equal_nan=True) for f in ROW_FIELDS)
    )
    return {
        "lost": len(labels_a) - len(common),
        "measured twice": len(labels_b) - len(common),
        "different": different,
        "in order": labels_a == labels_b,
    }


# --------------------------------------------------------------------------- the soak
def before_labpgt(status: int, number: int, err: str) -> bool:
    """The signal came before any line of labpgt ran, in the interpreter's own start: Python's default answer,
    which no program can change — killed by the signal (-N), or for SIGINT, whose default raises, exit 1 with
    "Fatal Python error: init_import_site" when it came while ``site`` imported — with no frame of labpgt's code
    (labpgt answers from its ``__init__``'s end: labpgt.__main__)."""
    if str(PACKAGE) in err:
        return False
    return status == -number or (number == signal.SIGINT and status == 1 and "init_import_site" in err)


def disturbed_bench(work: Path, faults: str, timeout_ms: int) -> tuple[subprocess.Popen, Path, dict]:
    """The faulty simulator and its bench config with the suspenders (fewer retries: a gone instrument pauses)."""
    sim, bench = serve(work, faults, timeout_ms)
    config = load_bench_config(bench)
    config = dataclasses.replace(config, max_attempts=3, backoff_s=0.05)
    bench.write_text(bench_config_toml(config) + SUSPENDERS)
    resources = {name: config.instruments[name].resource for name in INSTRUMENTS}
    return sim, bench, resources


def stop_simulator(sim: subprocess.Popen) -> str:
    sim.send_signal(signal.SIGINT)
    _, err = sim.communicate(timeout=30)
    return err.strip().splitlines()[-1] if err.strip() else ""


def print_table(
    args, faults, soak: Soak, clean: dict, disturbed: dict, simulator: str, verdict: dict, seconds: tuple[float, float]
) -> None:
    print(
        f"task {args.task}, node, {args.steps} steps of batch {args.batch_size} x {args.directions} directions, "
        f"TCP with --noise 0 --ideal; injections of {args.kinds} every {args.every_s:g} s on average (seed "
        f"{args.seed}); "
        f"faults: {faults}"
    )
    print(f"{'injected':<34}{'count':>6}{'survived':>10}")
    for kind in KINDS:
        done = [i for i in soak.injections if i.kind == kind]
        print(f"{kind:<34}{len(done):>6}{sum(bool(i.survived) for i in done):>10}")
    counts = dict(part.split() for part in simulator.split(": ", 1)[-1].split(", ") if len(part.split()) == 2)
    total_faults = sum(int(v) for v in counts.values() if v.isdigit())
    print(
        f"{'transport faults (' + simulator.split(': ', 1)[-1] + ')':<34}{total_faults:>6}"
        f"{total_faults if not soak.failures else 'n/a':>10}"
    )
    pauses = Counter(p["condition"] for p in disturbed["suspensions"])
    discarded = sum(p["discarded_queries"] for p in disturbed["suspensions"])
    print(
        "suspensions recorded: "
        + (", ".join(f"{k} {v}" for k, v in sorted(pauses.items())) or "none")
        + f"; training processes {soak.processes}, of which could not connect (an instrument not answering as "
        f"they began: exit 2, one line, started again) {soak.refused}; stops that named the session to resume "
        f"{soak.named_for_resume}, the others came before the run began ('interrupted', 128+N) or before labpgt's "
        f"first line (Python's own answer: killed by it, or exit 1 in its site) {soak.before_python}; "
        f"failures {len(soak.failures)}"
    )
    for line in soak.failures:
        print(f"  FAILURE: {line}")
    print(
        f"{'':<12}{'queries':>9}{'training':>10}{'eval':>7}{'checks':>8}{'discarded':>11}{'wall s':>9}"
        f"  final_params_sha256"
    )
    for label, info, wall in (("undisturbed", clean, seconds[0]), ("disturbed", disturbed, seconds[1])):
        eval_queries = info["queries_by_role"].get("eval", 0)
        dropped = discarded if label == "disturbed" else 0
        print(
            f"{label:<12}{info['queries']:>9}{info['queries'] - eval_queries:>10}{eval_queries:>7}"
            f"{info['check_queries']:>8}{dropped:>11}{wall:>9.1f}  {info['final_params_sha256']}"
        )
    print(
        f"queries lost {verdict['lost']}, measured twice {verdict['measured twice']}, different "
        f"{verdict['different']}, in the same order: {'yes' if verdict['in order'] else 'NO'}, "
        f"final parameters equal: {'yes' if same_parameters(clean, disturbed) else 'NO'}"
    )


def same_parameters(clean: dict, disturbed: dict) -> bool:
    return clean["final_params_sha256"] == disturbed["final_params_sha256"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--task", default="iris")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--directions", type=int, default=2)
    parser.add_argument("--every-s", type=float, default=20.0, help="mean time between two injections")
    parser.add_argument("--seed", type=int, default=1, help="of the injections' moments and kinds")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"what may be injected, of {','.join(KINDS)}")
    parser.add_argument("--faults", default="drop=0.004,garble=0.004,delay=0.002,error=0.002,reboot=0.0005,seed=7")
    parser.add_argument("--timeout-ms", type=int, default=500)
    parser.add_argument("--delay-s", type=float, default=1.0, help="how late a delayed answer comes")
    args = parser.parse_args()
    kinds = tuple(args.kinds.split(","))
    if not kinds or not set(kinds) <= set(KINDS):
        parser.error(f"--kinds: a comma-separated list of {','.join(KINDS)}")
    os.environ["HDF5_USE_FILE_LOCKING"] = "FALSE"  # the soak's looks at the session never lock out a --resume
    faults = f"{args.faults},delay_s={args.delay_s}" if "delay=" in args.faults else args.faults
    options = [
        "--task",
        args.task,
        "--batch-size",
        str(args.batch_size),
        "--directions",
        str(args.directions),
        "--steps",
        str(args.steps),
        "--eval-every",
        str(args.steps),
    ]

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sim, bench = serve(work, None, args.timeout_ms)
        try:
            undisturbed_s = train(bench, work / "undisturbed.h5", options)
        finally:
            stop_simulator(sim)
        sim, bench, resources = disturbed_bench(work, faults, args.timeout_ms)
        soak = Soak(bench, work / "disturbed.h5", options, resources)
        try:
            disturbed_s = soak.run(random.Random(args.seed), args.every_s, kinds)
        finally:
            simulator = stop_simulator(sim)
        clean, disturbed = inspect(work / "undisturbed.h5"), inspect(work / "disturbed.h5")
        verdict = compare(work / "undisturbed.h5", work / "disturbed.h5")

    print_table(args, faults, soak, clean, disturbed, simulator, verdict, (undisturbed_s, disturbed_s))
    ok = (
        verdict["lost"] == 0
        and verdict["measured twice"] == 0
        and verdict["different"] == 0
        and verdict["in order"]
        and same_parameters(clean, disturbed)
        and disturbed["completed"]
        and not soak.failures
        and all(i.survived for i in soak.injections)
    )
    print(
        "RESULT: "
        + (
            "every injection survived; the disturbed run recorded exactly the undisturbed run's queries and parameters"
            if ok
            else "FAILED"
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
