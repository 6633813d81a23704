"""The recorded sessions shipped with labpgt replay offline and are never modified: data/session-example.h5 (the
current schema) and tests/data/session-v1.h5 (the example shipped until labpgt-session/3, of the numpy engine).

data/session-example.h5 was made with

    labpgt train --task iris --method node --reservoir ring-sim --steps 2 --batch-size 4 --eval-every 2 \\
        --eval-fraction 0.1 --out data/session-example.h5
"""

import hashlib
import json
from pathlib import Path

from sessionfiles import V1_EXAMPLE

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "session-example.h5"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_shipped_session_replays_and_is_left_untouched(labpgt):
    before = sha256(EXAMPLE)
    replay = labpgt("replay", str(EXAMPLE))
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert replay.stdout.startswith("replay ok") and "226 spectra consistent with their features" in replay.stdout
    info = json.loads(labpgt("inspect", "--json", str(EXAMPLE)).stdout)
    assert info["schema"] == "labpgt-session/3" and info["kind"] == "training" and info["completed"] is True
    assert info["reservoir"] == "ring-sim" and info["queries"] == 226 and info["steps"] == 2
    assert info["final_params_sha256"] == "3ed202b31971d89af3f457a23c5e4a36c24f431835c6d6e1f871ded3e9074066"
    assert sha256(EXAMPLE) == before


def test_session_from_the_earlier_engine_is_checked_and_left_untouched(labpgt):
    """The example shipped before was recorded by the numpy engine (labpgt-session/1): replay says so in one
    line and checks what needs no engine — every recorded spectrum still gives its recorded features."""
    before = sha256(V1_EXAMPLE)
    replay = labpgt("replay", str(V1_EXAMPLE))
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert replay.stdout.count("\n") == 1 and "earlier engine (labpgt-engine/1)" in replay.stdout
    assert "184 spectra consistent with their features" in replay.stdout
    info = json.loads(labpgt("inspect", "--json", str(V1_EXAMPLE)).stdout)
    assert info["schema"] == "labpgt-session/1" and info["completed"] is True
    assert info["reservoir"] == "ring-sim" and info["queries"] > 100
    assert info["kind"] == "training"  # a /1 file reads as the training it recorded
    assert info["final_params_sha256"] == "17ce7b9b6bbc11ded2432faf65e2cdc1d6e057984e5502f668c96d353d846a14"
    assert sha256(V1_EXAMPLE) == before


def test_replay_of_an_altered_spectrum_exits_1_naming_the_query(tmp_path, labpgt):
    import shutil

    import h5py

    altered = tmp_path / "altered.h5"
    shutil.copy(EXAMPLE, altered)
    with h5py.File(altered, "r+") as f:
        f["queries/spectrum"][57, 200] += 3.0  # one point of one recorded trace, 3 dB off
    replay = labpgt("replay", str(altered))
    assert replay.returncode == 1
    assert "query 57" in replay.stdout + replay.stderr
