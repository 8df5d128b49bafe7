"""The application: the `nano2` CLI, the recipe runner (`nano2 run`), the report and the DuckDB audit.

It sits above every library package (curation, synthetic, mixtures, model, train, compress, evals, verify) and wires
them together; nothing below imports it (tests/test_architecture.py).
"""
