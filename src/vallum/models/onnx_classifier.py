"""Runtime for Hugging Face sequence classifiers exported to ONNX (Prompt Guard, DeBERTa injection models).

A model directory holds `model.onnx` (or `onnx/model.onnx`), `tokenizer.json` (the `tokenizers` library's
format) and `config.json` (whose `id2label` names the classes). A text longer than `max_length` tokens is
cut into overlapping windows and scored as its most suspicious window, so an injection hidden at the end
of a long document is not truncated away. Windows of a whole batch are sorted by length and run in
padded chunks, so short texts do not pay for long ones.

onnxruntime and tokenizers are imported only when a model is loaded: the default pipeline never pays
for them, and a missing extra is reported as a `DetectorError` that says what to install.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vallum.errors import DetectorError

INSTALL_HINT = "install the optional extra: pip install 'vallum[onnx]'"
MODEL_FILES = ("model.onnx", "onnx/model.onnx")
# Class names that mean "this text attacks the model", across the common prompt-injection classifiers.
DEFAULT_POSITIVE_LABELS = frozenset({"INJECTION", "JAILBREAK", "MALICIOUS", "UNSAFE", "ATTACK"})
# Binary models exported without names (Llama Prompt Guard 2) call the attack class LABEL_1.
_UNNAMED_BINARY = {"LABEL_0", "LABEL_1"}
_TOKEN_INPUTS = frozenset({"input_ids", "attention_mask", "token_type_ids"})


@dataclass(frozen=True, slots=True)
class WindowScore:
    """A text's score: the highest positive-class probability over its windows, and where that window lies."""

    score: float
    start: int
    end: int
    windows: int


class OnnxSequenceClassifier:
    """Scores texts with an ONNX sequence classifier: probability mass on the positive labels."""

    def __init__(
        self,
        directory: str | Path,
        *,
        labels: Sequence[str] | None = None,
        max_length: int = 512,
        overlap: int | None = None,
        batch_size: int = 16,
        threads: int = 1,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        directory = Path(directory).expanduser()
        if not directory.is_dir():
            raise DetectorError(f"model directory {directory} does not exist or is not a directory")
        if batch_size < 1 or threads < 0:
            raise DetectorError(f"batch_size must be >= 1 and threads >= 0, got {batch_size} and {threads}")
        ort, tokenizers = _import_runtime()
        model_path = _find(directory, MODEL_FILES, "the ONNX model")
        config_path = _find(directory, ("config.json", "onnx/config.json"), "config.json")
        config = _read_config(config_path)
        self.directory = directory
        self.batch_size = batch_size
        self.max_length = max_length
        self.id2label = _id2label(config, config_path)
        self.positive = _positive_indices(self.id2label, labels, config_path)
        self.positive_labels = tuple(self.id2label[i] for i in self.positive)
        tokenizer_path = _find(directory, ("tokenizer.json", "onnx/tokenizer.json"), "tokenizer.json")
        self._tokenizer = _load_tokenizer(tokenizers, tokenizer_path, max_length, overlap)
        # Padded positions are masked out, so the pad id only has to be valid for the embedding table.
        pad = config.get("pad_token_id")
        self._pad_id = pad if isinstance(pad, int) else 0
        self._session = _load_session(ort, model_path, threads, providers)
        self._inputs = _check_inputs(self._session, model_path)

    def score(self, texts: Sequence[str]) -> list[WindowScore]:
        """One `WindowScore` per text, from one pass over the windows of all of them."""
        owners: list[int] = []
        windows: list[Any] = []  # tokenizers.Encoding, one per window
        for i, encoding in enumerate(self._tokenizer.encode_batch(list(texts))):
            for window in (encoding, *encoding.overflowing):
                owners.append(i)
                windows.append(window)
        probabilities = self._positive_probability(windows)
        per_text: list[list[int]] = [[] for _ in texts]
        for k, i in enumerate(owners):
            per_text[i].append(k)
        scores = []
        for ks in per_text:
            top = max(ks, key=lambda k: probabilities[k])
            start, end = _char_range(windows[top])
            scores.append(WindowScore(float(probabilities[top]), start, end, len(ks)))
        return scores

    def _positive_probability(self, windows: Sequence[Any]) -> npt.NDArray[np.float64]:
        out = np.zeros(len(windows), dtype=np.float64)
        # Sorting by length keeps padding (wasted compute) small inside each chunk.
        order = sorted(range(len(windows)), key=lambda k: len(windows[k].ids))
        for begin in range(0, len(order), self.batch_size):
            chunk = order[begin : begin + self.batch_size]
            logits = self._run([windows[k] for k in chunk])
            probabilities = _softmax(logits)
            out[chunk] = probabilities[:, self.positive].sum(axis=1)
        return out

    def _run(self, windows: Sequence[Any]) -> npt.NDArray[np.float64]:
        width = max(len(w.ids) for w in windows)
        ids = np.full((len(windows), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(windows), width), dtype=np.int64)
        for row, window in enumerate(windows):
            ids[row, : len(window.ids)] = window.ids
            mask[row, : len(window.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (logits,) = self._session.run(
            [self._session.get_outputs()[0].name], {n: feed[n] for n in self._inputs}
        )
        logits = np.asarray(logits, dtype=np.float64)
        if logits.ndim != 2 or logits.shape[1] != len(self.id2label):
            raise DetectorError(
                f"{self.directory}: model output has shape {logits.shape}; expected (batch, {len(self.id2label)}) "
                "logits matching config.json id2label"
            )
        return logits


def _import_runtime() -> tuple[Any, Any]:
    try:
        import onnxruntime
        import tokenizers
    except ImportError as exc:
        raise DetectorError(
            f"the ONNX model backend needs {exc.name or 'onnxruntime'}: {INSTALL_HINT}"
        ) from exc
    return onnxruntime, tokenizers


def _find(directory: Path, candidates: Sequence[str], what: str) -> Path:
    for name in candidates:
        if (directory / name).is_file():
            return directory / name
    tried = ", ".join(str(directory / name) for name in candidates)
    raise DetectorError(f"{what} not found; looked for {tried}")


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DetectorError(f"{path}: cannot read the model config: {exc}") from exc
    if not isinstance(config, dict):
        raise DetectorError(f"{path}: the model config must be a JSON object")
    return config


def _id2label(config: dict[str, Any], path: Path) -> dict[int, str]:
    try:
        id2label = {int(k): str(v) for k, v in config["id2label"].items()}
    except (KeyError, AttributeError, ValueError) as exc:
        raise DetectorError(f"{path}: needs id2label, a mapping of class index to name: {exc!r}") from exc
    if sorted(id2label) != list(range(len(id2label))) or len(id2label) < 2:
        raise DetectorError(f"{path}: id2label must number the classes 0..n-1 (n >= 2), got {id2label}")
    return id2label


def _positive_indices(
    id2label: dict[int, str], labels: Sequence[str] | None, config: Path
) -> tuple[int, ...]:
    names = {name.upper(): index for index, name in id2label.items()}
    if labels is not None:
        wanted = [label.upper() for label in labels]
        missing = [label for label, up in zip(labels, wanted, strict=True) if up not in names]
        if missing or not wanted:
            raise DetectorError(
                f"{config}: `labels` must name model classes; {missing or 'none given'} "
                f"not in id2label {sorted(id2label.values())}"
            )
        chosen = [names[up] for up in wanted]
    elif set(names) == _UNNAMED_BINARY:
        chosen = [names["LABEL_1"]]
    else:
        chosen = [index for name, index in names.items() if name in DEFAULT_POSITIVE_LABELS]
        if not chosen:
            raise DetectorError(
                f"{config}: no class of {sorted(id2label.values())} is a known attack label "
                f"({', '.join(sorted(DEFAULT_POSITIVE_LABELS))}); name the attack class(es) with the `labels` option"
            )
    if len(set(chosen)) == len(id2label):
        raise DetectorError(f"{config}: labels cover every class, so every text would score 1; leave one out")
    return tuple(sorted(set(chosen)))


def _load_tokenizer(tokenizers: Any, path: Path, max_length: int, overlap: int | None) -> Any:
    try:
        tokenizer = tokenizers.Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises plain Exception for malformed files
        raise DetectorError(f"{path}: not a valid tokenizers file: {exc}") from exc
    content = max_length - tokenizer.num_special_tokens_to_add(False)
    overlap = content // 4 if overlap is None else overlap
    if content < 1 or not 0 <= overlap < content:
        raise DetectorError(
            f"max_length {max_length} leaves {content} tokens per window after special tokens; "
            f"overlap must be in [0, {content}), got {overlap}"
        )
    # The file's own padding/truncation settings are replaced: windows are made here and padded per chunk.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length, stride=overlap)
    return tokenizer


def _load_session(ort: Any, path: Path, threads: int, providers: Sequence[str]) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own non-exported exception types
        raise DetectorError(f"{path}: onnxruntime could not load the model: {exc}") from exc


def _check_inputs(session: Any, path: Path) -> tuple[str, ...]:
    names = tuple(i.name for i in session.get_inputs())
    unknown = [n for n in names if n not in _TOKEN_INPUTS]
    if unknown or "input_ids" not in names:
        raise DetectorError(
            f"{path}: model inputs {list(names)} are not a sequence classifier's "
            f"(expected input_ids and optionally attention_mask, token_type_ids)"
        )
    return names


def _char_range(window: Any) -> tuple[int, int]:
    offsets = [
        o for o, special in zip(window.offsets, window.special_tokens_mask, strict=True) if not special
    ]
    if not offsets:
        return 0, 0
    return offsets[0][0], max(end for _, end in offsets)


def _softmax(logits: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]
