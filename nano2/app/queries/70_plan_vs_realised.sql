-- Plan vs realised tokens: per training run, phase and source, what the run read against what its plan said
WITH realised AS (
  SELECT name AS run, path,
         json_extract_string(extra, '$.plan') AS plan_file_name,
         unnest(from_json(json_extract(extra, '$.realised'),
                '[{"phase": "VARCHAR", "source": "VARCHAR", "sequences": "BIGINT", "tokens": "BIGINT"}]'),
                recursive := true)
  FROM manifests
  WHERE kind = 'checkpoint' AND json_extract(extra, '$.realised') IS NOT NULL
)
SELECT r.run, r.phase, r.source, p.sequences AS planned_sequences, r.sequences AS realised_sequences,
       p.tokens AS planned_tokens, r.tokens AS realised_tokens, r.tokens - p.tokens AS difference,
       CASE
         WHEN p.tokens IS NULL THEN 'not in the plan file'
         WHEN r.tokens = p.tokens THEN 'ok'
         ELSE 'MISMATCH'
       END AS status
FROM realised r
LEFT JOIN plan_phases p
  ON p.plan_file = (CASE WHEN r.path = '.' THEN '' ELSE r.path || '/' END) || r.plan_file_name
 AND p.phase = r.phase AND p.source = r.source
ORDER BY r.run, p.phase_index, r.source;
