"""The corpus is the seeds without web furniture; the taxonomy points into it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from complaint_motive.knowledge.corpus import chunk_guidance, load_guidance
from complaint_motive.knowledge.exemplars import load_exemplars, read_labelled
from complaint_motive.knowledge.taxonomy import MotiveId, PrimaryMotiveId, StageId, load_taxonomy
from complaint_motive.resources import corpus_dir

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"
FURNITURE = ["免责声明", "添加企业微信", "上一篇", "下一篇", "填写信息", "我要反馈",
             "www.xing528.com", "培训咨询", "1V1服务", "理财经理"]


def test_every_taxonomy_reference_names_a_real_section() -> None:
    sections = {s.ref for doc in load_guidance() for s in doc.sections}
    refs = load_taxonomy().all_refs()
    assert refs, "the taxonomy cites no guidance"
    missing = sorted(set(refs) - sections)
    assert not missing, f"taxonomy refs without a section: {missing}"


def test_risks_are_implied_only_by_real_motives() -> None:
    taxonomy = load_taxonomy()
    implied = [m for signal in taxonomy.risk_signals for m in signal.implied_by]
    assert implied and all(taxonomy.is_motive(m) for m in implied)


def test_enums_come_from_the_taxonomy() -> None:
    taxonomy = load_taxonomy()
    assert [m.value for m in MotiveId] == [m.id for m in taxonomy.motives]
    assert len(MotiveId) == 9
    assert {"unknown", "not_a_complaint"} <= {m.value for m in PrimaryMotiveId}
    assert [s.value for s in StageId] == ["latent_grievance", "voiced_grievance",
                                          "latent_complaint", "complaint"]


def test_every_motive_has_cues_guidance_replies_and_frameworks() -> None:
    for motive in load_taxonomy().motives:
        assert len(motive.cues) >= 10, motive.id
        assert motive.frameworks, motive.id
        for language in ("zh", "en"):
            assert motive.handling[language] and motive.avoid[language], motive.id
            assert motive.reply[language], motive.id


def test_english_guidance_text_is_english_and_chinese_is_chinese() -> None:
    taxonomy = load_taxonomy()
    localized = [text for m in taxonomy.motives for text in (m.handling, m.avoid, m.reply)]
    localized += [text for s in taxonomy.stages for text in (s.handling, s.explanation)]
    han = re.compile(r"[\u4e00-\u9fff]")
    for both in localized:
        assert all(not han.search(text) for text in _flatten(both.en)), both.en
        assert all(han.search(text) for text in _flatten(both.zh)), both.zh


def _flatten(value: str | tuple[str, ...]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def test_a_motive_with_uneven_translations_is_refused(tmp_path: Path) -> None:
    import yaml

    from complaint_motive.knowledge.taxonomy import Taxonomy

    raw = yaml.safe_load((corpus_dir() / "taxonomy.yaml").read_text(encoding="utf-8"))
    raw["motives"][0]["handling"]["en"] = raw["motives"][0]["handling"]["en"][:1]
    with pytest.raises(ValueError, match="venting: handling"):
        Taxonomy.model_validate(raw)


def test_guidance_has_five_documents_with_front_matter() -> None:
    documents = load_guidance()
    assert [d.source_file[:3] for d in documents] == ["000", "001", "002", "003", "004"]
    for doc in documents:
        assert doc.title and doc.source_file.endswith(".txt") and doc.sections


def test_furniture_is_gone() -> None:
    text = "\n".join(p.read_text(encoding="utf-8")
                     for p in (corpus_dir() / "guidance").glob("*.md"))
    for phrase in FURNITURE:
        assert phrase not in text, phrase


def _fold(text: str) -> str:
    text = re.sub(r"\{#[a-z0-9-]+\}|^#+|^\s*-\s|[•\s]", "", text, flags=re.M)
    return text.replace("(www.xing528.com)", "")


@pytest.mark.skipif(not SEEDS.exists(), reason="the seed documents live in ../shared/seeds")
def test_every_sentence_of_guidance_in_the_seeds_is_kept() -> None:
    corpus = "".join(_fold(p.read_text(encoding="utf-8"))
                     for p in (corpus_dir() / "guidance").glob("*.md"))
    lost = []
    for seed in SEEDS.glob("*.txt"):
        for line in seed.read_text(encoding="utf-8").split("免责声明")[0].splitlines():
            if any(f in line for f in [*FURNITURE, "本课程", "【课程", "首页 理论教育", "时间:",
                                       "【摘要】"]) or re.fullmatch(r"[\d\-: ]+", line.strip()):
                continue  # ads, the course's sales blurb, breadcrumbs, page dates, the
                # site's summary (its sentences repeat the body's)
            for sentence in re.split(r"[。!?]", line):
                sentence = _fold(sentence)
                if len(sentence) >= 6 and sentence not in corpus:
                    lost.append((seed.name, sentence[:40]))
    assert not lost, lost[:5]


def test_chunks_are_labelled_and_ids_are_unique() -> None:
    chunks = chunk_guidance()
    ids = [c.chunk_id for c in chunks]
    assert len(ids) == len(set(ids))
    assert max(len(c.text) for c in chunks) <= 500
    for motive in load_taxonomy().motives:
        assert any(motive.id in c.motives for c in chunks), motive.id
    remedy = next(c for c in chunks if c.chunk_id == "motives-and-purposes#remedy")
    assert remedy.motives == ("compensation",) and remedy.section == "3.补救的心理"


def _grams(text: str) -> set[str]:
    text = re.sub(r"\s+", " ", text.lower())
    return {text[i:i + 5] for i in range(max(1, len(text) - 4))}


@pytest.mark.parametrize("name", ["complaints.jsonl", "real.jsonl"])
def test_no_evaluation_text_is_an_exemplar_or_near_one(name: str) -> None:
    """Character 5-grams: a near duplicate shares half of all its grams with an exemplar
    (Jaccard), or most of its grams sit inside one (a text quoted in a longer one)."""
    exemplars = [(e.id, _grams(e.text)) for e in load_exemplars()]
    evaluation, problems = read_labelled(corpus_dir() / "eval" / name)
    assert not problems and len(evaluation) >= 100
    for item in evaluation:
        grams = _grams(item.text)
        for exemplar_id, other in exemplars:
            shared = len(grams & other)
            assert shared / len(grams | other) < 0.5, (item.id, exemplar_id)
            assert shared / min(len(grams), len(other)) < 0.8, (item.id, exemplar_id)


def test_exemplars_are_mostly_real_and_in_both_languages() -> None:
    exemplars = load_exemplars()
    for motive in MotiveId:
        assert sum(e.motive == motive for e in exemplars) >= 60, motive
    real = [e for e in exemplars if e.source != "written-here"]
    assert all(e.source and e.lang and e.channel for e in real)
    assert len(real) >= 0.4 * len(exemplars)
    assert sum(e.lang == "en" for e in exemplars) >= 0.4 * len(exemplars)


def test_the_real_text_set_is_real_labelled_and_in_both_languages() -> None:
    items, problems = read_labelled(corpus_dir() / "eval" / "real.jsonl")
    assert not problems and len(items) >= 400
    assert all(i.source and i.source != "written-here" and i.channel and i.lang for i in items)
    by_language = {lang: [i for i in items if i.lang == lang] for lang in ("zh", "en")}
    assert all(len(group) >= 0.4 * len(items) for group in by_language.values())
    assert len({i.domain for i in items}) >= 8
    assert len({i.channel for i in items}) >= 3
    for motive in PrimaryMotiveId:
        assert any(i.motive == motive for i in items), motive
    # what is not a complaint has no stage; everything else has one
    assert all((i.stage is None) == (i.motive == "not_a_complaint") for i in items)