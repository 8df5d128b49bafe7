"""Web (Common Crawl) curation: readers, extraction, filters, dedup, routing."""
