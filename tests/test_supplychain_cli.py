"""`vallum model scan` / `vallum model bom` as functions (exit codes, JSON, SARIF, BOM) and safe_load."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.supplychain_corpus import OS_SYSTEM_P0, Reduce, safetensors_bytes
from vallum.supplychain import (
    ModelRejectedError,
    ModelScanPolicy,
    run_model_bom,
    run_model_scan,
    safe_load,
    verify,
)
from vallum.supplychain.catalogue import bundled_catalogue
from vallum.supplychain.restricted_unpickler import load_pickle


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"architectures": ["TinyNet"], "model_type": "tiny"}))
    (root / "model.safetensors").write_bytes(safetensors_bytes({"w": np.ones((2, 2), np.float32)}))
    (root / "README.md").write_text("# tiny\n")
    return root


@pytest.fixture
def evil(tmp_path: Path) -> Path:
    path = tmp_path / "evil.pkl"
    path.write_bytes(OS_SYSTEM_P0)
    return path


def scan_json(capsys: pytest.CaptureFixture[str], *paths: Path, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    code = run_model_scan(list(paths), format="json", **kwargs)
    return code, json.loads(capsys.readouterr().out)


# -- exit codes ------------------------------------------------------------------------------------------


def test_exit_0_when_every_file_is_safe(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_model_scan([folder]) == 0
    assert "3 files: 3 safe, 0 unsafe, 0 unsupported, 0 error" in capsys.readouterr().out


def test_exit_1_when_any_file_is_unsafe(folder: Path, evil: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_model_scan([folder, evil]) == 1
    out = capsys.readouterr().out
    assert "UNSAFE" in out and "VAL-MDL-0101" in out


def test_exit_1_when_a_file_could_not_be_judged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps(list(range(50)), 4)[:-5])
    (tmp_path / "blob.xyz").write_bytes(bytes(range(256)))
    assert run_model_scan([tmp_path / "cut.pkl"]) == 1
    assert run_model_scan([tmp_path / "blob.xyz"]) == 1
    policy = tmp_path / "p.yaml"
    policy.write_text("allow_unsupported: true\n")
    assert run_model_scan([tmp_path / "blob.xyz"], policy=policy) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"paths": ["/nonexistent/model.pt"]}, "no such file"),
        ({"paths": []}, "nothing to scan"),
        ({"paths": ["."], "format": "xml"}, "unknown format"),
        ({"paths": ["."], "policy": "/nonexistent/policy.yaml"}, "cannot read"),
        ({"paths": ["."], "output": "/nonexistent/dir/out.json"}, "cannot write"),
    ],
)
def test_exit_2_on_a_usage_error(
    kwargs: dict[str, Any],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_model_scan(**kwargs) == 2
    assert message in capsys.readouterr().err


def test_invalid_policy_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("fail_on: sometimes\n")
    assert run_model_scan([tmp_path], policy=policy) == 2
    assert "fail_on" in capsys.readouterr().err


def test_policy_allow_globals_from_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "custom.pkl"
    model.write_bytes(b"\x80\x02cmypackage.models\nNet\n)\x81}b.")
    policy = tmp_path / "p.yaml"
    policy.write_text("allow_globals:\n  mypackage.models: [Net]\n")
    assert run_model_scan([model]) == 1
    assert run_model_scan([model], policy=policy) == 0
    capsys.readouterr()


# -- report shapes ---------------------------------------------------------------------------------------


def test_json_report_shape(folder: Path, evil: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = scan_json(capsys, folder, evil)
    assert code == 1
    assert doc["summary"] == {"safe": 3, "unsafe": 1, "unsupported": 0, "error": 0}
    entry = next(f for f in doc["files"] if f["path"].endswith("evil.pkl"))
    assert set(entry) == {"path", "format", "verdict", "findings"}
    assert (entry["format"], entry["verdict"]) == ("pickle", "unsafe")
    (finding,) = entry["findings"]
    assert set(finding) == {"rule", "severity", "message", "location"}
    assert (finding["rule"], finding["severity"], finding["location"]) == (
        "VAL-MDL-0101",
        "critical",
        "offset 0 (GLOBAL)",
    )


def test_sarif_report_is_valid_sarif_2_1_0(
    folder: Path, evil: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scan.sarif"
    assert run_model_scan([folder, evil], format="sarif", output=out) == 1
    assert capsys.readouterr().out == ""
    doc = json.loads(out.read_text())
    assert doc["version"] == "2.1.0"
    assert doc["$schema"].endswith("sarif-2.1.0.json")
    (run,) = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "vallum"
    rule_ids = [r["id"] for r in driver["rules"]]
    assert rule_ids == [r.id for r in bundled_catalogue().rules]
    for rule in driver["rules"]:
        assert rule["defaultConfiguration"]["level"] in ("error", "warning", "note")
        assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
    assert len(run["artifacts"]) == 4
    (result,) = run["results"]
    assert result["ruleId"] == "VAL-MDL-0101"
    assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
    assert result["level"] == "error"
    assert result["message"]["text"]
    location = result["locations"][0]["physicalLocation"]["artifactLocation"]
    assert run["artifacts"][location["index"]]["location"]["uri"] == location["uri"]
    assert location["uri"].startswith("file://") and location["uri"].endswith("evil.pkl")


def test_text_report_lists_findings_under_their_file(evil: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_model_scan([evil])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("UNSAFE") and lines[0].endswith("[pickle]")
    assert lines[1].split()[:2] == ["critical", "VAL-MDL-0101"]


# -- BOM -------------------------------------------------------------------------------------------------


def test_bom_is_cyclonedx_with_hashes_formats_and_verdicts(folder: Path, tmp_path: Path) -> None:
    (folder / "extra.pkl").write_bytes(OS_SYSTEM_P0)
    out = tmp_path / "bom.json"
    assert run_model_bom(folder, out) == 1
    bom = json.loads(out.read_text())
    assert (bom["bomFormat"], bom["specVersion"], bom["version"]) == ("CycloneDX", "1.6", 1)
    assert bom["serialNumber"].startswith("urn:uuid:")
    assert bom["metadata"]["component"]["modelCard"]["modelParameters"]["modelArchitecture"] == "TinyNet"
    components = {c["name"]: c for c in bom["components"]}
    assert set(components) == {"README.md", "config.json", "extra.pkl", "model.safetensors"}
    weights = components["model.safetensors"]
    assert weights["type"] == "machine-learning-model"
    import hashlib

    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert weights["hashes"] == [{"alg": "SHA-256", "content": digest}]
    props = {p["name"]: p["value"] for p in weights["properties"]}
    assert (props["vallum:format"], props["vallum:verdict"]) == ("safetensors", "safe")
    assert components["config.json"]["type"] == "data"
    (vulnerability,) = bom["vulnerabilities"]
    assert vulnerability["id"] == "VAL-MDL-0101"
    assert vulnerability["ratings"][0]["severity"] == "critical"
    assert vulnerability["affects"] == [{"ref": "file:extra.pkl"}]
    assert bom["dependencies"][0]["dependsOn"] == [c["bom-ref"] for c in bom["components"]]


def test_bom_exit_codes(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_model_bom(folder) == 0
    assert json.loads(capsys.readouterr().out)["bomFormat"] == "CycloneDX"
    assert run_model_bom(folder / "missing") == 2


# -- safe_load -------------------------------------------------------------------------------------------


def test_safe_load_refuses_an_unsafe_file_with_the_reason(evil: Path) -> None:
    with pytest.raises(ModelRejectedError, match=r"evil.pkl is unsafe: VAL-MDL-0101 os.system") as caught:
        safe_load(evil)
    assert caught.value.reports[0].verdict.value == "unsafe"


def test_safe_load_refuses_a_file_it_could_not_judge(tmp_path: Path) -> None:
    path = tmp_path / "cut.npy"
    np.save(path, np.arange(100.0))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ModelRejectedError, match="is error"):
        safe_load(path)


def test_safe_load_returns_arrays(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.arange(6).reshape(2, 3))
    np.savez_compressed(tmp_path / "b.npz", x=np.ones(3), y=np.zeros(2))
    (tmp_path / "c.safetensors").write_bytes(safetensors_bytes({"w": np.arange(4, dtype=np.float32)}))
    assert safe_load(tmp_path / "a.npy").tolist() == [[0, 1, 2], [3, 4, 5]]
    assert sorted(safe_load(tmp_path / "b.npz")) == ["x", "y"]
    assert safe_load(tmp_path / "c.safetensors")["w"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_safe_load_unpickles_object_arrays_with_the_allow_list_only(tmp_path: Path) -> None:
    np.save(tmp_path / "o.npy", np.array(["a", None], dtype=object), allow_pickle=True)
    assert safe_load(tmp_path / "o.npy").tolist() == ["a", None]


def test_safe_load_of_scikit_learn_pickle_and_joblib(tmp_path: Path) -> None:
    joblib = pytest.importorskip("joblib")
    linear_model = pytest.importorskip("sklearn.linear_model")
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = linear_model.LogisticRegression().fit(x, [0, 0, 1, 1])
    (tmp_path / "m.pkl").write_bytes(pickle.dumps(model, 5))
    joblib.dump(model, tmp_path / "m.joblib", compress=3)
    for name in ("m.pkl", "m.joblib"):
        assert safe_load(tmp_path / name).predict([[3.0]]).tolist() == [1]


def test_safe_load_of_pytorch_uses_weights_only(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.arange(3)}, tmp_path / "m.pt")
    assert safe_load(tmp_path / "m.pt")["w"].tolist() == [0, 1, 2]


def test_safe_load_of_a_folder_returns_the_verified_path(folder: Path) -> None:
    assert safe_load(folder) == folder
    assert len(verify(folder)) == 3


def test_the_restricted_unpickler_refuses_what_the_allow_list_lacks(tmp_path: Path) -> None:
    from vallum.supplychain.allowlist import AllowList
    from vallum.supplychain.catalogue import bundled_allow_list

    path = tmp_path / "swapped.pkl"  # as if the file changed between the scan and the load
    path.write_bytes(pickle.dumps(Reduce(os.getcwd, ()), 2))
    with pytest.raises(pickle.UnpicklingError, match="not on the allow-list"):
        load_pickle(path, AllowList(bundled_allow_list()))


def test_policy_object_is_accepted_by_verify(tmp_path: Path) -> None:
    path = tmp_path / "blob.xyz"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(ModelRejectedError):
        verify(path)
    assert verify(path, ModelScanPolicy(allow_unsupported=True))[0].verdict.value == "unsupported"


# -- CI integrations -------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def test_example_scan_policy_loads() -> None:
    from vallum.supplychain import load_policy

    policy = load_policy(REPO / "examples" / "model-scan-policy.yaml")
    assert policy.allow_globals["my_project.models"] == ("TinyNet",)


def test_pre_commit_hook_runs_the_scan_on_model_files() -> None:
    import re

    import yaml

    (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert (hook["id"], hook["entry"], hook["language"]) == (
        "vallum-model-scan",
        "vallum model scan",
        "python",
    )
    pattern = re.compile(hook["files"])
    for name in ("models/model.safetensors", "a/pytorch_model.bin", "x.PKL", "hf/config.json", "m.gguf"):
        assert pattern.search(name), name
    for name in ("src/app.py", "README.md", "hf/vocab.txt"):
        assert not pattern.search(name), name


def test_github_actions_example_scans_and_uploads_sarif() -> None:
    import yaml

    workflow = yaml.safe_load((REPO / "examples" / "github-actions-model-scan.yml").read_text())
    steps = workflow["jobs"]["scan"]["steps"]
    commands = " ".join(step.get("run", "") for step in steps)
    assert "vallum model scan" in commands and "--format sarif" in commands
    assert any(step.get("uses", "").startswith("github/codeql-action/upload-sarif") for step in steps)
