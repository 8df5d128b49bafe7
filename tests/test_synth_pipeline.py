"""The synthesis runner's mechanics on real inputs with a scripted backend: documents and chat rows of the contracts
in their separate roots (one hive-partitioned scan of a run's data folder reads every document with one schema),
drops with reasons beside the data, manifests, decisions the audit can count, the request cache (rerun sends
nothing; a crash resumes without re-sending answered requests and writes the same rows), recorded backend
failures; and the `nano2 synth` CLI."""

from __future__ import annotations

import gzip
import json
import re
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from nano2.contracts.chat import CHAT_SCHEMA, validate_chat_record
from nano2.contracts.documents import DOCUMENT_SCHEMA, SUBSET_KEY, Meta, document_record
from nano2.contracts.shards import RUN_STATE_DIR, shard_name, subset_dir
from nano2.errors import Nano2Error
from nano2.manifest import read_manifest
from synthetic.backends.base import GenerationResponse
from synthetic.config import DOCUMENT_STAGES, REPHRASE_TASKS, SynthConfig, load_synth_config
from synthetic.records import read_chat_rows, read_documents
from synthetic.runner import run_synthesis
from synthetic.tasks.common import format_qa_pairs, token_counter
from synthetic.tasks.reasoning import split_reasoning, verify_math
from synthetic.tasks.rephrase import appended_qa_pairs
from verify.gsm8k import gsm8k_gold

pytestmark = pytest.mark.realdata

BUCKETS = [19, 5, 14, 11, None, 18, 2, 16]


class Crash(RuntimeError):
    """Stands in for a kill: raised by the backend in the middle of a run."""


class ScriptedBackend:
    """Deterministic answers read off the prompt: well-formed for most requests, wrong or malformed for some, so
    the runner's keep and drop paths both run. Counts the requests it answers; can crash after N of them."""

    name = "scripted"
    model = "scripted"

    def __init__(self, gold: dict[str, str], crash_after: int | None = None, fail_keys: frozenset[str] = frozenset()):
        self.gold, self.crash_after, self.fail_keys = gold, crash_after, fail_keys
        self.answered = 0

    def answer(self, user: str) -> str:
        if "write question-answer pairs about it" in user or "Passage:" in user:
            body = user.split("Document:\n", 1)[-1].split("Passage:\n", 1)[-1]
            words = body.split()
            return f"Question: Which words open the text?\nAnswer: It opens with {' '.join(words[:6])}."
        if "Translate the question-answer pairs" in user:
            return user.split("\n\n", 1)[1]  # returns the English unchanged: an untranslated output
        if "List the pieces of knowledge" in user:
            words = user.split("Text:\n", 1)[1].split()
            return "\n".join(f"- Fact {i}: {' '.join(words[i * 7 : i * 7 + 7])}." for i in range(3))
        if "Solve the following problem" in user:
            problem = user.split("\\boxed{ANSWER}.\n\n", 1)[1].strip()
            gold = self.gold[problem]
            stated = gold if len(problem) % 3 else str(int(float(gold)) + 1)  # about a third are wrong
            return f"Let me work it out.\nThe numbers give {stated}.\n</think>\nThe answer is \\boxed{{{stated}}}."
        if "Write a Python function" in user:
            return "I am not sure.\n</think>\nNo code today."
        words = user.split("Text:\n", 1)[1].split()  # distill, extract_knowledge, wiki_paraphrase
        return " ".join(words[:5]) + " is summarised here in a rewritten sentence of plain words."

    def generate(self, requests):
        out = []
        for r in requests:
            if self.crash_after is not None and self.answered >= self.crash_after:
                raise Crash(f"killed after {self.answered} requests")
            self.answered += 1
            if r.key in self.fail_keys:
                out.append(GenerationResponse(key=r.key, texts=[], error="HTTP 500: overloaded", attempts=5))
                continue
            text = self.answer(r.messages[-1]["content"])
            out.append(GenerationResponse(key=r.key, texts=[text], finish_reasons=["stop"], prompt_tokens=10,
                                          completion_tokens=[len(text.split())]))  # fmt: skip
        return out

    def close(self) -> None:
        return


def write_curated(shared_data: Path, out: Path, max_chars: int | None = None) -> Path:
    """A curated-web document folder of the contract from real CCNet documents, with quality buckets assigned."""
    rows = []
    lines = (shared_data / "web" / "ccnet_cc_en_head_0091.jsonl").read_text(encoding="utf-8").splitlines()
    for line in lines:
        doc = json.loads(line)
        text = doc["text"][:max_chars] if max_chars else doc["text"]
        i = len(rows)
        bucket = BUCKETS[i % len(BUCKETS)]
        level = None if bucket is None else ("high" if bucket >= 18 else "medium" if bucket >= 10 else "low")
        metadata = {Meta.URL: doc["id"], Meta.BUCKET: bucket, Meta.LEVEL: level, Meta.LANGUAGE: "en"}
        rows.append(document_record(doc_id=f"ccnet/{i}", text=text, source="ccnet_cc_en_head_0091.jsonl",
                                    token_count=None, metadata=metadata))  # fmt: skip
        if len(rows) == len(BUCKETS):
            break
    folder = subset_dir(out, "mixed")
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), folder / shard_name(0))
    return out


def gsm8k_gold_by_question(shared_data: Path, n: int) -> dict[str, str]:
    out = {}
    with gzip.open(shared_data / "evals" / "gsm8k_train.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            out[row["question"].strip()] = gsm8k_gold(row["answer"])
            if len(out) == n:
                break
    return out


def make_config(shared_data: Path, root: Path, **overrides) -> SynthConfig:
    """A config for a run dir at `root` laid out as a recipe lays one out: RUN/data/{curated,synthetic}, RUN/chat."""
    (root / RUN_STATE_DIR).mkdir(parents=True, exist_ok=True)
    curated = root / "data" / "curated" / "web"
    if not curated.exists():
        write_curated(shared_data, curated)
    gsm8k = str(shared_data / "evals" / "gsm8k_train.jsonl.gz")
    cfg = {
        "name": "synth-test",
        "output_dir": str(root / "data" / "synthetic"),
        "backend": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "scripted"},
        "batch_size": 5,
        "rephrase": {"enabled": True, "inputs": [{"path": str(curated)}], "high_bucket_min": 12,
                     "tasks": {t: {"max_input_tokens": 400} for t in
                               ("diverse_qa", "distill", "extract_knowledge", "knowledge_list", "wiki_paraphrase")}},
        "translate": {"enabled": True, "languages": ["de", "fr"], "languages_per_document": 1, "max_documents": 3},
        "reasoning": {"enabled": True, "empty_trace_share": 0.3, "inputs": [
            {"path": gsm8k, "kind": "math", "limit": 12},
            {"path": str(shared_data / "evals" / "mbpp_full.jsonl"), "kind": "code", "text_key": "text",
             "id_key": "task_id", "answer_key": None, "tests_key": "test_list", "id_range": [601, 974], "limit": 2}]},
        "truncate": {"enabled": True, "budget_min": 6, "budget_max": 30,
                     "gold_inputs": [{"path": gsm8k, "kind": "math", "limit": 10}]},
        "long_context": {"enabled": True, "inputs": [{"path": str(curated)}], "min_document_tokens": 1500,
                         "chunk_tokens": 128, "qa_share": 0.1},
    }  # fmt: skip
    for key, value in overrides.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) and key in cfg else value
    return SynthConfig.model_validate(cfg)


@pytest.fixture
def gold(shared_data):
    return gsm8k_gold_by_question(shared_data, 20)


def run(cfg: SynthConfig, backend: ScriptedBackend):
    built = []

    def factory():
        built.append(1)
        return backend

    result = run_synthesis(cfg, backend_factory=factory)
    return result, len(built)


def _files(directory: Path) -> dict[str, str]:
    return {f.path: f.sha256 for f in read_manifest(directory).files}


def decision_dirs(run_dir: Path) -> list[Path]:
    """Every decisions artifact of a run: RUN/decisions/... for documents, RUN/decisions/chat/... for chat rows."""
    return sorted(p.parent for p in run_dir.rglob("manifest.json") if read_manifest(p.parent).kind == "decisions")


def read_stage(cfg: SynthConfig, stage: str) -> list[dict]:
    """A stage's rows: documents for a document stage, chat rows (metadata decoded) for a chat stage."""
    directory = cfg.stage_dir(stage)
    return read_documents(directory) if stage in DOCUMENT_STAGES else read_chat_rows(directory)


# ----------------------------------------------------------------------------------------------- a full run


def test_run_writes_rows_drops_manifests_and_audit_counts(shared_data, tmp_path, gold, cli):
    cfg = make_config(shared_data, tmp_path)
    backend = ScriptedBackend(gold)
    result, built = run(cfg, backend)
    assert built == 1 and backend.answered == result.requests.sent == result.requests.jobs > 0
    counter = token_counter("default")
    for stage, manifest in result.manifests.items():
        rows = read_stage(cfg, stage)
        assert manifest.stats.documents == len(rows) and manifest.stats.tokenizer.startswith("default@")
        assert len({r["id"] for r in rows}) == len(rows)
        if stage in DOCUMENT_STAGES:
            assert manifest.kind == "documents" and cfg.stage_dir(stage).parent == Path(cfg.output_dir)
            assert manifest.stats.tokens == sum(r["token_count"] for r in rows)
            assert all(r["token_count"] == counter.count(r["text"]) for r in rows)
            for r in rows:
                meta = r["metadata"]
                assert meta["model"] == "scripted" and meta["parent_id"] and meta["prompt_version"]
                json.loads(meta["sampling"])
        else:
            assert manifest.kind == "chat" and cfg.stage_dir(stage).parent == cfg.chat_root
            assert manifest.stats.tokens == sum(r["metadata"]["token_count"] for r in rows)
            assert all(r["metadata"]["token_count"] == counter.count(r["text"]) for r in rows)
            for r in rows:
                assert r["messages"][-1]["role"] == "assistant" and r["messages"][0]["role"] == "system"
                assert r["reasoning"] == ("/no_think" not in r["messages"][0]["content"])
                assert not isinstance(validate_chat_record(r), str)  # the trainer's own check keeps every row
                json.loads(r["sampling"])
    # every request is either a row or a counted drop with a reason
    drops = result.drops
    rephrase_rows = read_stage(cfg, "rephrase")
    rephrase_requests = result.manifests["rephrase"].extra["requests"]["jobs"]
    rephrase_drops = sum(n for t, reasons in drops.items() if t in REPHRASE_TASKS for n in reasons.values())
    assert len(rephrase_rows) + rephrase_drops == rephrase_requests
    assert drops["routing"] == {"no_quality_bucket": 1}
    tasks = {r["metadata"]["task"] for r in rephrase_rows}
    assert tasks == {"diverse_qa", "distill", "extract_knowledge", "knowledge_list", "wiki_paraphrase"}
    curated = {r["id"]: r for r in read_documents(tmp_path / "data" / "curated" / "web")}
    for r in rephrase_rows:
        meta, source = r["metadata"], curated[r["metadata"]["parent_id"]]
        assert (meta["bucket"] >= 12) == (meta["task"] != "wiki_paraphrase")  # routed by bucket
        assert (meta["url"], meta["level"], meta["language"]) == (source["metadata"]["url"],
                                                                  source["metadata"]["level"], "en")  # fmt: skip
        if meta["task"] == "diverse_qa":  # a segment of the source document, then its appended pair
            pairs = appended_qa_pairs(r["text"], 3)
            assert len(pairs) == 1 and r["text"][: -len(format_qa_pairs(pairs)) - 2] in source["text"]
    # translations of this backend are untranslated copies: all dropped, with the reason
    assert drops["translate"] == {"untranslated": 3}
    # reasoning: right answers kept (some as empty traces), wrong ones dropped, code without code dropped
    reasoning = read_stage(cfg, "reasoning")
    assert drops["reasoning_sft"]["wrong_answer"] == sum(1 for q in list(gold)[:12] if len(q) % 3 == 0)
    assert drops["reasoning_sft"]["no_code_block"] == 2
    assert len(reasoning) == 12 - drops["reasoning_sft"]["wrong_answer"]
    for r in reasoning:
        target = r["messages"][-1]["content"]
        reference = r["metadata"]["reference"]
        if r["reasoning"]:
            assert target.startswith("<think>\n") and verify_math(split_reasoning(target).value[1], reference).ok
        else:
            assert "<think>" not in target and verify_math(target, reference).ok
    assert {r["reasoning"] for r in reasoning} == {True, False}
    # truncated traces: verified reasoning rows and GSM8K reference solutions, cut to 6-30 tokens
    truncated = read_stage(cfg, "truncate")
    assert {r["metadata"]["origin"] for r in truncated} == {"reasoning_sft", "reference_solution"}
    for r in truncated:
        assert r["reasoning"] and r["metadata"]["kept_tokens"] <= r["metadata"]["budget"] <= 30
        assert split_reasoning(r["messages"][-1]["content"]).ok
    # long context: documents with QA about chosen chunks appended at the end
    long_rows = read_stage(cfg, "long_context")
    assert long_rows
    for r in long_rows:
        source = curated[r["metadata"]["parent_id"]]["text"].rstrip()
        assert r["text"].startswith(source) and r["text"][len(source) :].startswith("\n\nQuestion: ")
        assert r["metadata"]["task"] == "long_context_qa"
    # drops live beside the data: RUN/decisions for documents in RUN/data, RUN/decisions/chat for chat rows
    assert (tmp_path / "decisions" / "synthetic" / "rephrase" / "routing" / shard_name(0)).is_file()
    chat_decisions = tmp_path / "decisions" / "chat" / cfg.chat_root.relative_to(tmp_path / "chat") / "reasoning"
    assert (chat_decisions / "reasoning_sft" / shard_name(0)).is_file()
    assert read_manifest(tmp_path / "decisions" / "synthetic" / "rephrase").kind == "decisions"
    # the audit counts the drops and reads the documents' tokens; the mixtures read token counts from the manifests
    from mixtures.sources import read_source_tokens
    from nano2.app.audit import Audit

    db = Audit(tmp_path)
    audited = dict(db.con.execute("SELECT step, count(*) FROM decisions GROUP BY step").fetchall())
    assert audited == {task: sum(reasons.values()) for task, reasons in drops.items()}
    tokens = db.con.execute("SELECT sum(tokens) FROM documents WHERE artifact = 'synth-test-rephrase'").fetchall()
    assert tokens[0][0] == result.manifests["rephrase"].stats.tokens
    data = tmp_path / "data"
    assert read_source_tokens(data, "synthetic/rephrase")[0] == result.manifests["rephrase"].stats.tokens
    assert read_source_tokens(data, "synthetic/rephrase/subset=distill")[0] == sum(
        r["token_count"] for r in rephrase_rows if r["metadata"]["task"] == "distill"
    )
    stats = cli("synth", "stats", cfg.output_dir, cfg.chat_root, "--plot", tmp_path / "stats.png")
    assert stats.code == 0 and "no_quality_bucket" in stats.out and "wrong_answer" in stats.out
    assert "truncate_traces" in stats.out
    assert (tmp_path / "stats.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_scan_reads_every_document_of_a_run_with_one_schema(shared_data, tmp_path, gold):
    """polars over RUN/data/**/*.parquet, hive-partitioned: curated and synthetic documents, one schema, no chat row,
    no decision."""
    import polars as pl

    cfg = make_config(shared_data, tmp_path)
    result, _ = run(cfg, ScriptedBackend(gold))
    frame = pl.scan_parquet(str(tmp_path / "data" / "**" / "*.parquet"), hive_partitioning=True).collect()
    assert frame.columns == [*DOCUMENT_SCHEMA.names, SUBSET_KEY]
    documents = sum(result.manifests[s].stats.documents for s in DOCUMENT_STAGES) + len(BUCKETS)
    assert len(frame) == documents and frame["id"].n_unique() == documents
    expected_subsets = {"mixed", "long_context_qa", *(s for s in result.manifests["rephrase"].stats.by[SUBSET_KEY])}
    assert set(frame[SUBSET_KEY].unique()) == expected_subsets
    for path in (tmp_path / "data").rglob("*.parquet"):
        assert pq.read_schema(path).remove_metadata().equals(DOCUMENT_SCHEMA), path
    chat_files = sorted((tmp_path / "chat").rglob("*.parquet"))
    assert chat_files and all(
        pq.read_schema(p).remove_metadata().equals(CHAT_SCHEMA) for p in chat_files if "decisions" not in str(p)
    )


# ----------------------------------------------------------------------------------------------- cache, resume


def test_rerun_sends_nothing_and_rewrites_identical_rows(shared_data, tmp_path, gold):
    cfg = make_config(shared_data, tmp_path)
    first, _ = run(cfg, ScriptedBackend(gold))
    files = {stage: _files(cfg.stage_dir(stage)) for stage in first.manifests}
    decisions = {p: _files(p) for p in decision_dirs(tmp_path)}
    assert len(decisions) == len(first.manifests)  # every stage dropped something here
    again = ScriptedBackend(gold)
    second, built = run(cfg, again)
    assert built == 0 and again.answered == 0  # no backend is even built when everything is cached
    assert second.requests.sent == 0 and second.requests.cached == first.requests.jobs
    assert {stage: _files(cfg.stage_dir(stage)) for stage in second.manifests} == files
    assert {p: _files(p) for p in decision_dirs(tmp_path)} == decisions  # drops are rewritten identically too
    assert {s: m.stats for s, m in second.manifests.items()} == {s: m.stats for s, m in first.manifests.items()}
    assert second.manifests["rephrase"].extra["requests"]["sent"] == 0  # the manifest says how the run went


def test_a_crashed_run_resumes_without_resending_answered_requests(shared_data, tmp_path, gold):
    clean_cfg = make_config(shared_data, tmp_path / "clean")
    clean, _ = run(clean_cfg, ScriptedBackend(gold))
    total = clean.requests.jobs
    cfg = make_config(shared_data, tmp_path / "crashed")
    with pytest.raises(Crash):
        run(cfg, ScriptedBackend(gold, crash_after=23))  # batches of 5: 4 batches committed, the 5th lost
    with sqlite3.connect(Path(cfg.output_dir) / ".cache" / "requests.sqlite") as conn:
        committed = conn.execute("SELECT count(*) FROM answers").fetchall()[0][0]
    assert committed == 20
    resumed_backend = ScriptedBackend(gold)
    resumed, _ = run(cfg, resumed_backend)
    assert resumed_backend.answered == resumed.requests.sent == total - committed
    assert resumed.requests.cached == committed
    for stage in clean.manifests:
        assert read_stage(cfg, stage) == read_stage(clean_cfg, stage), stage


def test_backend_failures_are_recorded_drops_and_resent_next_time(shared_data, tmp_path, gold):
    cfg = make_config(shared_data, tmp_path, translate={"enabled": False}, truncate={"enabled": False},
                      long_context={"enabled": False}, rephrase={"enabled": False})  # fmt: skip
    keys = []

    class Recording(ScriptedBackend):
        def generate(self, requests):
            keys.extend(r.key for r in requests)
            return super().generate(requests)

    run(cfg, Recording(gold))
    failing = frozenset(keys[:3])
    cfg = cfg.model_copy(update={"output_dir": str(tmp_path / "second"), "chat_dir": str(tmp_path / "second-chat")})
    first, _ = run(cfg, ScriptedBackend(gold, fail_keys=failing))
    assert first.drops["reasoning_sft"]["backend_error"] == 3 and first.requests.failed == 3
    with sqlite3.connect(Path(cfg.output_dir) / ".cache" / "requests.sqlite") as conn:
        assert conn.execute("SELECT count(*), min(error) FROM failures").fetchall()[0] == (3, "HTTP 500: overloaded")
    no_retry = cfg.model_copy(update={"retry_failed": False})
    skipped_backend = ScriptedBackend(gold)
    skipped, _ = run(no_retry, skipped_backend)
    assert skipped_backend.answered == 0 and skipped.drops["reasoning_sft"]["backend_error"] == 3
    healed_backend = ScriptedBackend(gold)
    healed, _ = run(cfg, healed_backend)
    assert healed_backend.answered == 3 and "backend_error" not in healed.drops.get("reasoning_sft", {})


# ----------------------------------------------------------------------------------------------- CLI, config


def test_preview_renders_the_prompt(cli, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("The Rhine rises in the Swiss Alps and flows to the North Sea.", encoding="utf-8")
    result = cli("synth", "preview", "knowledge_list", "--doc", doc)
    assert result.code == 0, result.err
    assert "The Rhine rises in the Swiss Alps" in result.out and "<think></think>" in result.out
    assert re.search(r"\d+ tokens", result.out)
    reasoning = cli("synth", "preview", "reasoning_sft", "--doc", doc)
    assert reasoning.code == 0 and "<SPECIAL_11>Assistant\n<think>\n" in reasoning.out
    assert "<think></think>" not in reasoning.out and "\\boxed{ANSWER}" in reasoning.out
    german = cli("synth", "preview", "translate", "--doc", doc, "--language", "de")
    assert german.code == 0 and "into German" in german.out
    assert cli("synth", "preview", "truncate_traces", "--doc", doc).code == 2
    unknown = cli("synth", "preview", "poetry", "--doc", doc)
    assert unknown.code == 2 and "unknown task" in unknown.err


def test_config_errors_name_the_file_and_field(cli, tmp_path):
    base = yaml.safe_load(Path("synthetic/configs/tiny.yaml").read_text())
    bad = {**base, "rephrase": {**base["rephrase"], "enabled": False}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    result = cli("synth", "run", path)
    assert result.code == 2 and "bad.yaml" in result.err and "enable rephrase" in result.err
    typo = {**base, "reasoning": {**base["reasoning"], "empty_trace_shar": 0.2}}
    path.write_text(yaml.safe_dump(typo), encoding="utf-8")
    result = cli("synth", "run", path)
    assert result.code == 2 and "reasoning.empty_trace_shar" in result.err and "empty_trace_share" in result.err
    assert load_synth_config("synthetic/configs/nano2.yaml").translate.languages.__len__() == 15
    assert cli("synth", "stats", tmp_path / "nowhere").code == 2


def test_chat_rows_never_go_under_a_document_tree(shared_data, tmp_path, gold):
    cfg = make_config(shared_data, tmp_path)
    assert cfg.chat_root == tmp_path / "chat" / "synthetic"  # the default in a run: RUN/data/X -> RUN/chat/X
    elsewhere = SynthConfig.model_validate({**cfg.model_dump(), "output_dir": str(tmp_path / "out" / "synthetic")})
    assert elsewhere.chat_root == tmp_path / "out" / "chat" / "synthetic"  # outside a run: beside output_dir
    nested = {**cfg.model_dump(), "chat_dir": str(Path(cfg.output_dir) / "chat")}
    with pytest.raises(ValueError, match="must not contain each other"):
        SynthConfig.model_validate(nested)
    in_run_data = cfg.model_copy(update={"chat_dir": str(tmp_path / "data" / "chat")})
    with pytest.raises(Nano2Error, match="inside a run's data folder"):
        run(in_run_data, ScriptedBackend(gold))
    assert not (tmp_path / "data" / "chat").exists()


def test_output_dir_that_is_not_ours_is_never_wiped(shared_data, tmp_path, gold):
    cfg = make_config(shared_data, tmp_path, translate={"enabled": False}, reasoning={"enabled": False},
                      truncate={"enabled": False}, long_context={"enabled": False})  # fmt: skip
    precious = cfg.stage_dir("rephrase")
    precious.mkdir(parents=True)
    (precious / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(Exception, match="not a synthetic stage directory"):
        run(cfg, ScriptedBackend(gold))
    assert (precious / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_a_document_listed_twice_is_asked_about_once(shared_data, tmp_path, gold):
    once = make_config(shared_data, tmp_path / "once", translate={"enabled": False}, reasoning={"enabled": False},
                       truncate={"enabled": False}, long_context={"enabled": False})  # fmt: skip
    twice_inputs = once.rephrase.inputs * 2
    twice = once.model_copy(
        update={
            "output_dir": str(tmp_path / "twice"),
            "chat_dir": str(tmp_path / "twice-chat"),
            "rephrase": once.rephrase.model_copy(update={"inputs": twice_inputs}),
        }
    )
    first, _ = run(once, ScriptedBackend(gold))
    second, _ = run(twice, ScriptedBackend(gold))
    assert second.requests.jobs == first.requests.jobs
    assert read_stage(twice, "rephrase") == read_stage(once, "rephrase")


def test_max_segments_caps_the_requests_per_document_and_counts_the_rest(shared_data, tmp_path, gold):
    def config(name: str, cap: int | None) -> SynthConfig:
        cfg = make_config(shared_data, tmp_path / name, translate={"enabled": False}, reasoning={"enabled": False},
                          truncate={"enabled": False}, long_context={"enabled": False})  # fmt: skip
        tasks = {t: s.model_copy(update={"max_input_tokens": 64}) for t, s in cfg.rephrase.tasks.items()}
        rephrase = cfg.rephrase.model_copy(update={"tasks": tasks, "max_segments": cap})
        return cfg.model_copy(update={"rephrase": rephrase})

    every, _ = run(config("every", None), ScriptedBackend(gold))
    capped, _ = run(config("capped", 1), ScriptedBackend(gold))
    over = sum(reasons.get("over_max_segments", 0) for reasons in capped.drops.values())
    assert 0 < capped.requests.jobs < every.requests.jobs
    assert over == every.requests.jobs - capped.requests.jobs  # every segment left out is a counted drop
    assert not any("over_max_segments" in reasons for reasons in every.drops.values())
