-- Artifacts: every manifest under the root, what made it and what it holds
SELECT kind, name, path, documents, tokens, bytes, n_files AS files,
       coalesce(left(git_commit, 10), 'no git') || CASE WHEN dirty THEN '+dirty' ELSE '' END AS code,
       strftime(created_at, '%Y-%m-%d %H:%M') AS created
FROM manifests
ORDER BY path;
