"""How strict a model scan is and how far it reads: the `--policy` YAML of `vallum model scan`.

fail_on: warning            # lowest severity that makes a file unsafe (notice|warning|error|critical)
allow_unsupported: false    # exit 0 even when some files are of no known format
ignore_rules: []            # rule ids never reported (VAL-MDL-0403, ...)
allow_globals:              # pickle globals you trust, added to the bundled allow-list
  mypackage.models: [MyModel]
trusted_onnx_domains: []    # custom operator domains whose libraries you ship
keras_allowed_modules: []   # modules (or "prefix.*") a Keras config may name besides Keras's own
limits: {max_depth: 4, ...} # see Limits
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from vallum.core.types import Severity
from vallum.detectors.rules import RuleFileError, SeverityName, load_rule_file
from vallum.supplychain.errors import SupplyChainError


class Limits(BaseModel):
    """Bounds on time and memory per file; past one, the file's verdict is `error` with the reason."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_seconds: float = Field(300.0, gt=0)  # per file
    max_depth: int = Field(4, ge=0)  # archives and pickles nested in each other
    max_archive_members: int = Field(100_000, ge=1)
    max_archive_bytes: int = Field(1 << 40, ge=1)  # declared uncompressed size of a whole archive
    max_compression_ratio: float = Field(200.0, gt=1)  # for a member or stream over 64 MiB expanded
    max_expanded_bytes: int = Field(4 << 30, ge=1)  # one member or compressed stream read expanded
    max_pickle_items: int = Field(20_000_000, ge=1)  # values a pickle keeps (stack, memo, containers)
    max_pickle_nesting: int = Field(2000, ge=1)  # MARKs open at once
    max_header_bytes: int = Field(100 << 20, ge=1)  # safetensors header, GGUF strings and arrays
    max_json_bytes: int = Field(
        64 << 20, ge=1
    )  # JSON parsed (larger data files such as tokenizer.json are not)
    max_template_bytes: int = Field(1 << 20, ge=1)  # one chat template
    max_files: int = Field(1_000_000, ge=1)  # files one scan walks


class ModelScanPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fail_on: SeverityName = "warning"
    allow_unsupported: bool = False
    ignore_rules: frozenset[str] = frozenset()
    allow_globals: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    trusted_onnx_domains: frozenset[str] = frozenset()
    keras_allowed_modules: tuple[str, ...] = ()
    limits: Limits = Field(default_factory=Limits)

    @property
    def fail_severity(self) -> Severity:
        return Severity[self.fail_on.upper()]


def load_policy(path: str | Path | None) -> ModelScanPolicy:
    """The policy in `path`, or the default one; a bad file raises SupplyChainError naming the problem."""
    if path is None:
        return ModelScanPolicy()
    try:
        return load_rule_file(Path(path), ModelScanPolicy)
    except RuleFileError as exc:
        raise SupplyChainError(str(exc).replace("rule file", "model scan policy")) from exc
