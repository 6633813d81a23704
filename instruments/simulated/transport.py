"""The two ways to reach a simulated instrument: an in-process PyMeasure adapter and a TCP server.

Both feed the same ``instrument.handle(message) -> bytes`` (see
:mod:`labpgt.instruments.simulated.devices`), so a driver sees the same bytes either way.

* :class:`SimulatedAdapter` is a :class:`pymeasure.adapters.Adapter`: ``write`` executes the
  message, ``read`` returns the pending response up to its ``\\n`` (stripped, as VISA read
  termination does), ``read_bytes(count)`` serves raw pending bytes, so binary blocks can be
  read in pieces (header, length digits, payload, terminator) exactly as over VISA.
  Reading with nothing pending raises :class:`TimeoutError`, as a VISA read would time out.
* :func:`serve` puts each instrument of a bench on its own loopback TCP port, raw-socket SCPI
  as a LAN instrument at ``TCPIP::127.0.0.1::PORT::SOCKET``: program messages terminated by
  ``\\n``, responses terminated by ``\\n``. One thread per connection, TCP_NODELAY, the bench
  lock serialises access. Bad input only adds to the instrument's error queue (a failed query
  is answered at once, see :mod:`.scpi`); a client disconnect only ends that connection.
  ``serve(bench, faults=FaultSpec(...))`` injects seeded faults (dropped connections, late and
  garbled answers, execution errors, reboots) per program message; see
  :mod:`labpgt.instruments.simulated.faults` for what each does and what a client must do about it.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass, field

from pymeasure.adapters import Adapter

from .faults import EXECUTION_ERROR, FaultInjector, FaultSpec

MAX_MESSAGE_BYTES = 1 << 20


class SimulatedAdapter(Adapter):
    """In-process PyMeasure adapter for one simulated instrument (anything with ``handle``)."""

    def __init__(self, device, log=None, **kwargs):
        super().__init__(log=log, **kwargs)
        self.device = device
        self.connection = None
        self._pending = bytearray()

    def _write(self, command: str, **kwargs) -> None:
        self._pending += self.device.handle(command)

    def _write_bytes(self, content: bytes, **kwargs) -> None:
        self._pending += self.device.handle(bytes(content))

    def _take(self, count: int) -> bytes:
        if not self._pending:
            raise TimeoutError(f"{self!r}: no response pending (was the last message a query?)")
        if count < 0 or count > len(self._pending):
            count = len(self._pending)
        chunk = bytes(self._pending[:count])
        del self._pending[:count]
        return chunk

    def _read(self, **kwargs) -> str:
        """The pending response up to (excluding) the next ``\\n``."""
        end = self._pending.find(b"\n")
        chunk = self._take(end + 1 if end >= 0 else -1)
        return chunk.rstrip(b"\n").decode("latin-1")

    def _read_bytes(self, count: int, break_on_termchar: bool = False, **kwargs) -> bytes:
        """``count`` pending bytes (all if -1), stopping after ``\\n`` if ``break_on_termchar``."""
        if break_on_termchar:
            end = self._pending.find(b"\n")
            if end >= 0 and (count < 0 or end + 1 < count):
                count = end + 1
        return self._take(count)

    def flush_read_buffer(self) -> None:
        self._pending.clear()

    def close(self) -> None:
        self._pending.clear()

    def __repr__(self) -> str:
        return f"<SimulatedAdapter {getattr(self.device, 'name', type(self.device).__name__)}>"


# ---------------------------------------------------------------------------------------------
# TCP server
# ---------------------------------------------------------------------------------------------


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0): the peer's next read or write fails at once."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _ScpiConnection(socketserver.BaseRequestHandler):
    """One client: split the stream on ``\\n``, answer each message that holds a query."""

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.generation = self.server.register(self.request)

    def finish(self) -> None:
        self.server.unregister(self.request)

    def handle(self) -> None:
        server = self.server
        device = server.device
        if time.monotonic() < server.down_until or getattr(device, "away", False):  # rebooting, gone: refuse
            _reset(self.request)
            return
        buffer = b""
        cr_ends = b"\r" in getattr(device, "message_terminators", b"\n")  # a dialect whose messages may end in CR
        while True:
            try:
                chunk = self.request.recv(65536)
            except OSError:
                return
            if not chunk or self.generation != server.generation:
                if self.generation != server.generation:  # the instrument rebooted under us
                    _reset(self.request)
                return
            buffer += chunk.replace(b"\r", b"\n") if cr_ends else chunk
            if b"\n" not in buffer:
                if len(buffer) > MAX_MESSAGE_BYTES:  # an unterminated flood: drop it
                    device.push_error(-100)
                    buffer = b""
                continue
            *messages, buffer = buffer.split(b"\n")
            for message in messages:
                message = message.rstrip(b"\r")
                if cr_ends and not message:  # the LF of a CR LF
                    continue
                if getattr(device, "away", False):  # it went away (:SIMulate:AWAY): the line is dead
                    _reset(self.request)
                    return
                if server.faults is None:
                    response = device.handle(message)
                elif (response := self._handle_with_faults(message)) is None:
                    return  # connection reset by the fault
                if response:
                    try:
                        self.request.sendall(response)
                    except OSError:
                        return

    def _handle_with_faults(self, message: bytes) -> bytes | None:
        """Handle one message under the fault injector; ``None`` when the connection is gone."""
        server = self.server
        device = server.device
        if not message.strip():
            return device.handle(message)
        kind = server.faults.decide(server.name)
        if kind == "drop":
            _reset(self.request)
            return None
        if kind == "reboot":
            server.reboot()
            _reset(self.request)
            return None
        if kind == "error":
            with server.lock:
                device.push_error(EXECUTION_ERROR, "injected fault: message not executed")
            return b""
        response = device.handle(message)
        if response and kind == "garble":
            response = server.faults.garble(response, server.name)
        elif response and kind == "delay":
            if server.closing.wait(server.faults.spec.delay_s) or self.generation != server.generation:
                _reset(self.request)
                return None
        return response


class _InstrumentServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address, device, faults: FaultInjector | None = None, name: str = ""):
        self.device = device
        self.faults = faults
        self.name = name or getattr(device, "name", "")
        bench = getattr(device, "bench", None)
        self.lock = bench.lock if bench is not None else threading.RLock()
        self.closing = threading.Event()
        self.generation = 0  # bumped by a reboot: older connections are reset
        self.down_until = 0.0
        self._connections: set = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _ScpiConnection)

    def register(self, sock) -> int:
        with self._connections_lock:
            self._connections.add(sock)
            return self.generation

    def unregister(self, sock) -> None:
        with self._connections_lock:
            self._connections.discard(sock)

    def reboot(self) -> None:
        """Power-cycle the instrument: ``*RST`` state, cleared status, every connection reset."""
        device = self.device
        with self.lock:
            device.reset()
            device.errors.clear()
            device.event_status = 0
        with self._connections_lock:
            self.generation += 1
            self.down_until = time.monotonic() + (self.faults.spec.reboot_s if self.faults else 0.0)
            for sock in list(self._connections):
                try:
                    sock.shutdown(socket.SHUT_RD)  # wakes its thread, which resets it
                except OSError:
                    pass

    def server_close(self) -> None:
        self.closing.set()
        super().server_close()

    def handle_error(self, request, client_address) -> None:  # keep serving, stay quiet
        pass


@dataclass
class Server:
    """Running TCP servers of a bench: ``resources`` maps instrument name -> VISA resource string."""

    host: str
    ports: dict[str, int]
    faults: FaultInjector | None = None
    _servers: list = field(default_factory=list, repr=False)
    _threads: list = field(default_factory=list, repr=False)

    @property
    def resources(self) -> dict[str, str]:
        return {name: f"TCPIP::{self.host}::{port}::SOCKET" for name, port in self.ports.items()}

    def close(self) -> None:
        """Stop accepting, close the listening sockets and wait for the accept loops to end."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=2)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve(
    bench, host: str = "127.0.0.1", ports: dict[str, int] | None = None, faults: FaultSpec | FaultInjector | None = None
) -> Server:
    """Serve every instrument of ``bench`` on its own TCP port (0 or missing = OS-chosen).

    ``faults``: a :class:`FaultSpec` (or a ready :class:`FaultInjector`) to inject seeded faults;
    one injector, with its own RNG, is shared by all instruments (``server.faults``).
    """
    ports = dict(ports or {})
    if isinstance(faults, FaultSpec):
        faults = FaultInjector(faults) if faults.active else None
    server = Server(host=host, ports={}, faults=faults)
    try:
        for name, device in bench.instruments.items():
            instrument_server = _InstrumentServer((host, ports.get(name, 0)), device, faults, name)
            thread = threading.Thread(
                target=instrument_server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"labpgt-sim-{name}",
                daemon=True,
            )
            server._servers.append(instrument_server)
            server._threads.append(thread)
            server.ports[name] = instrument_server.server_address[1]
            thread.start()
    except BaseException:
        server.close()
        raise
    return server


__all__ = ["SimulatedAdapter", "Server", "serve"]
