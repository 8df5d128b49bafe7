-- Curated code: kept files and tokens by license (SPDX expression)
SELECT metadata->>'license_spdx' AS license_spdx, count(*) AS files, sum(tokens) AS tokens,
       round(100.0 * sum(tokens) / sum(sum(tokens)) OVER (), 2) AS pct_tokens
FROM documents
WHERE metadata->>'license_spdx' IS NOT NULL
GROUP BY 1
ORDER BY tokens DESC NULLS LAST, files DESC;
