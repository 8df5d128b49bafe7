"""The whole recipe end to end (recipes/micro.yaml: every stage of tiny.yaml, cut to seconds), then its cache,
its report and the audit questions a user asks of a run."""

from __future__ import annotations

import json
from pathlib import Path

import polars
import pytest
import yaml

from nano2.app.audit import Audit
from nano2.app.recipe import REPO, Runner, load_recipe
from nano2.contracts.documents import DOCUMENT_SCHEMA, SUBSET_KEY

MICRO = REPO / "recipes" / "micro.yaml"
TINY = REPO / "recipes" / "tiny.yaml"


@pytest.fixture(scope="module")
def micro_run(shared_data, tmp_path_factory) -> tuple[Runner, list]:
    run_dir = tmp_path_factory.mktemp("micro") / "run"
    runner = Runner(load_recipe(MICRO), MICRO, run_dir=run_dir)
    results = runner.run(jobs=2)  # as `make run` on a 2-core machine: independent stages side by side
    return runner, results


@pytest.mark.realdata
def test_micro_recipe_runs_every_stage(micro_run):
    runner, results = micro_run
    assert [r.status for r in results] == ["ran"] * len(runner.recipe.stages), [(r.name, r.note) for r in results]
    summary = json.loads((runner.run_dir / ".recipe" / "last_run.json").read_text())
    assert summary["failed"] is None and summary["wall_seconds"] > 0
    child = json.loads((runner.run_dir / "compress" / "child" / "manifest.json").read_text())
    assert child["kind"] == "checkpoint"
    # Each evaluation's model, read from its manifest (inputs recorded relative to the run dir), is the checkpoint
    # the recipe declares final for it: the distilled child, never the pruned checkpoint written before distilling.
    finals = json.loads((runner.run_dir / ".recipe" / "finals.json").read_text())["finals"]
    assert finals == ["parent/final", "compress/distill"]
    for evaluation, expected in (("parent", "parent/final"), ("child", "compress/distill"),
                                 ("budget", "compress/distill"), ("throughput", "compress/distill")):  # fmt: skip
        manifest = json.loads((runner.run_dir / "evals" / evaluation / "manifest.json").read_text())
        models = {i["path"] for i in manifest["inputs"] if i["manifest_id"]}
        assert expected in models and "compress/child" not in models, (evaluation, models)
    for run in ("parent", "child"):
        summary = json.loads(next((runner.run_dir / "evals" / run).rglob("summary.json")).read_text())
        assert {b["name"] for b in summary["benchmarks"]} >= {"gsm8k", "humaneval", "ifeval"} or summary["benchmarks"]


@pytest.mark.realdata
def test_second_run_skips_every_stage(micro_run):
    runner, _ = micro_run
    again = Runner(load_recipe(MICRO), MICRO, run_dir=runner.run_dir).run()
    assert {r.status for r in again} == {"skipped"}


@pytest.mark.realdata
def test_editing_a_mixture_weight_reruns_only_what_depends_on_it(micro_run, tmp_path):
    runner, _ = micro_run
    recipe = yaml.safe_load(MICRO.read_text())
    recipe["extends"] = str(TINY)
    recipe["patch"]["plan"]["overrides"]["phases.2.weights"] = {
        "crawl-medium": 0.05, "crawl-high": 0.35, "multilingual": 0.10, "syn-crawl-high": 0.05, "code": 0.20,
        "reasoning-sft": 0.25,
    }  # fmt: skip
    edited = tmp_path / "micro-edited.yaml"
    edited.write_text(yaml.safe_dump(recipe, sort_keys=False))
    would = Runner(load_recipe(edited), edited, run_dir=runner.run_dir).would_run()
    upstream = {"curate-web", "curate-code", "tokenizer", "teacher-data", "teacher-init", "teacher", "synthesize",
                "tokenize", "plan-long"}  # fmt: skip
    assert {name for name, run in would.items() if not run} == upstream
    assert would["plan"] and would["pretrain"] and would["distill"] and would["report"]


@pytest.mark.realdata
def test_audit_answers_the_run_questions(micro_run):
    runner, _ = micro_run
    audit = Audit(runner.run_dir)
    saved = audit.saved_queries()
    realised = audit.query(saved["70_plan_vs_realised"].read_text()).fetchall()
    assert realised, "no planned-vs-realised rows"
    columns = audit.query(saved["70_plan_vs_realised"].read_text()).columns
    status = columns.index("status")
    assert {row[status] for row in realised} == {"ok"}
    drops = audit.query(saved["30_drop_reasons"].read_text()).fetchall()
    assert {row[0] for row in drops} >= {"heuristics", "code_license"}
    lineage = audit.query(saved["80_checkpoint_lineage"].read_text()).fetchall()
    paths = {row[3] for row in lineage}
    assert any(p.startswith("data/curated/web") for p in paths), paths
    assert any(p.startswith("data/curated/code") for p in paths), paths
    # the finals are the two the recipe declares (not NAS candidates nor intermediate checkpoints), and the
    # distilled child descends from the parent
    assert {row[0] for row in lineage} == {"parent/final", "compress/distill"}
    assert ("compress/distill", "parent/final") in {(row[0], row[3]) for row in lineage}
    plan_rows = audit.query(saved["40_plan_vs_available"].read_text())
    status = plan_rows.columns.index("status")
    rows = plan_rows.fetchall()
    assert rows and {row[status] for row in rows} <= {"ok", "declared"}, rows  # no false "source missing now"
    plan_ids = {row[0] for row in rows}
    assert len(plan_ids) == 2  # plan and plan-long, once each (not once per copy of plan.json in checkpoints)
    # training recorded which documents it read: the runs add up to what the manifest says per phase and source
    pretrain = json.loads((runner.run_dir / "parent" / "pretrain" / "manifest.json").read_text())
    read = pretrain["extra"]["read"]
    assert read and all(r["documents"] == sum(b[3] - b[2] + 1 for b in r["document_runs"]) for r in read)
    assert all(not Path(shard).is_absolute() for r in read for shard in r["shards"])


@pytest.mark.realdata
def test_a_copied_run_dir_audits_the_same(micro_run, tmp_path):
    """Manifests record paths relative to the run dir: a copy elsewhere gives the same lineage rows."""
    import shutil

    runner, _ = micro_run
    copy = tmp_path / "moved" / "run"
    shutil.copytree(runner.run_dir, copy, symlinks=True)
    query = Audit(runner.run_dir).saved_queries()["80_checkpoint_lineage"].read_text()
    original = Audit(runner.run_dir).query(query).fetchall()
    moved = Audit(copy).query(query).fetchall()
    assert original and moved == original
    unresolved = "SELECT artifact, input_path FROM manifest_inputs WHERE current_manifest_id IS NULL ORDER BY 1, 2"
    assert Audit(copy).query(unresolved).fetchall() == Audit(runner.run_dir).query(unresolved).fetchall()


@pytest.mark.realdata
def test_every_document_folder_reads_with_one_schema(micro_run):
    """One hive-partitioned polars scan reads every curated and synthetic document folder of the run, with the
    document contract's schema, and its token counts equal what the manifests claim and the audit reads."""
    runner, _ = micro_run
    data = runner.run_dir / "data"
    frame = polars.scan_parquet(data / "**" / "*.parquet", hive_partitioning=True).collect()
    assert frame.columns[:5] == DOCUMENT_SCHEMA.names
    assert len(frame) > 0
    folders = {
        "/".join(part for part in p.parent.relative_to(data).parts if not part.startswith(f"{SUBSET_KEY}="))
        for p in data.rglob("*.parquet")
    }
    assert {"curated/web", "curated/code", "curated/multilingual"} <= folders, folders
    with_documents = {
        str(m.parent.relative_to(data))
        for m in data.rglob("manifest.json")
        if json.loads(m.read_text())["kind"] == "documents" and json.loads(m.read_text())["stats"]["documents"]
    }
    assert with_documents <= folders, with_documents - folders
    assert not list(data.rglob("decisions")), "drop decisions must live beside data, not inside it"
    audit = Audit(runner.run_dir)
    by_artifact = dict(audit.query("SELECT artifact_id, sum(tokens) FROM documents GROUP BY artifact_id").fetchall())
    claimed = dict(
        audit.query("SELECT id, tokens FROM manifests WHERE kind = 'documents' AND path LIKE 'data/%'").fetchall()
    )
    assert claimed and all(by_artifact.get(i, 0) == (t or 0) for i, t in claimed.items()), (by_artifact, claimed)
    assert frame["token_count"].sum() == sum(t or 0 for t in claimed.values())


@pytest.mark.realdata
def test_report_of_the_run(micro_run):
    runner, _ = micro_run
    md = (runner.run_dir / "report" / "report.md").read_text()
    for title in ("Stages and wall time", "Data funnel", "License mix", "Mixture per phase", "Training curves",
                  "Pruning", "Evaluations", "Lineage"):  # fmt: skip
        assert f"## {title}" in md
    assert "_no " not in md.split("## Audit warnings")[0], "a section of the report found nothing in the run"
    html = (runner.run_dir / "report" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 6
    assert Path(runner.run_dir / "report" / "figures").is_dir()
