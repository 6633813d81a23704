"""What ``labpgt gui`` checks before it creates the QApplication: a missing piece is one line and exit status 2,
not a Qt abort (exit 134) at start or an interpreter crash minutes into a measuring run.

* :func:`check_system_libraries` — the shared libraries Qt loads from the system on Linux: those of
  QtCore and QtGui, and those of the ``xcb`` platform plugin when the window would open on X11 (the plugin
  aborts naming only the first one it misses). The table maps each library to its Debian/Ubuntu
  package; it is the ``NEEDED`` list of PySide6's ``libQt6Core``, ``libQt6Gui``, ``libQt6DBus`` and
  ``libqxcb``/``libQt6XcbQpa``, less what the wheel ships itself. Windows and macOS wheels bring everything:
  nothing is checked.
* :func:`check_display` — an X11 window needs ``DISPLAY``.
* :func:`check_qt_binding` — PySide6 6.12.0 under Python < 3.12 decrements None's reference count on
  every call of a method that returns nothing (None is immortal only from Python 3.12); after some
  ten thousand calls — a few minutes of live plots — Python aborts with ``Fatal Python error:
  none_dealloc``, with RF possibly on. setup.cfg excludes it; this catches an environment that has it anyway.

Only the last imports Qt; the first two run before anything of Qt is loaded.
"""

from __future__ import annotations

import ctypes
import os
import sys

from labpgt.errors import UserError

QT_LIBRARIES = {  # soname: Debian/Ubuntu package (of QtCore, QtGui and the QtDBus it links)
    "libdbus-1.so.3": "libdbus-1-3",
    "libzstd.so.1": "libzstd1",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libX11.so.6": "libx11-6",
    "libz.so.1": "zlib1g",
}
XCB_PLUGIN_LIBRARIES = {
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
}


def qt_platform(environ=os.environ, platform: str = sys.platform) -> str | None:
    """The platform plugin Qt will load on Linux (``QT_QPA_PLATFORM``'s first choice, else wayland in a
    Wayland session, else xcb); None elsewhere."""
    chosen = environ.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if chosen:
        return chosen
    if not platform.startswith("linux"):
        return None
    if environ.get("XDG_SESSION_TYPE") == "wayland" and environ.get("WAYLAND_DISPLAY"):
        return "wayland"
    return "xcb"


def missing_libraries(platform_name: str | None, load=ctypes.CDLL) -> dict[str, str]:
    """``{soname: package}`` of the system libraries Qt needs on this platform that cannot be loaded."""
    if not sys.platform.startswith("linux") or platform_name is None:
        return {}
    needed = dict(QT_LIBRARIES)
    if platform_name == "xcb":
        needed.update(XCB_PLUGIN_LIBRARIES)
    missing = {}
    for soname, package in needed.items():
        try:
            load(soname)
        except OSError:
            missing[soname] = package
    return missing


def check_system_libraries(environ=os.environ, load=ctypes.CDLL) -> None:
    platform_name = qt_platform(environ)
    missing = missing_libraries(platform_name, load)
    if missing:
        packages = " ".join(sorted(set(missing.values())))
        raise UserError(
            f"the GUI's Qt ({platform_name} platform) needs system libraries that are missing: "
            f"{', '.join(missing)}; on Debian/Ubuntu: sudo apt install {packages}"
        )


def check_display(environ=os.environ) -> None:
    if qt_platform(environ) == "xcb" and not environ.get("DISPLAY"):
        raise UserError(
            "no X display (DISPLAY is not set): start the GUI from the PC's desktop session, "
            "or set QT_QPA_PLATFORM=offscreen to run it without a screen"
        )


def drops_references_to_none(calls: int = 200) -> bool:
    """True if calling a Qt method that returns nothing lowers None's reference count (PySide6 6.12.0,
    Python < 3.12)."""
    from pymeasure.display.Qt import QtCore

    timer = QtCore.QTimer()
    before = sys.getrefcount(None)
    for _ in range(calls):
        timer.stop()
    return sys.getrefcount(None) < before - calls // 2


def check_qt_binding() -> None:
    if drops_references_to_none():
        import qtpy

        version = qtpy.PYSIDE_VERSION or qtpy.PYQT_VERSION
        raise UserError(
            f"{qtpy.API_NAME} {version} under Python {sys.version.split()[0]} "
            f"loses references to None and would crash the GUI mid-run; install a fixed one: "
            f"pip install 'PySide6-Essentials<6.12' (or use Python >= 3.12)"
        )


def check_gui_environment() -> None:
    """Everything the window needs from the machine, before Qt is loaded (then the binding, once loaded)."""
    check_system_libraries()
    check_display()
