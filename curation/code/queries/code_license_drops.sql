-- Code license drops: why files were not kept, by reason, license source and expression
SELECT reason, scores->>'source' AS license_source, scores->>'spdx' AS license_spdx, count(*) AS files,
       any_value(doc_id) AS example
FROM decisions
WHERE step = 'code_license' AND NOT kept
GROUP BY ALL
ORDER BY files DESC
LIMIT 50;
