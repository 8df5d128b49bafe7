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
    # files dropped in permissive packages: six keeps all of its own (certifi's MPL does not count)
    assert report["permissive_files_dropped"] == f"0/{rows['six']['code_files']}"


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


def _tree_file(path: str, text: str):
    from curation.code.sources import SourceFile

    data = text.encode("utf-8")
    return SourceFile(path, len(data), lambda data=data: data)


def test_a_file_kept_under_a_bundled_component_is_not_a_wrong_keep_of_its_package():
    """A GPL package with a vendored zlib folder (its own license file): the vendored file is kept under Zlib
    (POLICY.md rule 3) and counted apart; the package's own file is dropped. A kept file under the package's own
    declaration would be a wrong keep."""
    from curation.code.license_trees import governed_by_a_bundled_component

    load_index()
    zlib = (
        "This software is provided 'as-is', without any express or implied warranty. In no event will the authors "
        "be held liable for any damages arising from the use of this software.\n\nPermission is granted to anyone "
        "to use this software for any purpose, including commercial applications, and to alter it and "
        "redistribute it freely, subject to the following restrictions:\n\n1. The origin of this software must "
        "not be misrepresented; you must not claim that you wrote the original software. If you use this "
        "software in a product, an acknowledgment in the product documentation would be appreciated but is not "
        "required.\n2. Altered source versions must be plainly marked as such, and must not be misrepresented as "
        "being the original software.\n3. This notice may not be removed or altered from any source distribution.\n"
    )
    files = [
        _tree_file("PKG-INFO", "Metadata-Version: 2.4\nName: gplpkg\nVersion: 1.0\nLicense-Expression: GPL-3.0-only\n"),
        _tree_file("gplpkg/core.py", "def add(a, b):\n    return a + b\n"),
        _tree_file("gplpkg/vendor/zlib/LICENSE", zlib),
        _tree_file("gplpkg/vendor/zlib/inflate.c", "int inflate(void) { return 0; }\n"),
    ]
    trees = [("gplpkg", files, "PKG-INFO", files[0].read().decode())]
    report = evaluate_packages(trees, DetectorSettings(), load_allowlist())
    row = report["rows"][0]
    assert row["label"] == "gpl-3.0" and row["code_files"] == 2
    assert row["kept"] == row["kept_bundled"] == 1 and row["bundled_sources"] == ["gplpkg/vendor/zlib/LICENSE"]
    assert report["wrong_keeps"] == 0 and report["bundled_keeps"] == 1
    # the rule itself: evidence at the package root (other than the file itself) is the package's declaration
    assert not governed_by_a_bundled_component("gplpkg/core.py", "LICENSE, PKG-INFO")
    assert governed_by_a_bundled_component("orjson/__init__.pyi", "orjson/__init__.pyi")
    assert governed_by_a_bundled_component("typing_extensions.py", "typing_extensions.py")
    assert not governed_by_a_bundled_component("a/b.py", None)
