"""The offline backend (``OfflineBackend``) and the answer it writes (``writer``)."""

from .backend import OfflineBackend

__all__ = ["OfflineBackend"]
