"""Supply-chain security for model files: scan them before they are loaded (`vallum model scan`).

>>> from vallum.supplychain import ModelScanner, safe_load
>>> reports = ModelScanner().scan(["./my-model"])        # one FileReport per file, with findings
>>> weights = safe_load("model.safetensors")             # scans first; refuses unsafe files
"""

from vallum.supplychain.commands import run_model_bom, run_model_scan
from vallum.supplychain.errors import ModelRejectedError, SupplyChainError
from vallum.supplychain.policy import Limits, ModelScanPolicy, load_policy
from vallum.supplychain.report import FileReport, FileVerdict, ModelFinding
from vallum.supplychain.safe_load import safe_load, verify
from vallum.supplychain.scanner import ModelScanner

__all__ = [
    "FileReport",
    "FileVerdict",
    "Limits",
    "ModelFinding",
    "ModelRejectedError",
    "ModelScanPolicy",
    "ModelScanner",
    "SupplyChainError",
    "load_policy",
    "run_model_bom",
    "run_model_scan",
    "safe_load",
    "verify",
]
