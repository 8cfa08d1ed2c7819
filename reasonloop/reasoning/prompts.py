"""Prompt templates as versioned data: `configs/prompts/<name>.yaml` (name, version, variables, text).

Placeholders use MLflow's `{{variable}}` syntax so the same text is registered in MLflow's prompt
registry unchanged. Rendering is strict: a missing or undeclared variable is an error, never a blank.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

import yaml
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from reasonloop.errors import PromptError
from reasonloop.schemas import ReasoningSteps, RetrievedChunk

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
PROMPT_NAME = r"[a-z][a-z0-9_]*"  # a template's name, and its file's name without .yaml
LOCK_FILE = "VERSIONS.lock"  # "<name>@v<version> <sha256>" per line: a released version's text never changes


class PromptTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=rf"^{PROMPT_NAME}$")
    version: int = Field(ge=1)
    description: str = ""
    input_variables: list[str] = Field(min_length=1)
    output_schema: str
    system: str
    template: str

    @model_validator(mode="after")
    def _placeholders_match_variables(self) -> PromptTemplate:
        used = set(PLACEHOLDER.findall(self.system)) | set(PLACEHOLDER.findall(self.template))
        declared = set(self.input_variables)
        if used != declared:
            raise ValueError(f"placeholders {sorted(used)} differ from input_variables {sorted(declared)}")
        return self

    @property
    def sha256(self) -> str:
        """Content hash of the text the model sees: part of the version identity."""
        return hashlib.sha256(f"{self.system}\x00{self.template}".encode()).hexdigest()

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"

    def render(self, **values: str) -> tuple[str, str]:
        """(system, user) text with every declared variable filled in."""
        missing = set(self.input_variables) - values.keys()
        extra = values.keys() - set(self.input_variables)
        if missing or extra:
            raise PromptError(f"prompt {self.ref}: missing variables {sorted(missing)}, unexpected {sorted(extra)}")

        def fill(text: str) -> str:
            return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)

        return fill(self.system), fill(self.template)

    def to_messages(self, **values: str) -> list[BaseMessage]:
        system, user = self.render(**values)
        return [SystemMessage(system), HumanMessage(user)]


def load_prompt(prompts_dir: Path, name: str) -> PromptTemplate:
    if not re.fullmatch(PROMPT_NAME, name):  # before it becomes a path: "../x" must not reach outside the folder
        raise PromptError(f"prompt '{name}' is not a template name (lowercase letters, digits and _): name a file "
                          f"of {prompts_dir} without its .yaml, or NAME@ALIAS for the prompt registry")
    path = prompts_dir / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in prompts_dir.glob("*.yaml"))
        raise PromptError(f"prompt '{name}' not found: no {path}; known prompts: {known}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        prompt = PromptTemplate.model_validate(data)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PromptError(f"{path}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'template'}: {e['msg']}" for e in exc.errors())
        raise PromptError(f"{path}: {problems}") from None
    if prompt.name != name:
        raise PromptError(f"{path}: name '{prompt.name}' does not match the file name '{name}'")
    locked = read_lock(prompts_dir).get(prompt.ref)
    if locked is not None and locked != prompt.sha256:
        raise PromptError(f"{path}: the text of {prompt.ref} changed (sha256 {prompt.sha256[:12]}, locked "
                          f"{locked[:12]} in {LOCK_FILE}): bump `version` and add '{prompt.name}@v{prompt.version + 1} "
                          "<sha256>' to the lock, so runs and cached answers never mix two texts under one version")
    return prompt


def read_lock(prompts_dir: Path) -> dict[str, str]:
    """Released prompt versions and their content hashes (empty when the folder has no lock file)."""
    path = prompts_dir / LOCK_FILE
    if not path.is_file():
        return {}
    entries = [line.split() for line in path.read_text(encoding="utf-8").splitlines()
               if line.strip() and not line.startswith("#")]
    return {ref: sha for ref, sha in entries}


TAG_NAMES = ("chunk", "context", "question", "scratchpad", "observation", "thought", "search", "steps_left",
             "answer_to_check", "draft", "problems", "paths", "path", "reference", "answer_a", "answer_b", "answer",
             "reasoning")  # every tag the prompts (and the strategies' scratchpads) use
# Characters a reader (or a tokenizer) skips: soft hyphen, zero-width space/joiners, direction marks, word joiner,
# invisible operators, BOM. "</\u200bchunk>" reads as "</chunk>", so they may sit anywhere inside a look-alike.
_INVISIBLE = "\u00ad\u200b-\u200f\u2060-\u2064\ufeff"
_NAMES = "|".join(f"[{_INVISIBLE}]*".join(map(re.escape, name)) for name in TAG_NAMES)
_GAP = rf"[\s{_INVISIBLE}]*"
# The "<" of a look-alike of the prompts' tags ("</ chunk>", "<\n/Chunk>", and after folding "＜／ｃｈｕｎｋ＞"), or of
# a chat template's special token ("<|im_start|>", "<|eot_id|>", "<|system|>"): some servers parse those even inside
# a message's content, which would let quoted data open a system or user turn of its own.
STRUCTURE_TAGS = re.compile(rf"<(?={_GAP}[/\u2044\u2215]?{_GAP}(?:{_NAMES})\b)|<(?=\|[^|<>\s]{{1,64}}\|>)", re.I)


def _fold(text: str) -> str:
    """`text` with each character replaced by its NFKC form where that is one character (full-width "＜／", math
    letters, the Kelvin sign): look-alikes are found in the folded text, and its positions are `text`'s."""
    if text.isascii():
        return text
    return "".join(folded if len(folded := unicodedata.normalize("NFKC", ch)) == 1 else ch for ch in text)


def quote_data(text: str) -> str:
    """Text from documents or earlier replies, with look-alikes of the prompts' own tags (and chat-template special
    tokens) neutralized: their "<" becomes "&lt;", so quoted data can never open or close a block of the prompt. Only
    that character changes; the rest of the text reaches the model as written."""
    starts = [m.start() for m in STRUCTURE_TAGS.finditer(_fold(text))]
    if not starts:
        return text
    pieces, last = [], 0
    for start in starts:
        pieces += [text[last:start], "&lt;"]
        last = start + 1
    return "".join([*pieces, text[last:]])


def quote_attribute(value: str) -> str:
    """A value for a tag attribute of the prompt (a chunk id comes from the document's own id field): quoted data
    that cannot end its quotes either, so `id="x"><question>..."` stays one attribute."""
    return quote_data(value).replace('"', "&quot;")


def format_reasoning(chain: ReasoningSteps) -> str:
    """An answer's chain of thought as quoted data for a judge; says so when there is none."""
    lines = [f"problem: {chain.problem}" if chain.problem else "", f"context: {chain.context}" if chain.context else "",
             *(f"step {n}: {step}" for n, step in enumerate(chain.steps, start=1)),
             f"verification: {chain.verification}" if chain.verification else ""]
    return quote_data("\n".join(line for line in lines if line)) or "(no reasoning given)"


def format_chunks(chunks: list[RetrievedChunk]) -> str:
    """Retrieved text as quoted data: each chunk in its own tag."""
    return "\n".join(f'<chunk id="{quote_attribute(c.chunk_id)}" score="{c.score:.3f}">\n{quote_data(c.text)}\n</chunk>'
                      for c in chunks)
