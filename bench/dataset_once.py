"""One timed run in a fresh process, for the ``datasets`` figures of ``bench/run.py``.

``python bench/dataset_once.py analyze|evaluate INDEX_DIR SET.csv REPORT_DIR`` prints the
wall seconds and the process's peak memory (MiB) of the offline analyzer over the CSV:
``analyze`` reads the texts and calls ``analyze_many``; ``evaluate`` runs ``evaluate`` on the
file with slices by channel and lang and writes the full report to REPORT_DIR. The analyzer
is built and warmed before the clock starts.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

from complaint_motive import MotiveAnalyzer, evaluate
from complaint_motive.readers import read_rows
from complaint_motive.settings import Settings


def main() -> None:
    mode, folder, dataset, report = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), \
        Path(sys.argv[4])
    analyzer = MotiveAnalyzer(Settings(index_dir=folder, backend="offline"))
    analyzer.warm_up()
    started = time.perf_counter()
    if mode == "analyze":
        texts = [row.record["text"] for row in read_rows(dataset) if row.record]
        analyzer.analyze_many(texts)
    else:
        evaluate(dataset, analyzer, report_dir=report, by=["channel", "lang"])
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{wall} {peak}")


if __name__ == "__main__":
    main()
