"""setup.cfg lists its packages by name: a package missing from the list is left out of every non-editable install
(``pip install labpgt``), which the editable install the tests run in does not show."""

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_in_the_source_tree_is_listed_in_setup_cfg():
    options = configparser.ConfigParser()
    options.read(ROOT / "setup.cfg")
    listed = set(options["options"]["packages"].split())
    roots = dict(line.split(" = ") for line in options["options"]["package_dir"].strip().splitlines())
    found = set()
    for package, folder in roots.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((package, *parts)))
    assert "labpgt.commands" in found  # the walk sees subpackages
    assert found <= listed, f"packages missing from setup.cfg's [options] packages: {sorted(found - listed)}"
