-- Kept code tokens by license (documents whose metadata carries a resolved SPDX expression)
SELECT json_extract_string(metadata, '$.license_spdx') AS license, count(*) AS files, sum(tokens) AS tokens
FROM documents
WHERE json_extract_string(metadata, '$.license_spdx') IS NOT NULL
GROUP BY 1
ORDER BY tokens DESC NULLS LAST;
