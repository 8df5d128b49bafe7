-- Curated code: kept files and tokens by language, and where their licenses came from
SELECT metadata->>'code_language' AS language, count(*) AS files, sum(tokens) AS tokens,
       count(*) FILTER (WHERE metadata->>'license_source' = 'header') AS license_from_header,
       count(*) FILTER (WHERE metadata->>'license_source' = 'license_file') AS license_from_license_file,
       count(*) FILTER (WHERE metadata->>'license_source' = 'package_metadata') AS license_from_metadata
FROM documents
WHERE metadata->>'license_spdx' IS NOT NULL
GROUP BY 1
ORDER BY tokens DESC NULLS LAST;
