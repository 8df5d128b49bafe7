-- Documents and tokens by source (read from the document files themselves)
SELECT source, count(*) AS documents, sum(tokens) AS tokens, count(tokens) AS docs_with_token_count,
       sum(length(text)) AS characters
FROM documents
GROUP BY source
ORDER BY tokens DESC NULLS LAST, documents DESC;
