"""Where the bundled prompts and corpus live: inside an installed wheel, or in a checkout."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


@cache
def data_root() -> Path:
    """The folder holding ``prompts/`` and ``corpus/``.

    A wheel carries them as ``complaint_motive/_data``; an editable install or a plain
    checkout reads them from the repository root (``plugin/`` is the source root).
    """
    for candidate in (_PACKAGE_DIR / "_data", _PACKAGE_DIR.parents[1]):
        if (candidate / "corpus" / "taxonomy.yaml").is_file():
            return candidate
    from .errors import ConfigurationError

    raise ConfigurationError(
        f"cannot find the bundled corpus next to {_PACKAGE_DIR}; reinstall complaint-motive"
    )


def corpus_dir() -> Path:
    return data_root() / "corpus"


def prompts_dir() -> Path:
    return data_root() / "prompts"


def fingerprint(paths: list[Path], *extra: str) -> str:
    """A short content hash of files (by name and bytes) and extra strings."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for item in extra:
        digest.update(item.encode())
    return digest.hexdigest()[:16]
