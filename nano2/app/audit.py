"""`nano2 audit`: one in-memory DuckDB over a data root, with a view for every kind of thing the recipe writes.

Tables and views (all queryable with `--sql`):
- `manifests`: one row per manifest.json (kind, name, path, producer, code version, counts).
- `manifest_inputs`: the inputs each manifest records, and whether they still match what is at that path now.
- `manifest_stats`: the grouped counts of each manifest (grouping, value, documents, tokens, bytes).
- `documents`: every Parquet/JSONL document set (artifact, partition, source, file, doc_id, text, tokens, metadata).
- `decisions`: every decisions table (artifact, file, doc_id, step, kept, reason, scores).
- `plan_phases`, `plan_sources`: every compiled mixture plan, with available tokens now at each source's path.
- `orphan_files`: data files that no manifest owns (a break in lineage).
- `audit_warnings`: files that could not be read as what they looked like, and why.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import duckdb

from nano2.contracts.chat import CHAT_SCHEMA
from nano2.contracts.documents import DOCUMENT_SCHEMA, METADATA, TOKEN_COUNT
from nano2.contracts.shards import RUN_STATE_DIR
from nano2.errors import Nano2Error
from nano2.manifest import MANIFEST_NAME, ArtifactKind, Manifest, read_manifest, resolve_recorded, run_root_of

DOCUMENT_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".jsonl.zst", ".ndjson")
DATA_SUFFIXES = (*DOCUMENT_SUFFIXES, ".json", ".bin", ".idx", ".safetensors", ".arrow")
USER_QUERY_DIR = Path(".nano2") / "queries"
# the kinds whose files are rows the audit reads (documents, chat rows, drop decisions); the rest are models, logs
ROW_KINDS = (ArtifactKind.DOCUMENTS, ArtifactKind.CHAT, ArtifactKind.PREFERENCE, ArtifactKind.DECISIONS)
DOCUMENT_COLUMNS = {
    "artifact_id": "VARCHAR", "artifact": "VARCHAR", "partition": "VARCHAR", "source": "VARCHAR", "file": "VARCHAR",
    "doc_id": "VARCHAR", "text": "VARCHAR", "tokens": "BIGINT", "metadata": "JSON",
}  # fmt: skip
DECISION_COLUMNS = {
    "artifact_id": "VARCHAR", "artifact": "VARCHAR", "file": "VARCHAR", "doc_id": "VARCHAR", "step": "VARCHAR",
    "kept": "BOOLEAN", "reason": "VARCHAR", "scores": "JSON",
}  # fmt: skip


def _suffix(path: Path) -> str | None:
    name = path.name
    for suffix in (*DATA_SUFFIXES,):
        if name.endswith(suffix):
            return suffix
    return None


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _as_json(column: str, column_type: str | None) -> str:
    """A JSON expression for a column that may be a struct/map, JSON text, or missing."""
    if not column_type:
        return "NULL::JSON"
    if column_type in ("VARCHAR", "JSON"):
        return f"TRY_CAST({column} AS JSON)"
    return f"to_json({column})"


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join(_sql_str(p) for p in paths) + "]"


@dataclass
class Artifact:
    path: Path
    rel: str
    manifest: Manifest
    documents: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    decisions: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    plans: list[str] = field(default_factory=list)


def _reader(fmt: str, files: list[str]) -> str:
    if fmt == ".parquet":
        return f"read_parquet({_sql_list(files)}, union_by_name=true, filename=true, hive_partitioning=false)"
    return (
        f"read_json({_sql_list(files)}, format='newline_delimited', union_by_name=true, filename=true, "
        "maximum_object_size=268435456, sample_size=-1)"
    )


class Audit:
    """Discover artifacts under `root` and expose them as DuckDB tables and views."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise Nano2Error(f"{self.root}: audit root is not a directory")
        self.con = duckdb.connect(":memory:")
        self.artifacts: list[Artifact] = []
        self.orphans: list[tuple[str, int]] = []
        self.warnings: list[tuple[str, str]] = []
        self._discover()
        self._create_manifest_tables()
        self._create_documents_view()
        self._create_decisions_view()
        self._create_plan_tables()
        self._create_misc_tables()

    # discovery ---------------------------------------------------------------------------------------------
    def _discover(self) -> None:
        owners: dict[Path, Artifact] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
            if MANIFEST_NAME in filenames:
                try:
                    manifest = read_manifest(here)
                except Nano2Error as exc:
                    self.warnings.append((str(here / MANIFEST_NAME), f"unreadable manifest: {exc}"))
                else:
                    rel = here.relative_to(self.root).as_posix() if here != self.root else "."
                    owners[here] = Artifact(path=here, rel=rel, manifest=manifest)
                    self.artifacts.append(owners[here])
            owner = next((owners[p] for p in (here, *here.parents) if p in owners), None)
            for fname in sorted(filenames):
                path = here / fname
                suffix = _suffix(path)
                if fname == MANIFEST_NAME or fname.startswith(".") or suffix is None:
                    continue
                if owner is None:
                    self.orphans.append((path.relative_to(self.root).as_posix(), path.stat().st_size))
                    continue
                rel_parts = path.relative_to(owner.path).parts
                if suffix == ".json":
                    if owner.manifest.kind == "plan" or fname.endswith("plan.json"):
                        owner.plans.append(str(path))
                    continue
                if suffix not in DOCUMENT_SUFFIXES or owner.manifest.kind not in ROW_KINDS:
                    continue  # e.g. a training run's metrics.jsonl or an eval's results are not documents
                fmt = ".parquet" if suffix == ".parquet" else ".jsonl"
                if owner.manifest.kind == ArtifactKind.DECISIONS:
                    owner.decisions[fmt].append(str(path))
                else:
                    partition = "/".join(p for p in rel_parts[:-1] if "=" in p)
                    owner.documents[(fmt, partition)].append(str(path))

    # manifests ---------------------------------------------------------------------------------------------
    def _create_manifest_tables(self) -> None:
        c = self.con
        c.execute(
            """CREATE TABLE manifests (id VARCHAR, kind VARCHAR, name VARCHAR, path VARCHAR, created_at TIMESTAMPTZ,
            command VARCHAR, config_path VARCHAR, config_hash VARCHAR, package_version VARCHAR, git_commit VARCHAR,
            dirty BOOLEAN, diff_hash VARCHAR, documents BIGINT, tokens BIGINT, bytes BIGINT, n_files INTEGER,
            n_inputs INTEGER, extra JSON)"""
        )
        c.execute(
            """CREATE TABLE manifest_inputs (manifest_id VARCHAR, artifact VARCHAR, input_path VARCHAR,
            input_manifest_id VARCHAR, input_content_hash VARCHAR, current_manifest_id VARCHAR, status VARCHAR)"""
        )
        c.execute(
            """CREATE TABLE manifest_stats (manifest_id VARCHAR, artifact VARCHAR, grouping VARCHAR, value VARCHAR,
            documents BIGINT, tokens BIGINT, bytes BIGINT)"""
        )
        by_path = {a.path.resolve(): a for a in self.artifacts}
        rows, inputs, stats = [], [], []
        for a in self.artifacts:
            m = a.manifest
            rows.append(
                (
                    m.id,
                    m.kind,
                    m.name,
                    a.rel,
                    m.created_at,
                    m.producer.command,
                    m.producer.config_path,
                    m.producer.config_hash,
                    m.code.package_version,
                    m.code.commit,
                    m.code.dirty,
                    m.code.diff_hash,
                    m.stats.documents,
                    m.stats.tokens,
                    m.stats.bytes,
                    len(m.files),
                    len(m.inputs),
                    json.dumps(m.extra),
                )
            )
            for ref in m.inputs:
                current = self._current_input(Path(ref.path), a.path, by_path)
                if ref.manifest_id is not None:
                    if current is None:
                        status = "input manifest not found under the audit root"
                    elif current == ref.manifest_id:
                        status = "ok"
                    else:
                        status = "stale: the input was rewritten after this artifact was made"
                else:
                    status = "content hash (not checked)"
                inputs.append((m.id, m.name, ref.path, ref.manifest_id, ref.content_hash, current, status))
            for grouping, groups in m.stats.by.items():
                for value, s in groups.items():
                    stats.append((m.id, m.name, grouping, value, s.documents, s.tokens, s.bytes))
        if rows:
            c.executemany("INSERT INTO manifests VALUES (" + ", ".join(["?"] * 18) + ")", rows)
        if inputs:
            c.executemany("INSERT INTO manifest_inputs VALUES (?, ?, ?, ?, ?, ?, ?)", inputs)
        if stats:
            c.executemany("INSERT INTO manifest_stats VALUES (?, ?, ?, ?, ?, ?, ?)", stats)

    def _current_input(self, path: Path, artifact_dir: Path, by_path: dict[Path, Artifact]) -> str | None:
        if path.is_absolute():
            candidates = [path]
        else:  # recorded relative to the run dir the artifact lies in (nano2.manifest.recorded_path)
            candidates = [resolve_recorded(str(path), artifact_dir), self.root / path, artifact_dir / path]
        # only paths that exist: a missing one must not resolve to whatever artifact lies above it
        candidates = [c for c in candidates if c.exists()]
        root = self.root.resolve()
        for candidate in candidates:
            # the input may be a key=value partition inside an artifact: its owner is the nearest manifest above
            resolved = candidate.resolve()
            for directory in (resolved, *resolved.parents):
                found = by_path.get(directory)
                if found is not None:
                    return found.manifest.id
                if directory == root:
                    break
        return None

    # documents ---------------------------------------------------------------------------------------------
    def _describe(self, relation: str, what: str) -> dict[str, str] | None:
        """Column name -> type of a file group, or None (and a warning) when DuckDB cannot read it."""
        try:
            rows = self.con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
        except duckdb.Error as exc:
            self.warnings.append((what, f"unreadable: {exc}".splitlines()[0]))
            return None
        return {row[0]: row[1] for row in rows}

    def _create_union_view(self, name: str, selects: list[str], columns: dict[str, str]) -> None:
        """A view over every readable file group; typed and empty when there is none."""
        empty = "SELECT " + ", ".join(f"NULL::{t} AS {c}" for c, t in columns.items()) + " WHERE false"
        self.con.execute(f"CREATE VIEW {name} AS " + ("\nUNION ALL\n".join(selects) if selects else empty))

    def _create_documents_view(self) -> None:
        """Documents of `documents` artifacts (the document contract: `token_count` column, metadata struct) and
        rows of `chat`/`preference` artifacts (the chat contract: `text`, token count in the metadata JSON). The
        manifest's kind says which contract a folder follows; a file that breaks it is a warning, never guessed."""
        selects = []
        for a in self.artifacts:
            kind = a.manifest.kind
            for (fmt, partition), files in sorted(a.documents.items()):
                relation = _reader(fmt, files)
                what = f"{a.rel} ({fmt}, {len(files)} files)"
                cols = self._describe(relation, what)
                if cols is None:
                    continue
                if kind == ArtifactKind.DOCUMENTS:
                    expected = DOCUMENT_SCHEMA.names
                    tokens, meta_type = f"CAST({TOKEN_COUNT} AS BIGINT)", cols.get(METADATA)
                else:
                    expected = CHAT_SCHEMA.names
                    tokens, meta_type = "TRY_CAST(json_extract(metadata, '$.token_count') AS BIGINT)", "VARCHAR"
                missing = [c for c in expected if c not in cols]
                if missing:
                    self.warnings.append((what, f"breaks the {kind} contract (no {', '.join(missing)}): not read"))
                    continue
                source = a.manifest.name + (f"/{partition}" if partition else "")
                selects.append(
                    f"""SELECT {_sql_str(a.manifest.id)} AS artifact_id, {_sql_str(a.manifest.name)} AS artifact,
                    {_sql_str(partition)} AS partition, {_sql_str(source)} AS source, filename AS file,
                    CAST(id AS VARCHAR) AS doc_id, CAST(text AS VARCHAR) AS text,
                    {tokens} AS tokens, {_as_json("metadata", meta_type)} AS metadata
                    FROM {relation}"""
                )
        self._create_union_view("documents", selects, DOCUMENT_COLUMNS)

    def _create_decisions_view(self) -> None:
        selects = []
        for a in self.artifacts:
            for fmt, files in sorted(a.decisions.items()):
                relation = _reader(fmt, files)
                cols = self._describe(relation, f"{a.rel} decisions")
                if cols is None:
                    continue
                id_col = "doc_id" if "doc_id" in cols else ("id" if "id" in cols else None)
                missing = [
                    c for c, ok in (("doc_id", id_col), ("step", "step" in cols), ("kept", "kept" in cols)) if not ok
                ]
                if missing:
                    self.warnings.append((f"{a.rel} decisions", f"missing columns {', '.join(missing)}: skipped"))
                    continue
                selects.append(
                    f"""SELECT {_sql_str(a.manifest.id)} AS artifact_id, {_sql_str(a.manifest.name)} AS artifact,
                    filename AS file, CAST({id_col} AS VARCHAR) AS doc_id, CAST(step AS VARCHAR) AS step,
                    CAST(kept AS BOOLEAN) AS kept,
                    {"CAST(reason AS VARCHAR)" if "reason" in cols else "NULL::VARCHAR"} AS reason,
                    {_as_json("scores", cols.get("scores"))} AS scores FROM {relation}"""
                )
        self._create_union_view("decisions", selects, DECISION_COLUMNS)

    # plans -------------------------------------------------------------------------------------------------
    def _create_plan_tables(self) -> None:
        from mixtures.plan import read_plan
        from mixtures.sources import read_source_tokens

        c = self.con
        c.execute(
            """CREATE TABLE plan_phases (plan VARCHAR, plan_file VARCHAR, phase VARCHAR, phase_index INTEGER,
            start_step BIGINT, end_step BIGINT, source VARCHAR, weight DOUBLE, share DOUBLE, sequences BIGINT,
            tokens BIGINT, epochs DOUBLE)"""
        )
        c.execute(
            """CREATE TABLE plan_sources (plan_id VARCHAR, plan VARCHAR, plan_file VARCHAR, data_root VARCHAR,
            source VARCHAR, origin VARCHAR, manifest_id VARCHAR, available_tokens BIGINT, max_epochs DOUBLE,
            planned_tokens BIGINT, epochs DOUBLE, available_now BIGINT, manifest_id_now VARCHAR)"""
        )
        phases, sources = [], []
        for a in self.artifacts:
            for plan_file in a.plans:
                rel = Path(plan_file).relative_to(self.root).as_posix()
                try:
                    plan = read_plan(plan_file)
                except Nano2Error as exc:
                    self.warnings.append((rel, f"not a plan: {exc}"))
                    continue
                for i, ph in enumerate(plan.phases):
                    for s in ph.sources:
                        phases.append(
                            (
                                plan.name,
                                rel,
                                ph.name,
                                i,
                                ph.start_step,
                                ph.end_step,
                                s.name,
                                s.weight,
                                s.share,
                                s.sequences,
                                s.tokens,
                                s.epochs,
                            )
                        )
                # Sources once per plan artifact (not per copy of plan.json a training run keeps beside its
                # checkpoint), checked under the data root the plan was compiled against.
                if a.manifest.kind != ArtifactKind.PLAN:
                    continue
                data_root = self._plan_data_root(a, [s.origin for s in plan.sources])
                for s in plan.sources:
                    now, now_id = None, None
                    if s.origin != "declared":
                        # a source missing now shows as available_now NULL ("source missing now")
                        with contextlib.suppress(Nano2Error):
                            now, now_id = read_source_tokens(data_root, s.origin)
                    sources.append(
                        (
                            a.manifest.id,
                            plan.name,
                            rel,
                            str(data_root),
                            s.name,
                            s.origin,
                            s.manifest_id,
                            s.available_tokens,
                            s.max_epochs,
                            s.planned_tokens,
                            s.epochs,
                            now,
                            now_id,
                        )
                    )
        if phases:
            c.executemany("INSERT INTO plan_phases VALUES (" + ", ".join(["?"] * 12) + ")", phases)
        if sources:
            c.executemany("INSERT INTO plan_sources VALUES (" + ", ".join(["?"] * 13) + ")", sources)

    def _plan_data_root(self, artifact: Artifact, origins: list[str]) -> Path:
        """The data root a plan was compiled against: recorded in its manifest, or (older plans) the input path of
        a source with its origin cut off; the audit root when neither is there."""
        recorded = artifact.manifest.extra.get("data_root")
        if recorded:
            return resolve_recorded(recorded, artifact.path)
        for ref in artifact.manifest.inputs:
            for origin in origins:
                if ref.path.endswith("/" + origin):
                    return resolve_recorded(ref.path[: -len(origin) - 1], artifact.path)
        return self.root

    def _create_misc_tables(self) -> None:
        # the artifacts the recipe declares final (`nano2 run` writes .recipe/finals.json), relative to this root
        self.con.execute("CREATE TABLE final_artifacts (path VARCHAR)")
        run_root = run_root_of(self.root)
        finals_file = run_root / RUN_STATE_DIR / "finals.json" if run_root is not None else None
        if finals_file is not None and finals_file.is_file():
            root = self.root.resolve()
            for rel in json.loads(finals_file.read_text(encoding="utf-8")).get("finals", []):
                path = (run_root / rel).resolve()
                if path.is_relative_to(root):
                    self.con.execute("INSERT INTO final_artifacts VALUES (?)", [path.relative_to(root).as_posix()])
        self.con.execute("CREATE TABLE orphan_files (path VARCHAR, bytes BIGINT)")
        if self.orphans:
            self.con.executemany("INSERT INTO orphan_files VALUES (?, ?)", self.orphans)
        self.con.execute("CREATE TABLE audit_warnings (what VARCHAR, warning VARCHAR)")
        if self.warnings:
            self.con.executemany("INSERT INTO audit_warnings VALUES (?, ?)", self.warnings)

    # queries -----------------------------------------------------------------------------------------------
    def query(self, sql: str) -> duckdb.DuckDBPyRelation:
        try:
            return self.con.sql(sql)
        except duckdb.Error as exc:
            raise Nano2Error(f"query failed: {str(exc).splitlines()[0]}") from None

    def save(self, path: str | Path, queries: dict[str, Path] | None = None) -> list[str]:
        """Persist the audit in a DuckDB file for a later DuckDB or polars session: the tables as tables, the views
        over the run's files as views (they read the files where they are), each saved query as a view named
        `q_<name>`. Returns the names written."""
        path = Path(path)
        if path.exists():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.con.execute(f"ATTACH {_sql_str(str(path))} AS saved")
        written = []
        try:
            for (table,) in self.con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = 'memory' ORDER BY 1"
            ).fetchall():
                self.con.execute(f"CREATE TABLE saved.{table} AS SELECT * FROM memory.{table}")
                written.append(table)
            self.con.execute("USE saved")  # views are created where their unqualified names resolve later
            for name, sql in self.con.execute(
                "SELECT view_name, sql FROM duckdb_views() WHERE database_name = 'memory' AND NOT internal ORDER BY 1"
            ).fetchall():
                self.con.execute(sql)
                written.append(name)
            for name, query_path in (queries or {}).items():
                body = query_path.read_text(encoding="utf-8").strip().rstrip(";")
                view = "q_" + "".join(ch if ch.isalnum() else "_" for ch in name)
                self.con.execute(f"CREATE VIEW {view} AS {body}")
                written.append(view)
        finally:
            self.con.execute("USE memory")
            self.con.execute("DETACH saved")
        return written

    def saved_queries(self, extra_dirs: list[Path] | None = None) -> dict[str, Path]:
        """Shipped queries, then the root's `.nano2/queries/`, then `extra_dirs`; later ones override by name."""
        found: dict[str, Path] = {}
        shipped = resources.files("nano2.app") / "queries"
        dirs: list[Path] = [Path(str(shipped)), self.root / USER_QUERY_DIR, *(extra_dirs or [])]
        for d in dirs:
            if d.is_dir():
                for f in sorted(d.glob("*.sql")):
                    found[f.stem] = f
        return found


def query_title(path: Path) -> str:
    """The first `-- ` comment line of a saved query, used as its title."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("--"):
            return line.lstrip("- ").strip()
    return path.stem
