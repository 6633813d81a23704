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
  lock serialises access. Bad input only adds to the instrument's error queue; a client
  disconnect only ends that connection.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from dataclasses import dataclass, field

from pymeasure.adapters import Adapter

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

class _ScpiConnection(socketserver.BaseRequestHandler):
    """One client: split the stream on ``\\n``, answer each message that holds a query."""

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        device = self.server.device
        buffer = b""
        while True:
            try:
                chunk = self.request.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            if b"\n" not in buffer:
                if len(buffer) > MAX_MESSAGE_BYTES:   # an unterminated flood: drop it
                    device.push_error(-100)
                    buffer = b""
                continue
            *messages, buffer = buffer.split(b"\n")
            for message in messages:
                response = device.handle(message.rstrip(b"\r"))
                if response:
                    try:
                        self.request.sendall(response)
                    except OSError:
                        return


class _InstrumentServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address, device):
        self.device = device
        super().__init__(address, _ScpiConnection)

    def handle_error(self, request, client_address) -> None:  # keep serving, stay quiet
        pass


@dataclass
class Server:
    """Running TCP servers of a bench: ``resources`` maps instrument name -> VISA resource string."""

    host: str
    ports: dict[str, int]
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

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve(bench, host: str = "127.0.0.1", ports: dict[str, int] | None = None) -> Server:
    """Serve every instrument of ``bench`` on its own TCP port (0 or missing = OS-chosen)."""
    ports = dict(ports or {})
    server = Server(host=host, ports={})
    try:
        for name, device in bench.instruments.items():
            instrument_server = _InstrumentServer((host, ports.get(name, 0)), device)
            thread = threading.Thread(target=instrument_server.serve_forever, kwargs={"poll_interval": 0.1},
                                      name=f"labpgt-sim-{name}", daemon=True)
            server._servers.append(instrument_server)
            server._threads.append(thread)
            server.ports[name] = instrument_server.server_address[1]
            thread.start()
    except BaseException:
        server.close()
        raise
    return server


__all__ = ["SimulatedAdapter", "Server", "serve"]
