"""The recorded session shipped in data/ replays exactly, offline, and is never modified."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "session-example.h5"


def labpgt(*args):
    return subprocess.run([sys.executable, "-m", "labpgt", *args], capture_output=True, text=True, timeout=120)


def test_shipped_session_replays_and_is_left_untouched():
    before = hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    replay = labpgt("replay", str(EXAMPLE))
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "replay ok" in replay.stdout
    info = json.loads(labpgt("inspect", "--json", str(EXAMPLE)).stdout)
    assert info["schema"] == "labpgt-session/1" and info["completed"] is True
    assert info["reservoir"] == "ring-sim" and info["queries"] > 100
    assert hashlib.sha256(EXAMPLE.read_bytes()).hexdigest() == before
