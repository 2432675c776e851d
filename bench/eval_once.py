"""One timed run in a fresh process, for the cold figures of ``bench/run.py``.

``python bench/eval_once.py analyze|evaluate INDEX_DIR`` prints the wall seconds of 200
complaints at concurrency 32 against the scripted 1 s endpoint: ``analyze`` through
``analyze_many``, ``evaluate`` through ``aevaluate`` writing the full report. The analyzer is
built and warmed before the clock starts, so the two differ only in what evaluation adds —
including the first import of matplotlib, which a warm process would hide.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the scripted OpenAI-compatible endpoint

from complaint_motive import MotiveAnalyzer  # noqa: E402
from complaint_motive.evaluation.run import aevaluate  # noqa: E402
from complaint_motive.knowledge.exemplars import read_labelled  # noqa: E402
from scripted_llm import ScriptedEndpoint  # noqa: E402


def main() -> None:
    mode, folder = sys.argv[1], Path(sys.argv[2])
    items, _ = read_labelled(REPO / "corpus" / "eval" / "complaints.jsonl")
    dataset = [items[i % len(items)].model_copy(update={"id": f"b{i}"}) for i in range(200)]
    endpoint = ScriptedEndpoint(latency=1.0)
    analyzer = MotiveAnalyzer.from_settings(
        index_dir=folder, backend="llm", openai_api_key="sk-bench", max_retries=0,
        timeout=30, **endpoint.clients())
    analyzer.warm_up()
    started = time.perf_counter()
    if mode == "analyze":
        analyzer.analyze_many([item.text for item in dataset], concurrency=32)
    else:
        with tempfile.TemporaryDirectory(prefix="cm-bench-report-") as report:
            asyncio.run(aevaluate(dataset, analyzer, concurrency=32, report_dir=Path(report)))
    print(time.perf_counter() - started)


if __name__ == "__main__":
    main()
