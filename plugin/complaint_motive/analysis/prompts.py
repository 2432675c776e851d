"""The prompt files in ``prompts/``, filled from the taxonomy and the retrieved context.

>>> from complaint_motive.analysis.prompts import prompt_version
>>> prompt_version().startswith("5+")
True
"""

from __future__ import annotations

import json
import re
import secrets
from functools import cache
from typing import TYPE_CHECKING

import yaml
from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate

from ..knowledge.taxonomy import load_taxonomy
from ..resources import fingerprint, prompts_dir
from .injection import neutralise

if TYPE_CHECKING:
    from ..knowledge.corpus import Chunk
    from ..knowledge.index import RetrievedExemplar
    from .clauses import Clause
    from .inputs import ComplaintInput



@cache
def _file(name: str) -> str:
    return (prompts_dir() / name).read_text(encoding="utf-8").strip()


@cache
def prompt_version() -> str:
    """The manifest's version plus a content hash of every prompt file."""
    manifest = yaml.safe_load(_file("manifest.yaml"))
    return f"{manifest['version']}+{fingerprint(list(prompts_dir().glob('*.txt')))[:8]}"


_LANGUAGE_NAMES = {"zh": "Chinese", "en": "English"}


@cache
def _label_tables() -> dict[str, str]:
    taxonomy = load_taxonomy()

    def ids(labels: tuple[object, ...]) -> str:
        return ", ".join(label.id for label in labels)  # type: ignore[attr-defined]

    return {
        # The definition's first clause is enough to tell motives apart and keeps the prompt
        # short (the budget is measured in bench/).
        "motive_table": "\n".join(f"- {m.id} ({m.zh}): {m.definition.split(';')[0]}"
                                  for m in taxonomy.motives),
        "stage_table": "\n".join(f"- {s.id} ({s.zh}): {s.definition}" for s in taxonomy.stages),
        "need_ids": ids(taxonomy.needs), "legitimacy_ids": ids(taxonomy.legitimacy),
        "source_ids": ids(taxonomy.sources), "risk_ids": ids(taxonomy.risk_signals),
    }


#: Characters of a guidance chunk shown to the model: the median chunk is ~190, and the
#: tail of a long one costs prompt time on a local server without changing the answer.
GUIDANCE_CHARS = 240


@cache
def _template(with_skeleton: bool) -> ChatPromptTemplate:
    # Everything that is the same for every complaint comes first, in the system message,
    # byte for byte: providers (and a local server's prompt cache) reuse a prompt's
    # identical leading tokens. Everything per request, the fence code first, follows.
    static = [_file("system.txt"), _file("instructions.txt")]
    if with_skeleton:
        static.append(_file("answer_skeleton.txt"))
    human = [_file("boundary.txt"), _file("guidance.txt"), "{examples_block}",
             _file("complaint.txt")]
    return ChatPromptTemplate.from_messages(
        [("system", "\n\n".join(static)), ("human", "\n\n".join(human))]
    ).partial(**_label_tables())


def system_text(*, schema_in_prompt: bool = False) -> str:
    """The system message: the same for every complaint (a reply copying it is
    degenerate)."""
    from .schema import answer_skeleton

    values = {"skeleton": answer_skeleton()} if schema_in_prompt else {}
    return str(_template(schema_in_prompt).messages[0].format(  # type: ignore[union-attr]
        **_label_tables(), **values).content)


def _clipped(text: str) -> str:
    return text if len(text) <= GUIDANCE_CHARS else text[:GUIDANCE_CHARS].rstrip() + "…"


def build_messages(complaint: ComplaintInput, clauses: list[Clause], chunks: list[Chunk],
                   examples: list[RetrievedExemplar], *, schema_in_prompt: bool = False,
                   ) -> list[BaseMessage]:
    """The messages for one complaint: a system message that is the same for every
    complaint, then one with the request's fence code, its guidance under handles
    g1…gk, examples, and the complaint as numbered, fenced, neutralised clauses.
    ``schema_in_prompt`` for providers whose JSON mode cannot take a schema (the
    answer's skeleton is then in the system message)."""
    from .clauses import numbered
    from .schema import answer_skeleton

    guidance = "\n".join(f"[g{n}] {_clipped(c.text)}" for n, c in enumerate(chunks, start=1))
    examples_block = ""
    if examples:
        rows = "\n".join(f"- {json.dumps(e.text, ensure_ascii=False)} → primary_motive="
                         f"{e.motive}, stage={e.stage}" for e in examples)
        examples_block = PromptTemplate.from_template(_file("examples.txt")).format(
            examples=rows)
    boundary = new_boundary(complaint)
    values = {
        "guidance": guidance, "examples_block": examples_block,
        "language": _LANGUAGE_NAMES[complaint.language], "boundary": boundary,
        "complaint": numbered(clauses, lambda words: neutralise(words, boundary)),
        "context": _context(complaint, boundary),
    }
    if schema_in_prompt:
        values["skeleton"] = answer_skeleton()
    return _template(schema_in_prompt).format_messages(**values)


def new_boundary(complaint: ComplaintInput) -> str:
    """A code for this request's fences that the text cannot know in advance (and does not
    contain)."""
    while True:
        boundary = secrets.token_hex(6)
        if all(boundary not in t for t in (complaint.text, *(t.text for t in complaint.turns))):
            return boundary


_CODE = re.compile(r"(?<=complaint-)[0-9a-f]{12}|(?<=turn-)[0-9a-f]{12}"
                   r"|(?<=CODE for this request: )[0-9a-f]{12}")


def without_boundary(prompt: str) -> str:
    """``prompt`` (or a request body holding it) with its fence code replaced by ``CODE``:
    what is the same each time the same complaint is prompted (the Batch API recognises
    a batch it submitted before by it)."""
    return _CODE.sub("CODE", prompt)


def _context(complaint: ComplaintInput, boundary: str) -> str:
    """The agent's turns, each in its own fence, as data: under the conversation header when
    the caller passed turns, under a header that says they may be the customer's own
    writing when they were only lines of a text."""
    turns = complaint.agent_turns
    if not turns:
        return ""
    header = "conversation_context.txt" if complaint.turns_given else "transcript_context.txt"
    fenced = "\n".join(f"<turn-{boundary}>[{t.number}] agent: {neutralise(t.text, boundary)}"
                       f"</turn-{boundary}>" for t in turns)
    return PromptTemplate.from_template(_file(header)).format(agent_turns=fenced) + "\n\n"


def reask_text(problems: list[str]) -> str:
    """The re-ask's text; the problems can quote the model's answer (and through it the
    complaint), so they are neutralised like the complaint."""
    return PromptTemplate.from_template(_file("reask.txt")).format(
        problems="\n".join(f"- {neutralise(p)}" for p in problems))
