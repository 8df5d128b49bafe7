"""License knowledge for code curation: ScanCode detection, the allow-list and the rules, fast and fail-closed.

- `allowlist`: the permissive allow-list data file (generated from ScanCode's categories + reviewed overrides).
- `policy`: AND/OR/WITH evaluation of license expressions against it.
- `detector`: ScanCode on in-memory text: the exact-matcher fast path for file heads, the full matcher for license
  files, package-metadata statements, deadlines, and failures as values.
- `candidates`: which files carry license information; package-metadata license fields.
- `resolution`: header > nearest license file up the tree > package metadata, with the fail-closed rules.
- `cache`: detections by git blob hash (memory, optional SQLite).
- `evaluate`: the real check of detection on ScanCode's labelled cases.

This package knows nothing of pipelines: the datatrove steps that apply it to code files are
`curation.code.license_stage`, and the check on whole repositories is `curation.code.license_check`.
"""
