"""`nano2 curate`: each pipeline package registers its own commands here (web, code, train-quality, ...)."""

from __future__ import annotations

import importlib
import importlib.util

import typer

app = typer.Typer(help="Curation pipelines on datatrove: web, math, multilingual, permissive-license code.")

# modules with a `register(app)` function; each adds its commands when it exists
PIPELINE_CLIS = ("curation.web.cli", "curation.code.cli", "curation.quality.cli")


@app.callback()
def _curate() -> None:
    """Run a curation pipeline from its YAML config; outputs carry manifests and decisions tables."""


for _module in PIPELINE_CLIS:
    if importlib.util.find_spec(_module.rsplit(".", 1)[0]) is not None and importlib.util.find_spec(_module):
        importlib.import_module(_module).register(app)
