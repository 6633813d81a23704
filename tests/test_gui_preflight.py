"""``labpgt gui`` before Qt: missing system libraries and no display are one line and exit 2; a bad Qt binding too."""

import os
import subprocess
import sys

import pytest

from labpgt.errors import UserError
from labpgt.procedures import preflight
from labpgt.procedures.preflight import check_display, check_system_libraries, missing_libraries, qt_platform

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt brings its own libraries elsewhere")


def loader_without(*absent):
    def load(soname):
        if soname in absent:
            raise OSError(f"{soname}: cannot open shared object file: No such file or directory")

    return load


def test_the_platform_is_the_one_qt_would_choose():
    assert qt_platform({"QT_QPA_PLATFORM": "offscreen"}) == "offscreen"
    assert qt_platform({"QT_QPA_PLATFORM": "xcb:dpiawareness=1;wayland"}) == "xcb"
    assert qt_platform({}, platform="linux") == "xcb"
    assert qt_platform({"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"}, platform="linux") == "wayland"
    assert qt_platform({}, platform="win32") is None


@linux_only
def test_every_missing_library_is_named_with_its_package_in_one_line():
    load = loader_without("libxcb-icccm.so.4", "libxcb-keysyms.so.1")
    assert missing_libraries("xcb", load) == {
        "libxcb-icccm.so.4": "libxcb-icccm4",
        "libxcb-keysyms.so.1": "libxcb-keysyms1",
    }
    assert missing_libraries("offscreen", load) == {}  # only the xcb plugin needs these
    with pytest.raises(UserError) as error:
        check_system_libraries({"DISPLAY": ":0"}, load)
    message = str(error.value)
    assert "\n" not in message and "libxcb-icccm.so.4, libxcb-keysyms.so.1" in message
    assert message.endswith("sudo apt install libxcb-icccm4 libxcb-keysyms1")
    check_system_libraries({"QT_QPA_PLATFORM": "offscreen"}, load)


def test_an_x11_window_without_a_display_is_refused():
    with pytest.raises(UserError, match="DISPLAY is not set"):
        check_display({"QT_QPA_PLATFORM": "xcb"})
    check_display({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"})
    check_display({"QT_QPA_PLATFORM": "offscreen"})


@pytest.mark.slow
@linux_only
def test_labpgt_gui_on_this_machine_says_what_is_missing_instead_of_aborting():
    """Whatever this machine lacks for an X11 window (libraries, else a display), the GUI says it in one line."""
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    missing = missing_libraries("xcb")
    if missing:
        env["DISPLAY"] = ":99"  # a display that does not exist: the libraries are checked first
    proc = subprocess.run([sys.executable, "-m", "labpgt", "gui"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("labpgt: ")
    expected = [*missing.values()] if missing else ["DISPLAY is not set"]
    assert all(text in lines[0] for text in expected)


def test_the_installed_qt_binding_keeps_none_alive():
    assert not preflight.drops_references_to_none()  # setup.cfg keeps PySide6 6.12.0 away on Python < 3.12
    preflight.check_qt_binding()


def test_a_binding_that_drops_references_to_none_is_refused(monkeypatch):
    monkeypatch.setattr(preflight, "drops_references_to_none", lambda: True)
    with pytest.raises(UserError, match="would crash the GUI mid-run"):
        preflight.check_qt_binding()
