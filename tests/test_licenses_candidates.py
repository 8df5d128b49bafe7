"""Which files carry license information, README license sections and package-metadata license fields."""

from __future__ import annotations

import pytest

from curation.licenses.candidates import (
    CandidateKind,
    MetadataError,
    candidate_kind,
    declared_licenses,
    readme_license_section,
)


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("LICENSE", CandidateKind.LICENSE),
        ("sub/dir/LICENSE.txt", CandidateKind.LICENSE),
        ("LICENCE.md", CandidateKind.LICENSE),
        ("COPYING.LESSER", CandidateKind.LICENSE),
        ("LICENSE-MIT", CandidateKind.LICENSE),
        ("MIT-LICENSE", CandidateKind.LICENSE),
        ("apache-2.0.LICENSE", CandidateKind.LICENSE),
        ("UNLICENSE", CandidateKind.LICENSE),
        ("LICENSES/Apache-2.0.txt", CandidateKind.LICENSE),
        ("NOTICE", CandidateKind.NOTICE),
        ("COPYRIGHT.txt", CandidateKind.NOTICE),
        ("README.md", CandidateKind.README),
        ("docs/README.rst", CandidateKind.README),
        ("pyproject.toml", CandidateKind.METADATA),
        ("pkg/package.json", CandidateKind.METADATA),
        ("Cargo.toml", CandidateKind.METADATA),
        ("setup.cfg", CandidateKind.METADATA),
        ("PKG-INFO", CandidateKind.METADATA),
        ("license.py", None),
        ("src/LicenseUtils.java", None),
        ("licenses/__init__.py", None),
        ("main.c", None),
        ("README.py", None),
    ],
)
def test_candidate_kind(path, kind):
    assert candidate_kind(path) == kind


def test_readme_license_section_markdown_and_rst():
    md = "# Tool\n\nDoes things.\n\n## Install\n\npip install x\n\n## License\n\nMIT, see LICENSE.\n\n## Credits\n\nMe"
    assert readme_license_section(md) == "MIT, see LICENSE."
    rst = "Tool\n====\n\nIntro.\n\nLicensing\n---------\n\nApache License 2.0.\n\nAuthors\n-------\n\nUs\n"
    assert readme_license_section(rst) == "Apache License 2.0."
    assert readme_license_section("# Tool\n\nNo such section.\n") is None
    usage = "# Tool\n\n## License expressions\n\nParse `GPL-2.0-or-later WITH Classpath-exception-2.0`.\n"
    assert readme_license_section(usage) is None  # a section about licenses, not the project's license
    assert readme_license_section("## 📝 Copyright & License\n\nBSD-3-Clause\n") == "BSD-3-Clause"


def test_declared_licenses_of_each_metadata_format():
    pyproject = '[project]\nname="x"\nlicense = "MIT OR Apache-2.0"\nclassifiers = ["License :: OSI Approved :: MIT License", "Topic :: Utilities"]\n'  # noqa: E501
    assert [(d.field, d.value) for d in declared_licenses("pyproject.toml", pyproject)] == [
        ("project.license", "MIT OR Apache-2.0"),
        ("project.classifiers", "License :: OSI Approved :: MIT License"),
    ]
    assert declared_licenses("pyproject.toml", '[project]\nlicense = {file = "LICENSE"}\n') == []
    assert declared_licenses("pyproject.toml", '[project]\nlicense = {text = "BSD"}\n')[0].value == "BSD"
    cfg = "[metadata]\nname = x\nlicense = BSD-3-Clause\nclassifiers =\n    License :: OSI Approved :: BSD License\n"
    assert [d.value for d in declared_licenses("setup.cfg", cfg)] == [
        "BSD-3-Clause",
        "License :: OSI Approved :: BSD License",
    ]
    assert declared_licenses("package.json", '{"license": "ISC"}')[0].value == "ISC"
    assert declared_licenses("package.json", '{"licenses": [{"type": "MIT"}, {"type": "GPL-2.0"}]}')[1].value == (
        "GPL-2.0"
    )
    unlicensed = declared_licenses("package.json", '{"license": "UNLICENSED"}')[0]
    assert unlicensed.expression == "proprietary-license"  # npm: no permission, not the Unlicense
    pointer = declared_licenses("package.json", '{"license": "SEE LICENSE IN LICENSE.txt"}')
    assert [d.expression for d in pointer] == ["unknown-license-reference"]  # a reference: the file decides
    assert declared_licenses("Cargo.toml", '[package]\nlicense = "MIT/Apache-2.0"\n')[0].value == "MIT OR Apache-2.0"
    pkg_info = "Metadata-Version: 2.4\nName: x\nLicense-Expression: BSD-3-Clause\nClassifier: License :: OSI Approved :: MIT License\n\nbody"  # noqa: E501
    assert [d.value for d in declared_licenses("PKG-INFO", pkg_info)] == ["BSD-3-Clause"]  # PEP 639 wins
    legacy = "Metadata-Version: 2.1\nName: x\nLicense: UNKNOWN\nClassifier: License :: OSI Approved :: MIT License\n"
    assert [d.value for d in declared_licenses("PKG-INFO", legacy)] == ["License :: OSI Approved :: MIT License"]


@pytest.mark.parametrize(
    ("path", "text"),
    [("pyproject.toml", "[project\nlicense="), ("package.json", "{not json"), ("Cargo.toml", "= ="),
     ("package.json", "[1, 2]")],
)  # fmt: skip
def test_malformed_metadata_is_an_error_not_an_absent_license(path, text):
    with pytest.raises(MetadataError):
        declared_licenses(path, text)
