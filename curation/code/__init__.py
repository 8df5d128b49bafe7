"""Permissive-license code curation (`nano2 curate code CONFIG`), the Nemotron Nano 2 code data recipe.

Repositories (directories, archives, The Stack-style tables, or installed distributions) -> one document per file
-> ScanCode license stage (curation.licenses) -> input, language and StarCoder heuristics filters -> exact and
MinHash dedup -> Parquet documents with license, language and blob hash, a decisions table for every drop, and a
manifest with tokens by language and license. See `pipeline` for the stages and `configs/code-tiny.yaml`.
"""
