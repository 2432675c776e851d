"""Any input gets a result or a typed error, never a crash (Hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from complaint_motive import ComplaintMotiveError, InputError, MotiveAnalyzer
from complaint_motive.analysis.schema import MotiveAnalysis

_FAST = settings(max_examples=120, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])

texts = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=60).map(lambda t: f"<b>{t}</b>"),
    st.sampled_from(["😡😡😡", "\x00\x01\x02", "   ", "&lt;script&gt;", "退款" * 5000,
                     "[1] 客户: 我要投诉\n[2] 客服: 您好", "[1] 客服: 您好", "ok"]),
)
turns = st.lists(st.fixed_dictionaries({
    "role": st.sampled_from(["customer", "agent", "客户", "客服", "robot"]),
    "text": st.one_of(st.text(max_size=80), st.integers())}), max_size=4)


@_FAST
@given(raw=st.one_of(texts, turns, st.none(), st.integers(), st.floats()))
def test_any_input_gets_a_result_or_a_typed_error(offline: MotiveAnalyzer, raw: object) -> None:
    try:
        result = offline.analyze(raw)
    except InputError as error:
        assert error.message and "Traceback" not in error.message
        return
    assert isinstance(result, MotiveAnalysis)
    assert result.citations and result.reply.text


@_FAST
@given(raw=st.lists(st.one_of(texts, st.none()), max_size=12))
def test_a_batch_returns_one_outcome_per_input(offline: MotiveAnalyzer, raw: list) -> None:
    outcomes = offline.analyze_many(raw)
    assert [o.index for o in outcomes] == list(range(len(raw)))
    for outcome in outcomes:
        assert (outcome.result is None) != (outcome.error is None)
        if outcome.error:
            assert outcome.error["kind"] == "input"


def test_errors_share_one_family() -> None:
    assert issubclass(InputError, ComplaintMotiveError) and issubclass(InputError, ValueError)
