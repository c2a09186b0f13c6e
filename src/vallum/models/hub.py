"""Resolve a model reference to a local directory: a path as given, or a Hugging Face hub snapshot.

Only the files the ONNX runtime reads are fetched (not the PyTorch weights). With HF_HUB_OFFLINE set
nothing is downloaded: the model must already be in the local hub cache.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from vallum.errors import DetectorError
from vallum.models.onnx_classifier import INSTALL_HINT

# What the ONNX runtime needs, at the top of a repository or in its `onnx/` folder (Optimum's layout).
_RUNTIME_FILES = ("config.json", "tokenizer.json", "model.onnx", "model.onnx_data")
ALLOW_PATTERNS = [*_RUNTIME_FILES, *(f"onnx/{name}" for name in _RUNTIME_FILES)]
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_TRUE = {"1", "on", "yes", "true"}


def resolve_model_directory(model: str, revision: str | None = None) -> Path:
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists() or not _HUB_ID.fullmatch(model):
        raise DetectorError(
            f"model {model!r} is neither a local directory nor a Hugging Face hub id (owner/name)"
        )
    return _snapshot(model, revision)


def _snapshot(repo_id: str, revision: str | None) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise DetectorError(f"loading hub model {repo_id!r} needs huggingface-hub: {INSTALL_HINT}") from exc
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
    try:
        return Path(
            snapshot_download(
                repo_id, revision=revision, allow_patterns=ALLOW_PATTERNS, local_files_only=offline
            )
        )
    except Exception as exc:  # network, auth (gated repos), missing revision, not in the offline cache
        where = "the local hub cache (HF_HUB_OFFLINE is set)" if offline else "the Hugging Face hub"
        raise DetectorError(
            f"model {repo_id!r} is not a local directory and could not be loaded from {where}: "
            f"{type(exc).__name__}: {exc}. Fetch it beforehand (huggingface-cli download {repo_id}) "
            "or set `model` to a local directory"
        ) from exc
