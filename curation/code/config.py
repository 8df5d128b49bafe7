"""The YAML config of `nano2 curate code`: source, limits, license detection, heuristics, dedup, executor."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from curation.code.heuristics import HeuristicsSettings
from curation.code.languages import ALL_LANGUAGES
from curation.code.reader import InputLimits
from curation.code.sources import SourceConfig
from curation.executors import ExecutorConfig
from curation.licenses.allowlist import ALLOWLIST_PATH
from curation.licenses.detector import DetectorSettings
from nano2.config import load_yaml_model


class InputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_file_bytes: int = Field(default=1_000_000, gt=0, description="larger files are dropped as too_large")
    drop_vendored: bool = Field(default=True, description="drop node_modules/, vendor/, third_party/, *.min.js ...")

    def limits(self) -> InputLimits:
        return InputLimits(max_file_bytes=self.max_file_bytes, drop_vendored=self.drop_vendored)


class LicenseConfig(BaseModel):
    """License detection: fast path on file heads, full matcher on license files, deadlines, cache, allow-list."""

    model_config = ConfigDict(extra="forbid")
    header_lines: int = Field(default=60, gt=0, description="lines of each file the fast path reads")
    header_chars: int = Field(default=16000, gt=0)
    header_deadline_s: float = Field(default=5.0, gt=0)
    escalate_imperfect_headers: bool = Field(default=True, description="full matcher on headers ScanCode flags")
    check_tail: bool = Field(default=True, description="license language after the head: match the whole file")
    file_deadline_s: float = Field(default=30.0, gt=0, description="per license file, full matcher")
    unknown_licenses: bool = Field(default=True, description="flag unrecognised license text in license files")
    max_license_text_chars: int = Field(default=300_000, gt=0, description="longer license files fail closed")
    allowlist: str = Field(default=str(ALLOWLIST_PATH), description="the generated allow-list data file")
    cache_path: str | None = Field(default=None, description="SQLite detection cache shared across workers/runs")

    def detector_settings(self) -> DetectorSettings:
        return DetectorSettings(
            header_lines=self.header_lines, header_chars=self.header_chars, header_deadline_s=self.header_deadline_s,
            escalate_imperfect_headers=self.escalate_imperfect_headers, check_tail=self.check_tail,
            file_deadline_s=self.file_deadline_s, unknown_licenses=self.unknown_licenses,
            max_license_text_chars=self.max_license_text_chars,
        )  # fmt: skip


class HeuristicsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_line_length: int = Field(default=1000, gt=0)
    max_mean_line_length: float = Field(default=100.0, gt=0)
    min_alphanum_fraction: float = Field(default=0.25, ge=0, le=1)
    autogen_lines: int = Field(default=5, ge=0, description="first lines searched for auto-generated markers")
    data_file_chars: dict[str, tuple[int, int]] = Field(
        default_factory=lambda: {"JSON": (50, 5000), "YAML": (50, 5000)},
        description="language -> [min, max] characters for data-like files",
    )

    def settings(self) -> HeuristicsSettings:
        return HeuristicsSettings(**self.model_dump())


class DedupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exact: bool = Field(default=True, description="exact dedup on whitespace-normalised content")
    minhash: bool = Field(default=True, description="MinHash near-dedup (datatrove)")
    n_grams: int = Field(default=5, gt=0)
    num_buckets: int = Field(default=14, gt=0)
    hashes_per_bucket: int = Field(default=8, gt=0)


class CodeConfig(BaseModel):
    """`nano2 curate code CONFIG`: permissive-license code, deduplicated, with decisions and a manifest."""

    model_config = ConfigDict(extra="forbid")
    name: str = "code"
    source: SourceConfig
    output_dir: str = Field(
        description="curated documents and manifest.json go here (decisions beside it, see "
        "nano2.contracts.shards.decisions_dir)"
    )
    work_dir: str | None = Field(
        default=None, description="intermediate files and logs; default: <output's grandparent>/.work/<output's name>"
    )
    languages: list[str] | None = Field(default=None, description="languages to keep; default: all known")
    input: InputConfig = Field(default_factory=InputConfig)
    license: LicenseConfig = Field(default_factory=LicenseConfig)
    heuristics: HeuristicsConfig = Field(default_factory=HeuristicsConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    tokenizer: str = Field(default="default", description="tokenizer.json for token counts (see curation.tokens)")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        unknown = [v for v in value if v not in ALL_LANGUAGES]
        if unknown:
            raise ValueError(f"unknown languages {unknown}; known: {', '.join(ALL_LANGUAGES)}")
        return value

    def resolved_work_dir(self) -> Path:
        """`runs/tiny/curated/code` -> `runs/tiny/.work/code`: outside every artifact, and hidden from the audit
        (intermediate Parquet files are not curated data; the audit would list them as files without a manifest)."""
        if self.work_dir:
            return Path(self.work_dir)
        out = Path(self.output_dir)
        return out.parent.parent / ".work" / out.name


def load_code_config(path: str | Path) -> CodeConfig:
    return load_yaml_model(path, CodeConfig)
