"""The synthesis config (`synthetic/configs/tiny.yaml`, `nano2.yaml`), validated strictly.

One backend, two output roots, and one section per stage; a stage without `enabled: true` is skipped. Documents
(rephrase, translate, long_context: `nano2.contracts.documents`) go below `output_dir`, chat and preference rows
(reasoning, truncate, preference: `nano2.contracts.chat`) below the chat root, so one hive-partitioned scan of a
run's `data` folder reads every document with one schema and never meets a chat row. The chat root is `chat_dir`
when given; by default it mirrors `output_dir` outside the document tree, as the contract places drop decisions:
in a recipe run `RUN/data/synthetic` -> `RUN/chat/synthetic`, elsewhere `<parent>/synthetic` ->
`<parent>/chat/synthetic`.

Paths may use `{shared_data}` (`NANO2_SHARED_DATA`, default `../shared/data`) and are otherwise relative to the
current directory. Defaults are the paper's figures (paper-facts §3-5): max input/output tokens per rephrasing task,
15 translation languages, 10% empty traces, 1-2k-token truncation budgets, 1024-token chunks with 10% QA. The
preference stage's sampling figures are ours (the paper does not publish them).

The task vocabularies the config validates against (rephrasing tasks, translation languages) live here, so the
tasks (which read the config) depend on the config and never the other way round.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from curation.executors import ExecutorConfig
from curation.web.config import expand_path
from curation.web.steps import MULTILINGUAL_LANGUAGES
from nano2.config import load_yaml_model
from nano2.contracts.shards import CHAT_DIR, run_data_folder
from synthetic.backends import BackendConfig

HIGH_TASKS = ("diverse_qa", "distill", "extract_knowledge", "knowledge_list")
LOW_TASKS = ("wiki_paraphrase",)
REPHRASE_TASKS = (*HIGH_TASKS, *LOW_TASKS)
# Max input / output tokens per request (paper-facts §4, from the Nemotron-CC recipe); wiki_paraphrase has no
# published limit, so it gets distill's.
TOKEN_LIMITS = {
    "diverse_qa": (1000, 600),
    "distill": (2000, 1600),
    "extract_knowledge": (1400, 1400),
    "knowledge_list": (1000, 600),
    "wiki_paraphrase": (2000, 1600),
}
# The target languages a translation prompt can name (the 15 of the multilingual crawl, and English)
LANGUAGE_NAMES = {
    "ar": "Arabic", "zh": "Chinese (Simplified)", "da": "Danish", "nl": "Dutch", "fr": "French", "de": "German",
    "it": "Italian", "ja": "Japanese", "ko": "Korean", "pl": "Polish", "pt": "Portuguese", "ru": "Russian",
    "es": "Spanish", "sv": "Swedish", "th": "Thai", "en": "English",
}  # fmt: skip

STAGES = ("rephrase", "translate", "reasoning", "preference", "truncate", "long_context")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputConfig(_Strict):
    """Documents: a Parquet/JSONL(.gz) file or a directory of them (a contract document folder, or any other)."""

    path: str
    format: Literal["auto", "parquet", "jsonl"] = "auto"
    glob: str | None = Field(default=None, description="file pattern below a directory, e.g. 'subset=high/*.parquet'")
    text_key: str = "text"
    id_key: str = "id"
    limit: int | None = Field(default=None, ge=1, description="documents read from this input at most")

    @field_validator("path")
    @classmethod
    def _expand(cls, v: str) -> str:
        return expand_path(v)


class ProblemInput(InputConfig):
    """Problems with a reference: `answer_key` holds the gold answer (math) or `tests_key` the tests (code)."""

    kind: Literal["math", "code"] = "math"
    text_key: str = "question"
    answer_key: str | None = "answer"
    answer_format: Literal["gsm8k", "plain"] = Field(
        default="gsm8k", description="gsm8k: the answer field is a solution ending in '#### N'; plain: the answer"
    )
    tests_key: str | None = None
    setup_key: str | None = None
    id_range: tuple[int, int] | None = Field(
        default=None, description="keep rows whose integer id is in [low, high] (e.g. MBPP's train ids 601-974)"
    )

    @model_validator(mode="after")
    def _keys(self) -> ProblemInput:
        if self.kind == "code" and not self.tests_key:
            raise ValueError("code problems need tests_key (the field with the test statements)")
        if self.kind == "math" and not self.answer_key:
            raise ValueError("math problems need answer_key (the field with the reference answer)")
        return self


class GenerationSettings(_Strict):
    max_input_tokens: int = Field(default=2000, ge=16)
    max_output_tokens: int = Field(default=1600, ge=1)
    temperature: float = Field(default=0.7, ge=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    samples: int = Field(default=1, ge=1, description="completions per prompt (sample i uses seed + i)")
    drop_truncated: bool = Field(default=True, description="drop outputs that hit max_output_tokens")


def _rephrase_defaults() -> dict[str, GenerationSettings]:
    return {t: GenerationSettings(max_input_tokens=i, max_output_tokens=o) for t, (i, o) in TOKEN_LIMITS.items()}


class RephraseConfig(_Strict):
    enabled: bool = False
    inputs: list[InputConfig] = Field(default_factory=list)
    high_bucket_min: int = Field(default=12, ge=0, le=20, description="bucket >= this: high tasks (Curator: > 11)")
    high_tasks: list[str] = Field(default_factory=lambda: list(HIGH_TASKS))
    low_tasks: list[str] = Field(default_factory=lambda: list(LOW_TASKS))
    tasks: dict[str, GenerationSettings] = Field(default_factory=_rephrase_defaults)
    diverse_qa_max_pairs: int = Field(default=3, ge=1, description="pairs appended to the document at most")
    max_segments: int | None = Field(
        default=None, ge=1, description="segments of one document rephrased at most, per task (None: all)"
    )

    @field_validator("high_tasks", "low_tasks")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(REPHRASE_TASKS))
        if unknown:
            raise ValueError(f"unknown rephrasing task {unknown[0]!r}; expected some of {', '.join(REPHRASE_TASKS)}")
        return v

    @field_validator("tasks")
    @classmethod
    def _fill(cls, v: dict[str, GenerationSettings]) -> dict[str, GenerationSettings]:
        unknown = sorted(set(v) - set(REPHRASE_TASKS))
        if unknown:
            raise ValueError(f"unknown rephrasing task {unknown[0]!r}; expected some of {', '.join(REPHRASE_TASKS)}")
        return {**_rephrase_defaults(), **v}


class TranslateConfig(_Strict):
    enabled: bool = False
    languages: list[str] = Field(default_factory=lambda: list(MULTILINGUAL_LANGUAGES))
    languages_per_document: int | None = Field(default=None, ge=1, description="None: every language")
    min_language_score: float = Field(default=0.65, ge=0, le=1)
    max_documents: int | None = Field(default=None, ge=1, description="DiverseQA rows translated at most")
    settings: GenerationSettings = Field(
        default_factory=lambda: GenerationSettings(max_input_tokens=1000, max_output_tokens=1200, temperature=0.3)
    )

    @field_validator("languages")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(LANGUAGE_NAMES))
        if unknown:
            raise ValueError(f"no language name for {unknown[0]!r}; known: {', '.join(sorted(LANGUAGE_NAMES))}")
        return v


class ReasoningConfig(_Strict):
    enabled: bool = False
    inputs: list[ProblemInput] = Field(default_factory=list)
    empty_trace_share: float = Field(default=0.10, ge=0, le=1, description="verified rows kept as reasoning-off")
    code_timeout_s: float = Field(default=10.0, gt=0)
    settings: GenerationSettings = Field(
        default_factory=lambda: GenerationSettings(max_input_tokens=4000, max_output_tokens=16000, temperature=0.6)
    )


class PreferenceConfig(_Strict):
    """DPO pairs: several samples per verifiable problem, a verified one chosen, a failed one rejected."""

    enabled: bool = False
    inputs: list[ProblemInput] = Field(default_factory=list)
    reference_fallback: bool = Field(
        default=True, description="no sample verified: the reference solution (GSM8K-style traces) is chosen"
    )
    mismatched_fallback: bool = Field(
        default=False,
        description="when no sample is usable: reject another problem's reference solution (a different answer)",
    )
    code_timeout_s: float = Field(default=10.0, gt=0)
    settings: GenerationSettings = Field(
        default_factory=lambda: GenerationSettings(
            max_input_tokens=4000, max_output_tokens=16000, temperature=0.8, samples=4
        )
    )

    @model_validator(mode="after")
    def _contrast(self) -> PreferenceConfig:
        if self.settings.samples < 2 and not self.reference_fallback:
            raise ValueError("settings.samples must be >= 2 to contrast samples (or set reference_fallback: true)")
        if self.settings.samples > 1 and self.settings.temperature == 0:
            raise ValueError("settings.temperature must be > 0: greedy samples of one prompt are all the same")
        return self


class TruncateConfig(_Strict):
    enabled: bool = False
    from_reasoning: bool = Field(default=True, description="cut the verified traces of the reasoning stage")
    gold_inputs: list[ProblemInput] = Field(
        default_factory=list, description="also cut reference solutions (e.g. GSM8K train) used as traces"
    )
    budget_min: int = Field(default=1000, ge=1)
    budget_max: int = Field(default=2000, ge=1)
    share: float = Field(default=1.0, ge=0, le=1, description="share of eligible traces that get a truncated row")

    @model_validator(mode="after")
    def _budgets(self) -> TruncateConfig:
        if self.budget_max < self.budget_min:
            raise ValueError(f"budget_max {self.budget_max} is below budget_min {self.budget_min}")
        return self


class LongContextConfig(_Strict):
    enabled: bool = False
    inputs: list[InputConfig] = Field(default_factory=list)
    min_document_tokens: int = Field(default=32_000, ge=1)
    chunk_tokens: int = Field(default=1024, ge=16)
    qa_share: float = Field(default=0.10, gt=0, le=1)
    max_documents: int | None = Field(default=None, ge=1)
    settings: GenerationSettings = Field(
        default_factory=lambda: GenerationSettings(max_input_tokens=1024, max_output_tokens=600, temperature=0.5)
    )


class SynthConfig(_Strict):
    name: str = "synthetic"
    output_dir: str = Field(
        description="document stages (rephrase, translate, long_context) go to <output_dir>/<stage>/, the request "
        "cache to <output_dir>/.cache/; in a recipe run: RUN/data/synthetic"
    )
    chat_dir: str | None = Field(
        default=None,
        description="chat stages (reasoning, truncate, preference) go to <chat root>/<stage>/, outside any document "
        "tree; default: RUN/chat/synthetic for output_dir RUN/data/synthetic in a recipe run, else "
        "<parent>/chat/<name> beside output_dir <parent>/<name>",
    )
    backend: BackendConfig
    tokenizer: str = Field(default="default", description="counts tokens (stats, chunks, budgets); a tokenizer.json")
    seed: int = 0
    batch_size: int = Field(default=64, ge=1, description="requests per backend call; the cache is flushed per batch")
    retry_failed: bool = Field(default=True, description="re-send requests that failed in an earlier run")
    executor: ExecutorConfig = Field(
        default_factory=ExecutorConfig,
        description="tasks (shards of every stage's input documents), workers, kind local | slurm | ray; one request "
        "cache per shard (synthetic.shards)",
    )
    rephrase: RephraseConfig = Field(default_factory=RephraseConfig)
    translate: TranslateConfig = Field(default_factory=TranslateConfig)
    reasoning: ReasoningConfig = Field(default_factory=ReasoningConfig)
    preference: PreferenceConfig = Field(default_factory=PreferenceConfig)
    truncate: TruncateConfig = Field(default_factory=TruncateConfig)
    long_context: LongContextConfig = Field(default_factory=LongContextConfig)

    @field_validator("output_dir", "chat_dir")
    @classmethod
    def _expand(cls, v: str | None) -> str | None:
        return None if v is None else expand_path(v)

    @model_validator(mode="after")
    def _stages(self) -> SynthConfig:
        if self.translate.enabled and not self.rephrase.enabled:
            raise ValueError("translate reads the rephrase stage's DiverseQA documents: enable rephrase too")
        if self.truncate.enabled and self.truncate.from_reasoning and not self.reasoning.enabled:
            raise ValueError("truncate.from_reasoning needs the reasoning stage: enable it, or from_reasoning: false")
        for stage in ("rephrase", "reasoning", "preference", "long_context"):
            section = getattr(self, stage)
            if section.enabled and not section.inputs:
                raise ValueError(f"{stage} is enabled but has no inputs")
        return self

    @model_validator(mode="after")
    def _shardable(self) -> SynthConfig:
        if self.executor.tasks > 1 and self.preference.enabled and self.preference.mismatched_fallback:
            raise ValueError(
                "preference.mismatched_fallback pairs a problem with another problem's solution, across the whole "
                "input: it cannot run sharded (set executor.tasks: 1 or mismatched_fallback: false)"
            )
        return self

    @model_validator(mode="after")
    def _separate_roots(self) -> SynthConfig:
        documents, chat = Path(self.output_dir).absolute(), self.chat_root.absolute()
        if documents == chat or documents in chat.parents or chat in documents.parents:
            raise ValueError(
                f"the chat root {chat} and output_dir {documents} must not contain each other: chat rows inside a "
                "document tree break its one-schema scan (a recipe run uses RUN/data/synthetic and RUN/chat/synthetic)"
            )
        return self

    @property
    def chat_root(self) -> Path:
        """Where the chat stages write: `chat_dir`, or the default beside `output_dir` (see the module docstring)."""
        if self.chat_dir is not None:
            return Path(self.chat_dir)
        documents = Path(self.output_dir)
        data = run_data_folder(documents)
        if data is not None:
            return data.parent / CHAT_DIR / documents.absolute().relative_to(data)
        return documents.parent / CHAT_DIR / documents.name

    def stage_dir(self, stage: str) -> Path:
        root = Path(self.output_dir) if stage in DOCUMENT_STAGES else self.chat_root
        return root / STAGE_DIRS[stage]

    @property
    def cache_path(self) -> Path:
        return Path(self.output_dir) / ".cache" / "requests.sqlite"

    def shard_cache_path(self, rank: int, world_size: int) -> Path:
        """The request cache of one shard (one task writes it; a single-task run keeps `cache_path`)."""
        if world_size == 1:
            return self.cache_path
        return Path(self.output_dir) / ".cache" / f"requests-{rank:05d}-of-{world_size:05d}.sqlite"

    def shard_dir(self, stage: str, rank: int) -> Path:
        """Where one shard of a sharded stage writes before the merge: a hidden sibling of the stage folder."""
        final = self.stage_dir(stage)
        return final.parent / f".{final.name}.shards" / f"{rank:05d}"

    def shard_logs(self, stage: str) -> Path:
        """datatrove's logging dir (completions, stats) of a sharded stage and of its merge."""
        return Path(self.output_dir) / ".cache" / "logs" / stage

    def enabled_stages(self) -> list[str]:
        return [s for s in STAGES if getattr(self, s).enabled]


# Which root each stage writes to, and its folder there (mixture specs name `synthetic/rephrase`, the SFT and DPO
# configs `<chat root>/reasoning`, `truncated`, `preference`)
DOCUMENT_STAGES = ("rephrase", "translate", "long_context")
CHAT_STAGES = ("reasoning", "preference", "truncate")
STAGE_DIRS = {
    "rephrase": "rephrase",
    "translate": "translate",
    "reasoning": "reasoning",
    "preference": "preference",
    "truncate": "truncated",
    "long_context": "long_context",
}


def load_synth_config(path: str | Path) -> SynthConfig:
    return load_yaml_model(path, SynthConfig)
