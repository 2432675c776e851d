"""Big runs on Ray: a local cluster started by the test (two CPUs), 20,000 Parquet rows
through `complaint-motive analyze --ray`, and the Python helper over a Ray Dataset."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import ray.data
from typer.testing import CliRunner

from complaint_motive import MotiveAnalysis, MotiveAnalyzer
from complaint_motive.knowledge.exemplars import read_labelled
from complaint_motive.runners.ray_runner import analyze_dataset, connect, iter_outcomes
from complaint_motive.settings import Settings
from complaint_motive.surfaces.cli import app

REPO = Path(__file__).resolve().parents[1]
ROWS = 20_000


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    connect("local", num_cpus=2)  # no dashboard, no usage statistics, nothing downloaded
    yield
    ray.shutdown()


def _texts(name: str = "complaints") -> list[str]:
    """The evaluation set's texts (the set written here is short: the 20,000-row run stays
    about a minute on two quiet cores)."""
    return [item.text for item in read_labelled(REPO / "corpus" / "eval" / f"{name}.jsonl")[0]]


def test_a_big_parquet_file_through_the_cli(cluster: None, settings: Settings,
                                            monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    texts = _texts()
    ids = [f"t-{n:05d}" for n in range(ROWS)]
    column = [texts[n % len(texts)] for n in range(ROWS)]
    for blank in (17, 9_999, ROWS - 1):  # rows that cannot be analysed stay in place
        column[blank] = ""
    pq.write_table(pa.table({"id": ids, "text": column,
                             "product": ["card"] * ROWS}), tmp_path / "big.parquet")
    monkeypatch.setenv("COMPLAINT_MOTIVE_INDEX_DIR", str(settings.index_dir))
    monkeypatch.setenv("COMPLAINT_MOTIVE_BACKEND", "offline")

    run = CliRunner().invoke(app, ["analyze", "--input", str(tmp_path / "big.parquet"),
                                   "--output", str(tmp_path / "out.parquet"), "--ray",
                                   "local", "--quiet"])
    assert run.exit_code == 1, run.output  # 1: some rows are errors, as in any batch

    out = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [row["id"] for row in out] == ids  # every input once, in order
    assert [row["line"] for row in out] == list(range(1, ROWS + 1))
    errors = [n for n, row in enumerate(out) if row["error.kind"] is not None]
    assert errors == [17, 9_999, ROWS - 1]
    assert {out[n]["error.kind"] for n in errors} == {"input"}
    # The workers' answers are the analyzer's own, row for row.
    local = MotiveAnalyzer(settings).analyze_many(column[:200])
    assert [row["primary_motive.id"] for row in out[:200]] == [
        o.result.primary_motive.id if o.result else None for o in local]
    assert [row["stage.id"] for row in out[:200]] == [
        o.result.stage.id if o.result and o.result.stage else None for o in local]


def test_the_python_helper_over_a_ray_dataset(cluster: None, settings: Settings) -> None:
    rows = [{"id": f"r{n}", "text": text, "language": "en" if n % 3 == 0 else None}
            for n, text in enumerate(_texts("real")[:300])]
    rows[5]["language"] = "fr"
    rows[8]["text"] = None
    dataset = ray.data.from_items(rows, override_num_blocks=7)  # blocks, batches
    analysed = analyze_dataset(dataset, settings, workers=2, batch_size=32).materialize()
    assert analysed.schema().names == ["id", "result", "error"]
    outcomes = list(iter_outcomes(analysed))
    assert [o.id for o in outcomes] == [row["id"] for row in rows]
    assert [o.index for o in outcomes] == list(range(len(rows)))
    assert outcomes[5].error is not None and outcomes[5].error["kind"] == "input"
    assert "language must be 'zh' or 'en'" in outcomes[5].error["message"]
    assert outcomes[8].error is not None and outcomes[8].error["kind"] == "input"
    answered = [o for n, o in enumerate(outcomes) if n not in (5, 8)]
    assert all(isinstance(o.result, MotiveAnalysis) for o in answered)
    assert all(o.result and o.result.reply.language == "en"
               for o in outcomes[::3] if o.index not in (5, 8))
    # A table as written by the helper keeps the same rows.
    first = json.loads(analysed.take(1)[0]["result"])
    assert first["primary_motive"]["id"] == outcomes[0].result.primary_motive.id  # type: ignore[union-attr]


def test_the_workers_share_one_chroma_server(cluster: None, chroma_port: int,
                                             tmp_path: Path) -> None:
    """With a Chroma server configured, each actor opens the shared index the driver
    built, and no node builds an embedded store of its own."""
    settings = Settings(chroma_host="127.0.0.1", chroma_port=chroma_port,
                        index_dir=tmp_path / "local", backend="offline")
    MotiveAnalyzer(settings).warm_up()  # the driver builds the index (and the model) once
    rows = [{"id": f"s{n}", "text": text} for n, text in enumerate(_texts()[:40])]
    outcomes = list(iter_outcomes(analyze_dataset(ray.data.from_items(rows), settings,
                                                  workers=1).materialize()))
    assert [o.id for o in outcomes] == [row["id"] for row in rows]
    assert all(o.result is not None and o.result.citations for o in outcomes)
    assert not (tmp_path / "local" / "chroma.sqlite3").exists()
