"""The web pipeline's config (`curation/configs/web.yaml`, `web-tiny.yaml`), validated strictly.

Paths may use `{shared_data}` (the `NANO2_SHARED_DATA` environment variable, default `../shared/data`) and are
otherwise relative to the current directory; inputs may be fsspec URLs such as `s3://commoncrawl/crawl-data/...`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from curation.executors import ExecutorConfig
from curation.web.steps import MULTILINGUAL_LANGUAGES
from nano2.config import load_yaml_model


def expand_path(value: str) -> str:
    """Replace `{shared_data}` and `~`; leave URLs alone."""
    shared = os.environ.get("NANO2_SHARED_DATA", "../shared/data")
    value = value.replace("{shared_data}", shared)
    return value if "://" in value else os.path.expanduser(value)


class InputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["warc", "jsonl"]
    path: str = Field(description="folder (local or fsspec URL) holding the files")
    glob: str | None = Field(default=None, description="file pattern inside the folder, e.g. *.warc.gz")
    text_key: str = "text"
    id_key: str = "id"
    url_key: str = "url"
    html: bool = Field(default=False, description="JSONL text field holds HTML (goes through extraction)")
    limit: int = Field(default=-1, description="documents per task, -1 for all")

    @field_validator("path")
    @classmethod
    def _expand(cls, v: str) -> str:
        return expand_path(v)


class UrlFilterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    banned_words_files: list[str] = Field(default_factory=list)
    soft_banned_words_files: list[str] = Field(default_factory=list)
    banned_subwords_files: list[str] = Field(default_factory=list)
    soft_word_threshold: int = 2
    use_integrated_lists: bool = True
    subword_match: Literal["token", "substring"] = Field(
        default="token",
        description="banned sub-words match whole URL words (token) or anywhere in the URL (substring: datatrove)",
    )

    @field_validator("banned_words_files", "soft_banned_words_files", "banned_subwords_files")
    @classmethod
    def _expand(cls, v: list[str]) -> list[str]:
        return [expand_path(p) for p in v]


class ExtractionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    math_aware: bool = True
    favour: Literal["precision", "balanced", "recall"] = "balanced"


class LanguageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    english: bool = True
    multilingual: list[str] = Field(default_factory=lambda: list(MULTILINGUAL_LANGUAGES))
    min_score: float = Field(default=0.65, ge=0, le=1)


class MinhashOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    n_grams: int = 5
    num_buckets: int = 14
    hashes_per_bucket: int = 8
    seed: int = 1


class DedupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exact: bool = True
    minhash: MinhashOptions = Field(default_factory=MinhashOptions)


class ClassifierSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    path: str = Field(description="fastText model file (model.bin) or its directory")

    @field_validator("path")
    @classmethod
    def _expand(cls, v: str) -> str:
        return expand_path(v)


class QualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    classifiers: list[ClassifierSpec] = Field(default_factory=list)
    train_config: str | None = Field(
        default=None, description="`nano2 curate train-quality` config used to train missing classifiers first"
    )
    n_bins: int = 20
    threshold_sample_docs: int = Field(default=1_000_000, description="English documents sampled for thresholds")
    levels: dict[str, str | int | list[int]] | None = Field(
        default=None, description="level -> buckets (e.g. high: 18-19); default: curation.quality.levels"
    )


class WebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "web"
    output_dir: str = Field(
        description="where the curated artifacts go: web/, math/, multilingual/ (decisions beside web/, see "
        "nano2.contracts.shards.decisions_dir)"
    )
    work_dir: str = Field(description="intermediate stages and datatrove logs (resume state)")
    inputs: list[InputSpec] = Field(min_length=1)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    url_filter: UrlFilterConfig = Field(default_factory=UrlFilterConfig)
    extraction: ExtractionConfig = Field(default_factory=ExtractionConfig)
    language: LanguageConfig = Field(default_factory=LanguageConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    tokenizer: str = Field(default="default", description="tokenizer.json for token counts ('default' = offline BPE)")

    @property
    def output(self) -> Path:
        return Path(expand_path(self.output_dir))

    @property
    def work(self) -> Path:
        return Path(expand_path(self.work_dir))


def load_web_config(path: str | Path) -> WebConfig:
    return load_yaml_model(path, WebConfig)
