"""`nano2 audit` on a data root the test builds: documents, decisions, a plan, an orphan file."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nano2.app.audit import Audit
from nano2.contracts.chat import CHAT_SCHEMA, chat_record, encode_metadata
from nano2.contracts.documents import DOCUMENT_SCHEMA, SUBSET_KEY, Meta, document_record
from nano2.contracts.shards import DECISIONS_SCHEMA, decisions_dir, shard_name, subset_dir
from nano2.manifest import write_manifest
from tests.conftest import SPECS

WEB = {"high": [(f"h{i}", 3000) for i in range(15)], "medium": [(f"m{i}", 5000) for i in range(25)]}
DROPS = [("d0", "url_filter", "banned_word"), ("d1", "url_filter", "banned_word"), ("d2", "gopher", "too_short")]


def _docs_table(docs, subset: str | None = None):
    """Documents of the contract (`nano2.contracts.documents`)."""
    rows = [
        document_record(
            doc_id=doc_id,
            text=f"document {doc_id} " * 5,
            source="test",
            token_count=n,
            metadata={Meta.URL: f"https://example.org/{doc_id}", Meta.LEVEL: subset},
        )
        for doc_id, n in docs
    ]
    return pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)


def _write_jsonl(path: Path, docs):
    """Documents of the contract as JSON lines (the audit reads both formats)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in _docs_table(docs).to_pylist()))


def _write_chat(path: Path, rows):
    """Chat rows of the contract (`nano2.contracts.chat`): token counts in the metadata JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [
        encode_metadata(
            chat_record(
                row_id=row_id,
                messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                reasoning=False,
                task="reasoning",
                source_id=row_id,
                prompt_version="1",
                model="test",
                sampling=None,
                metadata={},
                text=f"chat {row_id}",
            ),
            token_count=n,
        )
        for row_id, n in rows
    ]
    pq.write_table(pa.Table.from_pylist(records, schema=CHAT_SCHEMA), path)


def build_root(root: Path, cli) -> Path:
    web = root / "curated" / "web"
    by_subset = {}
    for level, docs in WEB.items():
        subset_dir(web, level).mkdir(parents=True)
        pq.write_table(_docs_table(docs, level), subset_dir(web, level) / shard_name(0))
        by_subset[level] = {"documents": len(docs), "tokens": sum(n for _, n in docs)}
    decisions = decisions_dir(web)
    kept = [(d, "url_filter", True, None) for level in WEB.values() for d, _ in level]
    rows = kept + [(d, step, False, reason) for d, step, reason in DROPS] + [("d2", "url_filter", True, None)]
    (decisions / "url_filter").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(
            [{"doc_id": r[0], "url": None, "step": r[1], "kept": r[2], "reason": r[3], "scores": "{}"} for r in rows],
            schema=DECISIONS_SCHEMA,
        ),
        decisions / "url_filter" / shard_name(0),
    )
    write_manifest(decisions, kind="decisions", name="web-decisions", command="test")
    write_manifest(
        web,
        kind="documents",
        name="web",
        command="test",
        stats={
            "documents": sum(v["documents"] for v in by_subset.values()),
            "tokens": sum(v["tokens"] for v in by_subset.values()),
            "by": {SUBSET_KEY: by_subset},
        },
    )
    rephrase = [(f"r{i}", 4000) for i in range(10)]
    (root / "synthetic" / "rephrase").mkdir(parents=True)
    pq.write_table(_docs_table(rephrase), root / "synthetic" / "rephrase" / shard_name(0))
    code = [(f"c{i}", 4000) for i in range(10)]
    _write_jsonl(root / "curated" / "code" / "00000.jsonl", code)
    reasoning = [(f"s{i}", 2000) for i in range(10)]
    _write_chat(root / "chat" / "synthetic" / "reasoning" / shard_name(0), reasoning)
    for rel, docs, kind in (
        ("synthetic/rephrase", rephrase, "documents"),
        ("curated/code", code, "documents"),
        ("chat/synthetic/reasoning", reasoning, "chat"),
    ):
        write_manifest(
            root / rel,
            kind=kind,
            name=rel.split("/")[-1],
            command="test",
            stats={"documents": len(docs), "tokens": sum(n for _, n in docs)},
        )
    (root / "stray").mkdir()
    (root / "stray" / "loose.jsonl").write_text('{"text": "x"}\n')
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
    assert db.con.execute("SELECT count(*) FROM manifests").fetchall()[0][0] == 6
    assert db.con.execute("SELECT count(*) FROM audit_warnings").fetchall()[0][0] == 0


def test_tokens_by_source(root):
    db = Audit(root)
    got = dict(db.query("SELECT source, sum(tokens) FROM documents GROUP BY source").fetchall())
    assert got == {
        "web/subset=high": 45_000,
        "web/subset=medium": 125_000,
        "rephrase": 40_000,
        "code": 40_000,
        "reasoning": 20_000,
    }
    # and the documents agree with what the manifests claim
    claimed = dict(db.query("SELECT name, tokens FROM manifests WHERE kind = 'documents'").fetchall())
    assert claimed["web"] == got["web/subset=high"] + got["web/subset=medium"]


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


def test_a_folder_breaking_the_document_contract_is_a_warning_not_a_guess(root):
    """The manifest's kind names the contract; a documents folder with another layout is reported, never sniffed."""
    legacy = root / "curated" / "legacy"
    legacy.mkdir(parents=True)
    pq.write_table(pa.table({"text": ["x"], "metadata": [{"token_count": 5}]}), legacy / shard_name(0))
    write_manifest(legacy, kind="documents", name="legacy", command="test")
    db = Audit(root)
    warnings = dict(db.query("SELECT what, warning FROM audit_warnings").fetchall())
    assert any("legacy" in what and "breaks the documents contract" in w for what, w in warnings.items())
    assert db.query("SELECT count(*) FROM documents WHERE artifact = 'legacy'").fetchall()[0][0] == 0
