"""The recorded session shipped in data/ replays exactly, offline, and is never modified."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "session-example.h5"


def labpgt(*args):
    return subprocess.run([sys.executable, "-m", "labpgt", *args], capture_output=True, text=True, timeout=120)


def test_shipped_session_from_the_earlier_engine_is_checked_and_left_untouched():
    """The shipped file was recorded by the numpy engine (labpgt-session/1): replay says so in one line
    and checks what needs no engine — every recorded spectrum still gives its recorded features."""
    before = hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    replay = labpgt("replay", str(EXAMPLE))
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert replay.stdout.count("\n") == 1 and "earlier engine (labpgt-engine/1)" in replay.stdout
    assert "184 spectra consistent with their features" in replay.stdout
    info = json.loads(labpgt("inspect", "--json", str(EXAMPLE)).stdout)
    assert info["schema"] == "labpgt-session/1" and info["completed"] is True
    assert info["reservoir"] == "ring-sim" and info["queries"] > 100
    assert info["kind"] == "training"             # a /1 file reads as the training it recorded
    assert info["final_params_sha256"] == "17ce7b9b6bbc11ded2432faf65e2cdc1d6e057984e5502f668c96d353d846a14"
    assert hashlib.sha256(EXAMPLE.read_bytes()).hexdigest() == before


def test_replay_of_an_altered_spectrum_exits_1_naming_the_query(tmp_path):
    import shutil

    import h5py

    altered = tmp_path / "altered.h5"
    shutil.copy(EXAMPLE, altered)
    with h5py.File(altered, "r+") as f:
        f["queries/spectrum"][57, 200] += 3.0  # one point of one recorded trace, 3 dB off
    replay = labpgt("replay", str(altered))
    assert replay.returncode == 1
    assert "query 57" in replay.stdout + replay.stderr
