-- Lineage of each final checkpoint (those the recipe declares final; without a recipe, those no other checkpoint
-- was made from): every artifact it descends from, and how many steps away
WITH RECURSIVE declared AS (
    SELECT m.id, m.path FROM manifests m JOIN final_artifacts f ON f.path = m.path WHERE m.kind = 'checkpoint'
),
undeclared AS (
    SELECT id, path FROM manifests
    WHERE kind = 'checkpoint' AND (SELECT count(*) FROM final_artifacts) = 0
      AND id NOT IN (
          SELECT i.current_manifest_id FROM manifest_inputs i JOIN manifests m ON m.id = i.manifest_id
          WHERE m.kind = 'checkpoint' AND i.current_manifest_id IS NOT NULL)
),
finals AS (SELECT * FROM declared UNION ALL SELECT * FROM undeclared),
walk(checkpoint, id, hops) AS (
    SELECT path, id, 0 FROM finals
    UNION
    SELECT w.checkpoint, i.current_manifest_id, w.hops + 1
    FROM walk w JOIN manifest_inputs i ON i.manifest_id = w.id
    WHERE i.current_manifest_id IS NOT NULL AND w.hops < 64
)
SELECT w.checkpoint, m.kind, m.name, m.path, min(w.hops) AS hops, any_value(m.documents) AS documents,
       any_value(m.tokens) AS tokens
FROM walk w JOIN manifests m ON m.id = w.id
WHERE w.hops > 0
GROUP BY w.checkpoint, m.kind, m.name, m.path
ORDER BY w.checkpoint, hops, m.path;
