"""Header > nearest license file up the tree > package metadata, failing closed; pure (detections are given)."""

from __future__ import annotations

from curation.licenses.allowlist import load_allowlist
from curation.licenses.candidates import CandidateKind
from curation.licenses.detector import Detection
from curation.licenses.resolution import Evidence, RepositoryEvidence, decide, resolve_file

ALLOWLIST = load_allowlist()
NEUTRAL = ALLOWLIST.neutral
LICENSE, NOTICE, README, META = (
    CandidateKind.LICENSE, CandidateKind.NOTICE, CandidateKind.README, CandidateKind.METADATA,
)  # fmt: skip
NO_HEADER = Detection("none", None, "exact-head")


def lic(path: str, expression: str | None, kind: CandidateKind = LICENSE, status: str | None = None) -> Evidence:
    return Evidence(path, kind, status or ("license" if expression else "none"), expression)


def header(expression: str) -> Detection:
    return Detection("license", expression, "exact-head")


def outcome(evidence: list[Evidence], path: str, file_header: Detection = NO_HEADER):
    resolution = resolve_file(path, file_header, RepositoryEvidence(evidence).inherited(path), NEUTRAL)
    return decide(resolution, ALLOWLIST)


def test_gpl_file_inside_an_mit_repository_is_dropped():
    result = outcome([lic("LICENSE", "mit")], "src/gpl_part.c", header("gpl-2.0-plus"))
    assert not result.keep and result.reason == "license_not_permissive"
    assert result.resolution.source == "header" and result.blocking_keys == ("gpl-2.0-plus",)


def test_mit_header_inside_a_gpl_repository_is_dropped_but_an_spdx_declaration_stands_alone():
    notice = outcome([lic("COPYING", "gpl-3.0")], "lib/helper.py", header("mit"))
    assert not notice.keep and notice.resolution.expression == "mit AND gpl-3.0"
    declared = Detection("license", "mit", "exact-head", None, "declaration")
    spdx = outcome([lic("COPYING", "gpl-3.0")], "lib/helper.py", declared)
    assert spdx.keep and spdx.resolution.expression == "mit" and spdx.resolution.source == "header"


def test_file_without_header_takes_the_nearest_license_file():
    evidence = [lic("LICENSE", "mit"), lic("vendor-gpl/COPYING", "gpl-2.0")]
    assert outcome(evidence, "src/a/b.py").keep
    inner = outcome(evidence, "vendor-gpl/deep/x.c")
    assert not inner.keep and inner.resolution.source_paths == ("vendor-gpl/COPYING",)


def test_no_license_anywhere_is_dropped():
    result = outcome([lic("README.md", None, README)], "main.go")
    assert not result.keep and result.reason == "no_license" and result.resolution.source == "none"


def test_all_license_files_of_the_nearest_directory_count_together():
    result = outcome([lic("LICENSE", "mit"), lic("COPYING", "gpl-2.0")], "a.py")
    assert not result.keep and result.resolution.expression == "mit AND gpl-2.0"
    both_permissive = outcome([lic("LICENSE-MIT", "mit"), lic("LICENSE-APACHE", "apache-2.0")], "a.rs")
    assert both_permissive.keep


def test_unreadable_or_failed_license_files_block_instead_of_falling_back():
    root = lic("LICENSE", "mit")
    for status, reason in [
        ("timeout", "license_timeout"), ("error", "license_error"), ("too_large", "license_file_too_large"),
        ("binary", "license_file_binary"),
    ]:  # fmt: skip
        result = outcome([root, Evidence("sub/LICENSE", LICENSE, status, None)], "sub/x.py")
        assert not result.keep and result.reason == reason
        assert outcome([root, Evidence("sub/LICENSE", LICENSE, status, None)], "other/x.py").keep


def test_a_license_file_naming_no_known_license_blocks_but_an_empty_notice_does_not():
    custom = outcome([lic("LICENSE", "mit"), lic("sub/LICENSE", None)], "sub/x.py")
    assert not custom.keep and custom.reason == "license_unknown"
    notice = outcome([lic("LICENSE", "mit"), lic("sub/NOTICE", None, NOTICE)], "sub/x.py")
    assert notice.keep and notice.resolution.source_paths == ("LICENSE",)


def test_header_failures_drop_with_their_reason():
    for status, reason in (("timeout", "license_timeout"), ("error", "license_error")):
        result = outcome([lic("LICENSE", "mit")], "x.py", Detection(status, None, "exact-head", "boom"))
        assert not result.keep and result.reason == reason


def test_header_reference_defers_to_the_directory_and_a_named_license_adds_to_it():
    evidence = [lic("LICENSE", "gpl-2.0")]
    see_license = outcome(evidence, "x.py", header("unknown-license-reference"))
    assert not see_license.keep and see_license.resolution.expression == "gpl-2.0"
    both = outcome([lic("LICENSE", "apache-2.0")], "x.py", header("mit AND unknown-license-reference"))
    assert both.keep and both.resolution.expression == "mit AND apache-2.0"
    neutral_only = outcome([lic("LICENSE", "mit")], "x.py", header("warranty-disclaimer"))
    assert neutral_only.keep and neutral_only.resolution.source == "license_file"


def test_package_metadata_is_the_fallback_and_deeper_metadata_is_not_overridden():
    meta_only = outcome([lic("pyproject.toml", "bsd-new", META)], "pkg/mod.py")
    assert meta_only.keep and meta_only.resolution.source == "package_metadata"
    nested = [lic("LICENSE", "mit"), lic("packages/gplpkg/package.json", "gpl-3.0", META)]
    result = outcome(nested, "packages/gplpkg/index.js")
    assert not result.keep and result.resolution.expression == "mit AND gpl-3.0"
    assert outcome(nested, "packages/other/index.js").keep
    broken = outcome([lic("LICENSE", "mit"), Evidence("pkg/setup.cfg", META, "error", None)], "pkg/x.py")
    assert not broken.keep and broken.reason == "license_error"


def test_metadata_beside_license_files_says_how_they_combine():
    declared = lic("PKG-INFO", "gpl-3.0-plus OR mit", META)
    evidence = [lic("LICENSE.GPLv3", "gpl-3.0"), lic("LICENSE.MIT", "mit"), declared]
    result = outcome(evidence, "parser.py")
    assert result.keep and result.resolution.expression == "gpl-3.0-plus OR mit"
    unrelated = [lic("LICENSE", "gpl-3.0"), lic("PKG-INFO", "mit", META)]  # metadata claiming another license
    assert not outcome(unrelated, "parser.py").keep
    declares_more = [lic("LICENSE", "apache-2.0"), lic("PKG-INFO", "apache-2.0 AND other-copyleft", META)]
    more = outcome(declares_more, "tool.py")  # bundled copyleft declared by the package: not shown permissive
    assert not more.keep and more.resolution.expression == "apache-2.0 AND other-copyleft"
    agreeing = outcome([lic("LICENSE", "bsd-simplified"), lic("setup.cfg", "bsd-new", META)], "x.py")
    assert agreeing.keep and agreeing.resolution.expression == "bsd-simplified AND bsd-new"
    unparsable = outcome([lic("LICENSE", "mit"), Evidence("package.json", META, "error", None)], "x.js")
    assert unparsable.keep  # the license file is the evidence; a broken package.json beside it does not block


def test_readme_license_section_counts_only_where_there_is_no_license_file():
    readme_only = outcome([lic("README.md", "mit", README)], "a.py")
    assert readme_only.keep and readme_only.resolution.source_paths == ("README.md",)
    with_license = [lic("LICENSE", "apache-2.0"), lic("README.md", "apache-2.0 AND cc-by-nc-nd-3.0", README)]
    assert outcome(with_license, "a.py").keep  # the README talks about the book's license, not the code's


def test_reference_only_license_file_is_unknown_when_nothing_else_names_a_license():
    result = outcome([lic("LICENSE", "mit"), lic("sub/LICENSE", None, status="reference")], "sub/a.py")
    assert not result.keep and result.reason == "license_unknown"
    fine = outcome([lic("sub/LICENSE", None, status="reference"), lic("sub/COPYING", "isc")], "sub/a.py")
    assert fine.keep and fine.resolution.expression == "isc"
