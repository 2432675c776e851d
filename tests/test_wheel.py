"""The wheel carries prompts/ and corpus/, and the code finds them there."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_and_loads_its_own_corpus(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                    str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("complaint_motive-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "complaint_motive/_data/corpus/taxonomy.yaml" in names
    assert "complaint_motive/_data/prompts/system.txt" in names
    assert "complaint_motive/py.typed" in names

    # A fresh target holding only the wheel; dependencies come from this environment.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(wheel)], check=True)
    probe = (
        "import complaint_motive, complaint_motive.resources as r;"
        "from complaint_motive.knowledge.corpus import chunk_guidance;"
        "from complaint_motive.analysis.prompts import prompt_version;"
        "print(complaint_motive.__file__); print(r.data_root());"
        "print(len(chunk_guidance())); print(prompt_version())"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, check=True,
                         capture_output=True, text=True,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}).stdout
    module, root, chunks, version = out.split()
    assert module.startswith(str(target)) and root.startswith(str(target))
    from complaint_motive.analysis.prompts import prompt_version

    assert int(chunks) > 40 and version == prompt_version()  # the same prompts, packaged
