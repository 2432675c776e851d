"""The guidance documents: parsed into sections, then split into chunks for the index.

A chunk id is ``<document>#<section anchor>`` (``/<n>`` appended when a long section is
split), so it stays stable while the section's text does.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from ..resources import corpus_dir, fingerprint
from .taxonomy import Taxonomy, load_taxonomy

CHUNK_CHARS = 500
CHUNK_OVERLAP = 80

_HEADING = re.compile(r"^(#{1,4})\s+(.*?)\s*(?:\{#([a-z0-9-]+)\})?\s*$")


class Section(BaseModel):
    model_config = ConfigDict(frozen=True)

    document: str
    anchor: str
    path: tuple[str, ...]
    """Headings from the document title down to this section."""
    parents: tuple[str, ...]
    """Anchors of the enclosing sections, outermost first."""
    text: str

    @property
    def ref(self) -> str:
        return f"{self.document}#{self.anchor}"


class GuidanceDocument(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    source_file: str
    date: str | None
    sections: tuple[Section, ...]


class Chunk(BaseModel):
    """One piece of guidance: as the corpus splits it, as the index stores it, and as a
    search returns it (then with its ``score``; the ``search --format json`` row)."""

    model_config = ConfigDict(frozen=True)

    chunk_id: str
    score: float = Field(0.0, description="similarity to the text it was retrieved for; 0 "
                         "until retrieved")
    text: str
    source: str
    """The seed file the guidance comes from."""
    title: str
    section: str
    ref: str
    motives: tuple[str, ...]
    stages: tuple[str, ...]

    @property
    def document(self) -> str:
        """The guidance document's id (the part of ``ref`` before ``#``)."""
        return self.ref.partition("#")[0]


def parse_document(path: Path) -> GuidanceDocument:
    raw = path.read_text(encoding="utf-8")
    _, front, body = raw.split("---", 2)
    meta = yaml.safe_load(front)
    sections: list[Section] = []
    stack: list[tuple[int, str, str]] = []  # (level, heading, anchor)
    current: list[str] = []

    def close() -> None:
        text = "\n".join(current).strip()
        if text and stack:
            level, _, anchor = stack[-1]
            sections.append(Section(
                document=meta["id"], anchor=anchor,
                path=tuple(h for _, h, _ in stack),
                parents=tuple(a for _, _, a in stack[1:-1]), text=text))
        current.clear()

    for line in body.splitlines():
        match = _HEADING.match(line)
        if not match:
            current.append(line)
            continue
        close()
        level, heading, anchor = len(match[1]), match[2], match[3]
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, heading, anchor or "intro"))
    close()
    return GuidanceDocument(id=meta["id"], title=meta["title"], source_file=meta["source_file"],
                            date=None if meta.get("date") is None else str(meta["date"]),
                            sections=tuple(sections))


def guidance_paths(root: Path | None = None) -> list[Path]:
    return sorted((root or corpus_dir()).joinpath("guidance").glob("*.md"))


@cache
def load_guidance(root: Path | None = None) -> tuple[GuidanceDocument, ...]:
    return tuple(parse_document(p) for p in guidance_paths(root))


def corpus_version(root: Path | None = None) -> str:
    """Content hash of the guidance and taxonomy: the index is rebuilt when it changes."""
    root = root or corpus_dir()
    return fingerprint([*guidance_paths(root), root / "taxonomy.yaml"],
                       f"chunks={CHUNK_CHARS}/{CHUNK_OVERLAP}")


def chunk_guidance(documents: tuple[GuidanceDocument, ...] | None = None,
                   taxonomy: Taxonomy | None = None) -> list[Chunk]:
    """Split every section into chunks labelled with the motives and stages it is about.

    A section inherits the labels of the sections enclosing it.
    """
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    documents = documents if documents is not None else load_guidance()
    taxonomy = taxonomy or load_taxonomy()
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=CHUNK_CHARS, chunk_overlap=CHUNK_OVERLAP, keep_separator="end",
        separators=["\n\n", "\n", "。", "!", "?", ";", ",", " ", ""])
    chunks: list[Chunk] = []
    for doc in documents:
        for section in doc.sections:
            refs = [section.ref, *(f"{doc.id}#{a}" for a in section.parents)]
            motives = tuple(dict.fromkeys(m for r in refs for m in taxonomy.motive_ids_for(r)))
            stages = tuple(dict.fromkeys(s for r in refs for s in taxonomy.stage_ids_for(r)))
            pieces = splitter.split_text(section.text)
            for n, piece in enumerate(pieces, start=1):
                chunks.append(Chunk(
                    chunk_id=section.ref if len(pieces) == 1 else f"{section.ref}/{n}",
                    title=doc.title, source=doc.source_file,
                    section=" > ".join(section.path[1:]) or doc.title, ref=section.ref,
                    text=piece.strip(), motives=motives, stages=stages))
    return chunks
