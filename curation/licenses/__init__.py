"""License detection for code curation: ScanCode inside a datatrove pipeline, fast and fail-closed.

- `allowlist`: the permissive allow-list data file (generated from ScanCode's categories + reviewed overrides).
- `policy`: AND/OR/WITH evaluation of license expressions against it.
- `detector`: ScanCode on in-memory text: the exact-matcher fast path for file heads, the full matcher for license
  files, deadlines, and failures as values.
- `candidates`: which files carry license information; package-metadata license fields.
- `resolution`: header > nearest license file up the tree > package metadata, with the fail-closed rules.
- `cache`: detections by git blob hash (memory, optional SQLite).
- `steps`: the two datatrove steps; `evaluate`: the real checks (labelled ScanCode cases, site-packages).
"""
