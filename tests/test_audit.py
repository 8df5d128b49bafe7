"""`nano2 audit` on a data root the test builds: documents, decisions, a plan, an orphan file."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nano2.audit import Audit
from nano2.manifest import write_manifest
from tests.conftest import SPECS

WEB = {"high": [(f"h{i}", 3000) for i in range(15)], "medium": [(f"m{i}", 5000) for i in range(25)]}
DROPS = [("d0", "url_filter", "banned_word"), ("d1", "url_filter", "banned_word"), ("d2", "gopher", "too_short")]


def _docs_table(docs):
    return pa.table(
        {
            "text": [f"document {doc_id} " * 5 for doc_id, _ in docs],
            "id": [doc_id for doc_id, _ in docs],
            "metadata": [{"token_count": n, "url": f"https://example.org/{doc_id}"} for doc_id, n in docs],
        }
    )


def _write_jsonl(path: Path, docs, gz=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(
        json.dumps({"text": f"text of {d}", "id": d, "metadata": {"token_count": n}}) + "\n" for d, n in docs
    )
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(lines)
    else:
        path.write_text(lines)


def build_root(root: Path, cli) -> Path:
    web = root / "curated" / "web"
    by_level = {}
    for level, docs in WEB.items():
        (web / f"level={level}").mkdir(parents=True)
        pq.write_table(_docs_table(docs), web / f"level={level}" / "part-00000.parquet")
        by_level[level] = {"documents": len(docs), "tokens": sum(n for _, n in docs)}
    (web / "decisions").mkdir()
    kept = [(d, "url_filter", True, None) for level in WEB.values() for d, _ in level]
    rows = kept + [(d, step, False, reason) for d, step, reason in DROPS] + [("d2", "url_filter", True, None)]
    pq.write_table(
        pa.table(
            {
                "doc_id": [r[0] for r in rows],
                "step": [r[1] for r in rows],
                "kept": [r[2] for r in rows],
                "reason": [r[3] for r in rows],
                "scores": [{"quality": 0.5} for _ in rows],
            }
        ),
        web / "decisions" / "part-00000.parquet",
    )
    write_manifest(
        web,
        kind="documents",
        name="web",
        command="test",
        stats={
            "documents": sum(v["documents"] for v in by_level.values()),
            "tokens": sum(v["tokens"] for v in by_level.values()),
            "by": {"level": by_level},
        },
    )
    for rel, docs, gz in (
        ("synthetic/rephrase", [(f"r{i}", 4000) for i in range(10)], True),
        ("curated/code", [(f"c{i}", 4000) for i in range(10)], False),
        ("synthetic/reasoning", [(f"s{i}", 2000) for i in range(10)], False),
    ):
        _write_jsonl(root / rel / ("part-0.jsonl.gz" if gz else "part-0.jsonl"), docs, gz=gz)
        write_manifest(
            root / rel,
            kind="documents",
            name=rel.split("/")[-1],
            command="test",
            stats={"documents": len(docs), "tokens": sum(n for _, n in docs)},
        )
    _write_jsonl(root / "stray" / "loose.jsonl", [("x", 1)])
    result = cli("mix", "plan", SPECS / "tiny.yaml", "-o", root / "plans" / "tiny" / "plan.json", "--data-root", root)
    assert result.code == 0, result.err
    return root


@pytest.fixture
def root(tmp_path, cli):
    return build_root(tmp_path / "data", cli)


def test_views_exist(root):
    db = Audit(root)
    tables = {r[0] for r in db.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"manifests", "manifest_inputs", "manifest_stats", "documents", "decisions", "plan_phases",
            "plan_sources", "orphan_files", "audit_warnings"} <= tables  # fmt: skip
    assert db.con.execute("SELECT count(*) FROM manifests").fetchall()[0][0] == 5
    assert db.con.execute("SELECT count(*) FROM audit_warnings").fetchall()[0][0] == 0


def test_tokens_by_source(root):
    db = Audit(root)
    got = dict(db.query("SELECT source, sum(tokens) FROM documents GROUP BY source").fetchall())
    assert got == {
        "web/level=high": 45_000,
        "web/level=medium": 125_000,
        "rephrase": 40_000,
        "code": 40_000,
        "reasoning": 20_000,
    }
    # and the documents agree with what the manifests claim
    claimed = dict(db.query("SELECT name, tokens FROM manifests WHERE kind = 'documents'").fetchall())
    assert claimed["web"] == got["web/level=high"] + got["web/level=medium"]


def test_drop_reasons_by_step(root):
    db = Audit(root)
    sql = (db.saved_queries()["30_drop_reasons"]).read_text()
    rows = db.query(sql).fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [("gopher", "too_short", 1), ("url_filter", "banned_word", 2)]


def test_plan_vs_available(root):
    db = Audit(root)
    saved = db.saved_queries()["40_plan_vs_available"].read_text().rstrip().rstrip(";")
    rows = {
        r[0]: r for r in db.query(f"SELECT source, available_tokens, planned_tokens, status FROM ({saved})").fetchall()
    }
    assert rows["crawl-high"][1] == 45_000 and rows["crawl-medium"][1] == 125_000
    assert all(r[3] == "ok" for r in rows.values())
    planned = db.con.execute("SELECT sum(tokens) FROM plan_phases").fetchall()[0][0]
    assert planned == db.con.execute("SELECT sum(planned_tokens) FROM plan_sources").fetchall()[0][0]
    # the plan's inputs are the spec (by hash) and the four source manifests (by id), all current
    statuses = db.query("SELECT status, count(*) FROM manifest_inputs GROUP BY status").fetchall()
    assert dict(statuses) == {"ok": 5, "content hash (not checked)": 1}


def test_rewritten_source_shows_as_stale(root):
    write_manifest(root / "curated" / "code", kind="documents", name="code", command="again", stats={"tokens": 1})
    db = Audit(root)
    status = db.con.execute("SELECT available_now FROM plan_sources WHERE source = 'code'").fetchall()[0][0]
    assert status == 1
    stale = db.con.execute("SELECT count(*) FROM manifest_inputs WHERE status LIKE 'stale%'").fetchall()[0][0]
    assert stale == 1


def test_orphans_and_warnings(root):
    (root / "curated" / "web" / "broken.parquet").write_bytes(b"not parquet")
    db = Audit(root)
    assert db.query("SELECT path FROM orphan_files").fetchall() == [("stray/loose.jsonl",)]
    warnings = db.query(db.saved_queries()["50_lineage_warnings"].read_text()).fetchall()
    kinds = {w[0] for w in warnings}
    assert "orphan file" in kinds and "file" in kinds


def test_cli_summary(root, cli):
    result = cli("audit", root)
    assert result.code == 0, result.err
    for title in ("Artifacts", "Documents and tokens by source", "Drop reasons by step", "Plan vs available"):
        assert title in result.out
    assert "banned_word" in result.out and "crawl-high" in result.out


def test_cli_sql_formats(root, cli, tmp_path):
    sql = "SELECT source, sum(tokens) AS tokens FROM documents GROUP BY source ORDER BY source"
    csv_out = cli("audit", root, "--sql", sql, "--format", "csv")
    assert csv_out.code == 0 and csv_out.out.splitlines()[0] == "source,tokens"
    assert "code,40000" in csv_out.out
    js = cli("audit", root, "--sql", sql, "--format", "json")
    assert {r["source"]: r["tokens"] for r in json.loads(js.out)}["reasoning"] == 20000
    out = tmp_path / "res.parquet"
    assert cli("audit", root, "--sql", sql, "--format", "parquet", "-o", out).code == 0
    assert duckdb.sql(f"SELECT count(*) FROM '{out}'").fetchall()[0][0] == 5
    table = cli("audit", root, "--sql", sql)
    assert "40,000" in table.out


def test_cli_saved_and_user_queries(root, cli):
    qdir = root / ".nano2" / "queries"
    qdir.mkdir(parents=True)
    (qdir / "mine.sql").write_text("-- My query\nSELECT count(*) AS n FROM decisions WHERE kept;\n")
    listed = cli("audit", root, "--list-queries")
    assert "mine" in listed.out and "My query" in listed.out and "30_drop_reasons" in listed.out
    assert "│ 41" in cli("audit", root, "-q", "mine").out.replace(" ", " ")


def test_cli_bad_sql_is_one_line(root, cli):
    result = cli("audit", root, "--sql", "SELECT nope FROM documents")
    assert result.code == 2 and result.err.startswith("error: query failed") and len(result.err.splitlines()) == 1


def test_empty_root(tmp_path, cli):
    result = cli("audit", tmp_path)
    assert result.code == 0 and "0 artifacts" in result.out
