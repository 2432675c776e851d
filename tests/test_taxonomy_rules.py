"""The taxonomy's rules are data: principles with their conditions, risk floors and the
fallback ids live in corpus/taxonomy.yaml, are checked at load, and a new motive or risk
flag needs the YAML (and exemplars) only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from complaint_motive.analysis.schema import MotiveAnalysis
from complaint_motive.errors import ConfigurationError
from complaint_motive.knowledge.taxonomy import load_taxonomy
from complaint_motive.resources import corpus_dir

REPO = Path(__file__).resolve().parents[1]


def _raw() -> dict[str, Any]:
    return yaml.safe_load((corpus_dir() / "taxonomy.yaml").read_text(encoding="utf-8"))


def _write(raw: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _principle(raw: dict[str, Any], principle_id: str) -> dict[str, Any]:
    return next(p for p in raw["principles"] if p["id"] == principle_id)


def test_principles_follow_their_conditions_in_the_taxonomy_order() -> None:
    taxonomy = load_taxonomy()

    def ids(**call: Any) -> list[str]:
        return [p.id for p in taxonomy.principles_for(**call)]

    assert ids(motive="compensation", stage="complaint", leading_need="rational",
               risk="medium") == ["listen", "apologize", "respond_fast", "solve", "follow_up"]
    assert ids(motive="venting", stage="voiced_grievance", leading_need="emotional",
               risk="low") == ["listen", "apologize", "feelings_first", "follow_up"]
    # calm_isolate_neutral: a high risk, or a motive that is a risk in itself
    assert "calm_isolate_neutral" in ids(motive="leverage", stage="latent_grievance",
                                         leading_need="rational", risk="low")
    assert "calm_isolate_neutral" in ids(motive="information", stage="latent_grievance",
                                         leading_need="rational", risk="high")


def test_the_risk_floor_comes_from_the_motive_and_the_stage() -> None:
    taxonomy = load_taxonomy()
    assert taxonomy.risk_floor("venting", "voiced_grievance") == "low"
    assert taxonomy.risk_floor("venting", "complaint") == "medium"
    assert taxonomy.risk_floor("revenge", "latent_grievance") == "medium"
    assert taxonomy.risk_floor("unknown", "latent_grievance") == "low"


def test_a_result_lists_the_principles_and_risk_the_rules_give(offline: Any) -> None:
    result = offline.analyze("你们等着,我要让你们倒闭,跟你们没完!")
    taxonomy = load_taxonomy()
    expected = taxonomy.principles_for(
        motive=result.primary_motive.id, stage=result.stage.id,
        leading_need=result.needs.leading, risk=result.risk.level)
    assert [p.id for p in result.handling.principles] == [p.id for p in expected]
    assert result.risk.level == "high"  # revenge_intent is a high-severity flag


@pytest.mark.parametrize(("change", "message"), [
    (lambda raw: _principle(raw, "solve")["when"].update(motive=["compensaton"]),
     "principle solve: when.motive: 'compensaton' is not a motive or an abstention"),
    (lambda raw: _principle(raw, "respond_fast")["when"].update(stage=["complain"]),
     "principle respond_fast: when.stage: 'complain' is not a stage"),
    (lambda raw: _principle(raw, "solve")["when"].update(motives=["compensation"]),
     "principles.4.when.motives: Extra inputs are not permitted"),
    (lambda raw: raw["defaults"].update(abstain="venting"),
     "defaults: abstain: 'venting' is not an abstention"),
    (lambda raw: raw["defaults"].update(injection_flag="injection"),
     "defaults: injection_flag: 'injection' is not a risk signal"),
    (lambda raw: raw["risk_signals"][4].update(implied_by=["revnge"]),
     "risk signal revenge_intent: implied_by: 'revnge' is not a motive"),
    (lambda raw: raw["motives"][0].update(needs=["emotion"]),
     "motive venting: needs: 'emotion' is not a need"),
    (lambda raw: raw["stages"][3].update(min_risk="severe"),
     "stages.3.min_risk: Input should be 'high', 'medium' or 'low'"),
    (lambda raw: raw["motives"].append(raw["motives"][0]),
     "motives: 'venting' is listed twice"),
])
def test_a_rule_naming_no_real_id_is_a_configuration_error(change: Any, message: str,
                                                             tmp_path: Path) -> None:
    raw = _raw()
    change(raw)
    path = _write(raw, tmp_path / "taxonomy.yaml")
    with pytest.raises(ConfigurationError) as caught:
        load_taxonomy(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_a_taxonomy_that_is_not_yaml_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "taxonomy.yaml"
    path.write_text("motives: [venting\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_taxonomy(path)


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = definitions[node["$ref"].rsplit("/", 1)[-1]]
            return _inline({**target, **{k: v for k, v in node.items() if k != "$ref"}},
                           definitions)
        # a model's title is its class name; a property may itself be called "title"
        return {k: _inline(v, definitions) for k, v in node.items()
                if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_inline(v, definitions) for v in node]
    return node


def test_the_result_json_schema_is_the_published_one() -> None:
    """The public JSON output's shape, classes inlined (so merging two identical classes
    changes nothing). A deliberate change of the output updates tests/data/ with it."""
    schema = MotiveAnalysis.model_json_schema()
    shape = _inline(schema, schema.pop("$defs"))
    published = json.loads((REPO / "tests" / "data" / "motive_analysis.schema.json")
                           .read_text(encoding="utf-8"))
    assert shape == published


# A tenth motive and an eighth risk flag, written as a team would add them: YAML entries,
# one principle condition, and a few labelled exemplars. No Python changes.
_SAFETY = {
    "id": "safety", "zh": "安全", "en": "Safety", "needs": ["factual", "respect"],
    "leading_need": "rational", "min_risk": "high",
    "definition": "The customer reports a hazard to people's safety and wants it stopped.",
    "frameworks": [{"framework": "needs", "name": "安全需求", "ref": "complaint-motives#needs"}],
    "cues": ["安全隐患", "漏电", "触电", "冒烟", "着火", "爆炸", "起火", "短路", "有毒", "异味刺鼻",
             "safety hazard", "caught fire", "electric shock", "smoke", "exploded", "sparks",
             "fire hazard", "toxic", "dangerous", "recall"],
    "handling": {"zh": ["立即记录隐患细节,按安全事件流程上报并跟进。"],
                 "en": ["Record the hazard in detail and report it as a safety incident."]},
    "avoid": {"zh": ["淡化安全隐患。"], "en": ["Playing the hazard down."]},
    "reply": {"zh": "感谢您告诉我们这个安全隐患,我们会立即上报并跟进处理。",
              "en": "Thank you for telling us about this hazard; we are reporting it now."},
    "refs": ["complaint-management#process"],
}
_INJURY = {"id": "injury", "zh": "人身伤害", "en": "Injury", "severity": "high",
           "cues": ["受伤", "烫伤", "烧伤", "住院", "流血", "injured", "hospital", "burned"],
           "refs": ["complaint-management#process"]}
_SAFETY_TEXTS = [
    ("充电器插上就冒烟,差点着火,这是严重的安全隐患", "voiced_grievance", "zh"),
    ("热水器漏电,洗澡时被电了一下,太危险了", "voiced_grievance", "zh"),
    ("电暖器用了一晚上插头烧黑了,还有火花,会出人命的", "voiced_grievance", "zh"),
    ("买的锅一加热就有刺鼻的异味,怀疑有毒,赶紧召回吧", "voiced_grievance", "zh"),
    ("电动车电池在楼道里起火了,你们必须给个说法,不然我去12315", "latent_complaint", "zh"),
    ("插座短路冒火花,孩子差点触电,我要投诉", "complaint", "zh"),
    ("The charger sparked and caught fire on my desk. This is a fire hazard.",
     "voiced_grievance", "en"),
    ("Your kettle gave me an electric shock. Dangerous product, recall it.",
     "voiced_grievance", "en"),
    ("The power bank exploded in my bag. Smoke everywhere. Unsafe!", "voiced_grievance", "en"),
    ("Toxic smell from the heater, my family felt sick. This is a safety hazard.",
     "latent_complaint", "en"),
]
_SCRIPT = """
import json, sys
from pathlib import Path
import complaint_motive
from complaint_motive.analyzer import MotiveAnalyzer
from complaint_motive.settings import Settings
from complaint_motive.knowledge.taxonomy import MotiveId, RiskFlagId

analyzer = MotiveAnalyzer(Settings(index_dir=Path(sys.argv[1]), backend="offline"))
result = analyzer.analyze(sys.argv[2])
print(json.dumps({"package": complaint_motive.__file__, "motives": [m.value for m in MotiveId],
                  "flags": [f.value for f in RiskFlagId],
                  "result": result.model_dump(mode="json")}, ensure_ascii=False))
"""


def test_a_new_motive_and_risk_flag_need_only_the_yaml_and_exemplars(tmp_path: Path) -> None:
    """A copy of the checkout whose taxonomy has one more motive and one more risk flag:
    the same code, run offline end to end, answers with them."""
    copy = tmp_path / "checkout"
    shutil.copytree(REPO / "plugin" / "complaint_motive", copy / "plugin" / "complaint_motive",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "prompts", copy / "prompts")
    shutil.copytree(REPO / "corpus", copy / "corpus")
    raw = _raw()
    raw["motives"].append(_SAFETY)
    raw["risk_signals"].append(_INJURY)
    _principle(raw, "respond_fast")["when"]["motive"] = ["safety"]
    _write(raw, copy / "corpus" / "taxonomy.yaml")
    with (copy / "corpus" / "exemplars.jsonl").open("a", encoding="utf-8") as handle:
        for n, (text, stage, lang) in enumerate(_SAFETY_TEXTS, start=1):
            handle.write(json.dumps({"id": f"safety-{n}", "text": text, "motive": "safety",
                                     "stage": stage, "lang": lang, "source": "written-here"},
                                    ensure_ascii=False) + "\n")

    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path / "index"),
         "新买的电热毯通电后冒烟,我的腿被烫伤了,这是严重的安全隐患!"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(copy / "plugin")})
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout)
    assert Path(found["package"]).is_relative_to(copy)  # the copy's code and corpus ran
    assert "safety" in found["motives"] and "injury" in found["flags"]
    result = found["result"]
    assert result["primary_motive"]["id"] == "safety"
    assert result["primary_motive"]["handling"] == _SAFETY["handling"]["zh"]
    assert "injury" in result["risk"]["flags"] and result["risk"]["level"] == "high"
    assert "烫伤" in result["risk"]["evidence"]["injury"]
    assert "respond_fast" in [p["id"] for p in result["handling"]["principles"]]
    assert _SAFETY["avoid"]["zh"][0] in result["handling"]["avoid"]
    assert _SAFETY["reply"]["zh"] in result["reply"]["text"]
