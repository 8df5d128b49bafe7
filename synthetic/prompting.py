"""Versioned prompt files (`synthetic/prompts/<name>.yaml`): a system message, a user template and a version.

The version goes into every row (`prompt_version`, e.g. `diverse_qa-v1`) and into every cache key, together with a
hash of the prompt text, so editing a prompt without bumping its version still never reuses stale answers. The
templates use `string.Template` placeholders (`$document`), so braces in prompts (`\\boxed{}`) need no escaping
and braces in documents are never interpreted.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from string import Template

from pydantic import BaseModel, ConfigDict, Field

from nano2.config import load_yaml_model
from nano2.contracts.chat import NO_THINK_SWITCH, THINK_SWITCH
from nano2.errors import Nano2Error

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"


class PromptFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    version: int = Field(ge=1)
    system: str = ""
    user: str


@dataclass(frozen=True)
class Prompt:
    name: str
    version: int
    system: str
    user: str

    @property
    def tag(self) -> str:
        """What rows record as `prompt_version`."""
        return f"{self.name}-v{self.version}"

    @property
    def text_hash(self) -> str:
        return hashlib.sha256(f"{self.system}\0{self.user}".encode()).hexdigest()[:16]

    def messages(self, reasoning: bool, **fields: str) -> list[dict[str, str]]:
        """System message (with the Nano 2 reasoning switch) and the filled user message.

        A missing field is an error, not a silent `$name` left in the prompt.
        """
        try:
            user = Template(self.user).substitute(**fields).strip()
        except KeyError as exc:
            raise Nano2Error(f"prompt {self.tag}: no value for placeholder ${exc.args[0]}") from None
        switch = THINK_SWITCH if reasoning else NO_THINK_SWITCH
        system = f"{self.system.strip()}\n{switch}".strip()
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]


@functools.cache
def load_prompt(name: str, directory: str | None = None) -> Prompt:
    """Load `<directory or synthetic/prompts>/<name>.yaml`."""
    path = Path(directory or PROMPTS_DIR) / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in Path(directory or PROMPTS_DIR).glob("*.yaml")))
        raise Nano2Error(f"no prompt file {path} (prompts there: {known or 'none'})")
    data = load_yaml_model(path, PromptFile)
    if data.name != name:
        raise Nano2Error(f"{path}: name {data.name!r} does not match the file name {name!r}")
    return Prompt(name=data.name, version=data.version, system=data.system, user=data.user)
