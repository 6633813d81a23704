"""``labpgt sim`` in its own process, as a lab's LAN instruments, and what its generators' RF outputs are."""

import contextlib
import signal
import subprocess
import sys

from labpgt.bench import bench_config_toml, simulated_bench_config


@contextlib.contextmanager
def served_bench(directory, *options):
    """Serve the simulated bench (noise off; more ``labpgt sim`` options, e.g. ``--ideal``) on free loopback ports:
    ``(bench.toml in directory, resources)``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "labpgt", "sim", "--port", "0", "--noise", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        resources = dict(proc.stdout.readline().split() for _ in range(6))
        path = directory / "bench.toml"
        path.write_text(bench_config_toml(simulated_bench_config(embedded=False).with_resources(resources)))
        yield path, resources
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def generator_outputs(resources):
    """Each simulated generator's ``:OUTP?`` answer, asked over its own connection."""
    import pyvisa

    rm = pyvisa.ResourceManager("@py")
    states = []
    for name in ("gen1", "gen2", "gen3", "gen4"):
        inst = rm.open_resource(resources[name], read_termination="\n", write_termination="\n", timeout=2000)
        states.append(inst.query(":OUTP?").strip())
        inst.close()
    return states


def scpi(resource: str, message: str) -> str | None:
    """Send one message to an instrument over its own connection; its answer if it is a query."""
    import pyvisa

    inst = pyvisa.ResourceManager("@py").open_resource(
        resource, read_termination="\n", write_termination="\n", timeout=5000
    )
    try:
        if message.rstrip().endswith("?"):
            return inst.query(message).strip()
        inst.write(message)
        return None
    finally:
        inst.close()
