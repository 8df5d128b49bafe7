-- Drop reasons by step: how many documents each step removed, and why
SELECT step, coalesce(reason, '(no reason given)') AS reason, count(*) AS dropped,
       round(100.0 * count(*) / any_value(step_total), 2) AS pct_of_step
FROM (SELECT *, count(*) OVER (PARTITION BY artifact_id, step) AS step_total FROM decisions)
WHERE NOT kept
GROUP BY step, reason
ORDER BY step, dropped DESC;
