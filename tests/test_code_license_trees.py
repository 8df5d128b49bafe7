"""The license stage on real package trees, scored against each package's declared license."""

from __future__ import annotations

import shutil

import pytest

from curation.code.license_trees import evaluate_packages, npm_install, npm_trees, site_packages_trees
from curation.licenses.allowlist import load_allowlist
from curation.licenses.detector import DetectorSettings, load_index


def test_installed_distributions_are_scored_by_their_declared_license():
    load_index()
    report = evaluate_packages(site_packages_trees(["six", "certifi"]), DetectorSettings(), load_allowlist())
    rows = {row["package"]: row for row in report["rows"]}
    assert rows["six"]["label"] == "mit" and rows["six"]["kept"] == rows["six"]["code_files"] > 0
    assert rows["certifi"]["label"] == "mpl-2.0" and rows["certifi"]["kept"] == 0
    assert report["wrong_keeps"] == 0 and report["false_drops"] == 0 and report["labelled"] == 2


@pytest.mark.slow
def test_npm_packages_installed_without_scripts_are_separate_scored_repositories(tmp_path):
    """Needs the npm client and its registry; `@babel/*` packages must come out as separate repositories."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    try:
        node_modules = npm_install(["left-pad@1.3.0", "@babel/helper-plugin-utils@7.24.0"], tmp_path / "npm")
    except RuntimeError as exc:
        pytest.skip(f"npm install did not work here: {exc}")
    trees = npm_trees(node_modules)
    names = {name for name, *_ in trees}
    assert {"left-pad", "@babel/helper-plugin-utils"} <= names
    report = evaluate_packages(trees, DetectorSettings(), load_allowlist())
    rows = {row["package"]: row for row in report["rows"]}
    assert rows["left-pad"]["label"] == "wtfpl-2.0" and rows["left-pad"]["kept"] > 0
    assert report["wrong_keeps"] == 0
