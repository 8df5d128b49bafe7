-- Lineage warnings: stale or missing inputs, data no manifest owns, unreadable files, uncommitted code
SELECT 'input' AS what, artifact || ' <- ' || input_path AS item, status AS problem
FROM manifest_inputs WHERE status NOT IN ('ok', 'content hash (not checked)')
UNION ALL
SELECT 'orphan file', path, 'no manifest.json owns this file' FROM orphan_files
UNION ALL
SELECT 'file', what, warning FROM audit_warnings
UNION ALL
SELECT 'code', name || ' (' || path || ')', 'made from uncommitted code, diff ' || left(coalesce(diff_hash, '?'), 12)
FROM manifests WHERE dirty;
