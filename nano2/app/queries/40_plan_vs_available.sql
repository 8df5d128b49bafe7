-- Plan vs available tokens per source: what each plan artifact reads, what may be read, and what is there now
SELECT plan_id, plan, plan_file, source, origin, available_tokens, planned_tokens,
       round(epochs, 4) AS epochs, max_epochs,
       CAST(floor(available_tokens * max_epochs) AS BIGINT) - planned_tokens AS headroom_tokens,
       available_now,
       CASE
         WHEN origin = 'declared' THEN 'declared'
         WHEN available_now IS NULL THEN 'source missing now'
         WHEN available_now <> available_tokens THEN 'changed since planned'
         ELSE 'ok'
       END AS status
FROM plan_sources
ORDER BY plan_file, source;
