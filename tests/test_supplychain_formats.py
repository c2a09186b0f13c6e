"""Format readers: detection from content, and what each format's reader checks."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.supplychain_corpus import (
    GEMMA_TEMPLATE,
    LLAMA3_TEMPLATE,
    OS_SYSTEM_P0,
    QWEN_TEMPLATE,
    call,
    dense,
    g,
    gguf_bytes,
    keras_archive,
    npy_with_pickle,
    s,
    safetensors_bytes,
)
from vallum.supplychain import FileReport, FileVerdict, ModelScanner, ModelScanPolicy
from vallum.supplychain.detect import detect_format
from vallum.supplychain.policy import Limits
from vallum.supplychain.report import ModelFinding


def scan(path: Path, policy: ModelScanPolicy | None = None) -> FileReport:
    return ModelScanner(policy).scan_file(path)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def rules(report: FileReport) -> set[str]:
    return {f.rule for f in report.findings}


def only(report: FileReport, rule: str) -> list[ModelFinding]:
    return [f for f in report.findings if f.rule == rule]


# -- detection ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("model.safetensors", OS_SYSTEM_P0, "pickle?"),  # plain ASCII: confirmed by reading it as a pickle
        ("weights.bin", b"PK\x03\x04rest", "zip"),
        ("data.dat", b"\x93NUMPY\x01\x00", "numpy"),
        ("model.pkl", b"GGUF\x03\x00\x00\x00", "gguf"),
        ("x", b"\x89HDF\r\n\x1a\n", "hdf5"),
        ("x", b"\x80\x04\x95", "pickle"),
        ("x.joblib", b"\x78\x9c\x01\x02", "compressed"),
        ("x", b"\x1f\x8b\x08", "compressed"),
        ("x", b"\x7fELF\x02", "executable"),
        ("run.sh", b"#!/bin/sh\necho\n", "executable"),
        ("x.py", b"import os\n", "python"),
        ("chat_template.jinja", b"{{ x }}", "chat-template"),
        ("config.json", b'{"a": 1}', "json"),
        ("README.md", b"# model\n", "text"),
        ("tokenizer.model", b"\x0a\x0b\x0a\x05<unk>", "sentencepiece"),
        ("empty", b"", "empty"),
    ],
)
def test_format_is_detected_from_content(name: str, data: bytes, expected: str) -> None:
    assert detect_format(data, name, len(data) or 0) == expected


def test_a_pickle_named_like_safetensors_is_read_as_a_pickle(tmp_path: Path) -> None:
    report = scan(write(tmp_path, "model.safetensors", OS_SYSTEM_P0))
    assert (report.format, report.verdict) == ("pickle", FileVerdict.UNSAFE)


def test_safetensors_is_recognised_by_its_header_whatever_its_name(tmp_path: Path) -> None:
    path = write(tmp_path, "weights.pt", safetensors_bytes({"w": np.zeros(3, np.float32)}))
    assert scan(path).format == "safetensors"


def test_a_protocol_0_pickle_that_breaks_after_importing_is_not_taken_for_text(tmp_path: Path) -> None:
    path = write(tmp_path, "notes.txt", call(g("os", "system"), s("id")) + b"\xff")
    report = scan(path)
    assert report.verdict is FileVerdict.UNSAFE
    assert "VAL-MDL-0101" in rules(report)


def test_plain_text_starting_like_an_opcode_is_text(tmp_path: Path) -> None:
    path = write(tmp_path, "notes.txt", b"(this is just a note)\nlist of things\n")
    assert (scan(path).format, scan(path).verdict) == ("text", FileVerdict.SAFE)


def test_unknown_binary_is_unsupported(tmp_path: Path) -> None:
    report = scan(write(tmp_path, "blob.xyz", bytes(range(256)) * 4))
    assert report.verdict is FileVerdict.UNSUPPORTED
    assert rules(report) == {"VAL-MDL-0002"}


# -- NumPy -------------------------------------------------------------------------------------------------


def test_truncated_npy_is_an_error(tmp_path: Path) -> None:
    buf = io.BytesIO()
    np.save(buf, np.arange(1000.0))
    report = scan(write(tmp_path, "a.npy", buf.getvalue()[:-100]))
    assert report.verdict is FileVerdict.ERROR
    assert "truncated" in report.findings[0].message


def test_npy_header_that_is_not_a_literal_is_an_error(tmp_path: Path) -> None:
    header = b"{'descr': __import__('os').system('id'), 'fortran_order': False, 'shape': (1,)}"
    data = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header) + 1) + header + b"\n"
    report = scan(write(tmp_path, "a.npy", data))
    assert report.verdict is FileVerdict.ERROR
    assert "not a Python literal" in report.findings[0].message


def test_object_array_findings_point_into_the_pickle(tmp_path: Path) -> None:
    report = scan(write(tmp_path, "o.npy", npy_with_pickle(OS_SYSTEM_P0)))
    (critical,) = only(report, "VAL-MDL-0101")
    assert critical.location == "data at offset 128 > offset 0 (GLOBAL)"


# -- safetensors -----------------------------------------------------------------------------------------


def raw_safetensors(header: object, data: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


@pytest.mark.parametrize(
    ("header", "data", "reason"),
    [
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 4, "truncated"),
        ({"w": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}, b"\x00" * 4, "unknown dtype"),
        ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\x00" * 8, "needs 12 bytes"),
        (
            {
                "a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]},
            },
            b"\x00" * 6,
            "overlaps",
        ),
        ({"__metadata__": {"n": 1}}, b"", "strings to strings"),
        ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\x00" * 4, "list of sizes"),
        ({"w": 5}, b"", "exactly dtype, shape and data_offsets"),
    ],
)
def test_malformed_safetensors_is_an_error(tmp_path: Path, header: object, data: bytes, reason: str) -> None:
    report = scan(write(tmp_path, "m.safetensors", raw_safetensors(header, data)))
    assert report.verdict is FileVerdict.ERROR
    assert reason in report.findings[0].message


def test_safetensors_with_duplicate_names_is_an_error(tmp_path: Path) -> None:
    entry = '{"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}'
    text = ('{"w": ' + entry + ', "w": ' + entry + "}").encode()
    report = scan(write(tmp_path, "m.safetensors", struct.pack("<Q", len(text)) + text + b"\x00"))
    assert report.verdict is FileVerdict.ERROR
    assert "appears twice" in report.findings[0].message


def test_safetensors_header_length_past_the_end_is_an_error(tmp_path: Path) -> None:
    report = scan(write(tmp_path, "m.safetensors", struct.pack("<Q", 1 << 20) + b'{"a": 1}'))
    assert report.verdict in (FileVerdict.ERROR, FileVerdict.UNSUPPORTED)


def test_gap_between_safetensors_tensors_is_hidden_data(tmp_path: Path) -> None:
    header = {
        "a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
        "b": {"dtype": "U8", "shape": [2], "data_offsets": [10, 12]},
    }
    report = scan(write(tmp_path, "m.safetensors", raw_safetensors(header, b"\x00" * 12)))
    assert report.verdict is FileVerdict.UNSAFE
    assert "before tensor 'b'" in only(report, "VAL-MDL-0801")[0].message


def test_safetensors_written_by_the_library_are_safe(tmp_path: Path) -> None:
    numpy_api = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "lib.safetensors"
    numpy_api.save_file(
        {"a": np.zeros((3, 3), np.float32), "b": np.arange(7)}, str(path), metadata={"k": "v"}
    )
    assert scan(path).verdict is FileVerdict.SAFE


# -- GGUF ------------------------------------------------------------------------------------------------


def gguf_meta(template: str) -> list[tuple[str, int, object]]:
    return [("general.architecture", 8, "llama"), ("tokenizer.chat_template", 8, template)]


def test_gguf_metadata_is_reported(tmp_path: Path) -> None:
    report = scan(write(tmp_path, "m.gguf", gguf_bytes(gguf_meta(LLAMA3_TEMPLATE), tensors=2)))
    assert (report.verdict, report.details["architecture"], report.details["tensors"]) == (
        FileVerdict.SAFE,
        "llama",
        "2",
    )


def test_gguf_lengths_past_the_end_are_an_error(tmp_path: Path) -> None:
    report = scan(write(tmp_path, "m.gguf", gguf_bytes(gguf_meta("x"), lengths_past_end=True)))
    assert report.verdict is FileVerdict.ERROR
    assert "runs past the end" in report.findings[0].message


def test_gguf_counts_larger_than_the_file_are_an_error(tmp_path: Path) -> None:
    data = b"GGUF" + struct.pack("<IQQ", 3, 1 << 60, 1 << 60)
    report = scan(write(tmp_path, "m.gguf", data))
    assert report.verdict is FileVerdict.ERROR


def test_gguf_array_count_past_the_end_is_an_error(tmp_path: Path) -> None:
    key = b"tokenizer.ggml.tokens"
    data = (
        b"GGUF"
        + struct.pack("<IQQ", 3, 0, 1)
        + struct.pack("<Q", len(key))
        + key
        + struct.pack("<IIQ", 9, 8, 1 << 62)
    )
    report = scan(write(tmp_path, "m.gguf", data))
    assert report.verdict is FileVerdict.ERROR
    assert "more than the rest of the file" in report.findings[0].message


def test_gguf_tensor_data_past_the_end_is_an_error(tmp_path: Path) -> None:
    data = gguf_bytes(gguf_meta("x"), tensors=2)[:-64]
    report = scan(write(tmp_path, "m.gguf", data))
    assert report.verdict is FileVerdict.ERROR
    assert "blk.1.weight" in report.findings[0].message


def test_truncated_gguf_header_is_an_error(tmp_path: Path) -> None:
    data = gguf_bytes(gguf_meta(QWEN_TEMPLATE))
    for cut in (6, 20, 40, 200, 600):
        assert scan(write(tmp_path, "m.gguf", data[:cut])).verdict is FileVerdict.ERROR


# -- chat templates --------------------------------------------------------------------------------------


def template_report(tmp_path: Path, template: str) -> FileReport:
    return scan(write(tmp_path, "chat_template.jinja", template.encode()))


@pytest.mark.parametrize("template", [LLAMA3_TEMPLATE, QWEN_TEMPLATE, GEMMA_TEMPLATE])
def test_real_chat_templates_are_safe(tmp_path: Path, template: str) -> None:
    report = template_report(tmp_path, template)
    assert (report.verdict, report.findings) == (FileVerdict.SAFE, ())


def test_names_a_template_assigns_itself_are_its_own(tmp_path: Path) -> None:
    template = (
        "{% for call in message.tool_calls %}{{ call.name }}{% endfor %}{% set config = 1 %}{{ config }}"
    )
    assert template_report(tmp_path, template).verdict is FileVerdict.SAFE


def test_template_include_is_a_warning(tmp_path: Path) -> None:
    report = template_report(tmp_path, "{% include 'other.jinja' %}")
    assert rules(report) == {"VAL-MDL-0404"}


def test_unknown_template_filter_is_a_notice(tmp_path: Path) -> None:
    report = template_report(tmp_path, "{{ messages | shuffle_everything }}")
    assert (report.verdict, rules(report)) == (FileVerdict.SAFE, {"VAL-MDL-0405"})


def test_template_that_does_not_parse_is_an_error(tmp_path: Path) -> None:
    report = template_report(tmp_path, "{% for x in %}")
    assert report.verdict is FileVerdict.ERROR
    assert "does not parse" in report.findings[0].message


def test_template_nested_beyond_the_parser_is_an_error(tmp_path: Path) -> None:
    report = template_report(tmp_path, "{{ " + "(" * 50_000 + "1" + ")" * 50_000 + " }}")
    assert report.verdict is FileVerdict.ERROR


def test_template_finding_has_its_line(tmp_path: Path) -> None:
    report = template_report(tmp_path, "{{ bos_token }}\n\n{{ x.__class__ }}")
    assert only(report, "VAL-MDL-0401")[0].location == "line 3"


def test_tokenizer_config_chat_template_is_analysed(tmp_path: Path) -> None:
    config = {"chat_template": "{{ cycler.__init__.__globals__.os.popen('id').read() }}"}
    report = scan(write(tmp_path, "tokenizer_config.json", json.dumps(config).encode()))
    assert report.format == "tokenizer-config"
    assert {"VAL-MDL-0401", "VAL-MDL-0402"} <= rules(report)
    assert all(f.location.startswith("chat_template") for f in report.findings)


# -- Keras -----------------------------------------------------------------------------------------------


def test_keras_builtin_function_reference_is_allowed(tmp_path: Path) -> None:
    activation = {
        "module": "keras.activations",
        "class_name": "function",
        "config": "relu",
        "registered_name": None,
    }
    layer = dense("d", 2)
    layer["config"]["activation"] = activation
    assert scan(write(tmp_path, "m.keras", keras_archive([layer]))).verdict is FileVerdict.SAFE


def test_keras_function_from_builtins_is_critical(tmp_path: Path) -> None:
    bad = {"module": "builtins", "class_name": "function", "config": "exec", "registered_name": None}
    layer = dense("d", 2)
    layer["config"]["activation"] = bad
    report = scan(write(tmp_path, "m.keras", keras_archive([layer])))
    assert "builtins.exec" in only(report, "VAL-MDL-0503")[0].message


def test_keras_archive_assets_are_scanned_by_content(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in ("config.json", "metadata.json"):
            z.writestr(name, zipfile.ZipFile(io.BytesIO(keras_archive([dense("d", 1)]))).read(name))
        z.writestr("assets/vocab.pkl", OS_SYSTEM_P0)
    report = scan(write(tmp_path, "m.keras", buf.getvalue()))
    assert only(report, "VAL-MDL-0101")[0].location.startswith("assets/vocab.pkl")


def test_hdf5_weights_without_a_model_config_are_safe(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("w", data=np.zeros(3))
    assert (scan(path).format, scan(path).verdict) == ("hdf5", FileVerdict.SAFE)


# -- ONNX ------------------------------------------------------------------------------------------------


def onnx_model(tmp_path: Path, location: str) -> Path:
    onnx_helper = pytest.importorskip("onnx.helper")
    from onnx import TensorProto

    weight = onnx_helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", location
    node = onnx_helper.make_node("Identity", ["w"], ["y"])
    graph = onnx_helper.make_graph(
        [node], "g", [], [onnx_helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [weight]
    )
    path = tmp_path / "model" / "model.onnx"
    path.parent.mkdir()
    path.write_bytes(onnx_helper.make_model(graph).SerializeToString())
    return path


def test_onnx_external_data_through_a_symlink_leaving_the_folder_is_critical(tmp_path: Path) -> None:
    path = onnx_model(tmp_path, "weights.bin")
    outside = tmp_path / "secret"
    outside.write_bytes(b"\x00" * 4)
    os.symlink(outside, path.parent / "weights.bin")
    assert "through a link" in only(scan(path), "VAL-MDL-0601")[0].message


def test_onnx_external_data_missing_is_a_notice(tmp_path: Path) -> None:
    report = scan(onnx_model(tmp_path, "weights.bin"))
    assert (report.verdict, rules(report)) == (FileVerdict.SAFE, {"VAL-MDL-0604"})


def test_trusted_onnx_domain_from_policy_is_not_flagged(tmp_path: Path) -> None:
    onnx_helper = pytest.importorskip("onnx.helper")
    from onnx import TensorProto

    node = onnx_helper.make_node("Fancy", ["x"], ["y"], domain="com.acme")
    io_info = onnx_helper.make_tensor_value_info
    graph = onnx_helper.make_graph(
        [node], "g", [io_info("x", TensorProto.FLOAT, [1])], [io_info("y", TensorProto.FLOAT, [1])]
    )
    model = onnx_helper.make_model(
        graph, opset_imports=[onnx_helper.make_opsetid("", 17), onnx_helper.make_opsetid("com.acme", 1)]
    )
    path = write(tmp_path, "m.onnx", model.SerializeToString())
    assert scan(path).verdict is FileVerdict.UNSAFE
    assert (
        scan(path, ModelScanPolicy(trusted_onnx_domains=frozenset({"com.acme"}))).verdict is FileVerdict.SAFE
    )


def test_onnx_subgraph_nodes_are_walked(tmp_path: Path) -> None:
    onnx_helper = pytest.importorskip("onnx.helper")
    from onnx import TensorProto

    info = onnx_helper.make_tensor_value_info
    inner = onnx_helper.make_graph(
        [onnx_helper.make_node("PyOpEvil", ["x"], ["y"], domain="ai.onnx.contrib")],
        "inner",
        [],
        [info("y", TensorProto.FLOAT, [1])],
    )
    node = onnx_helper.make_node("If", ["c"], ["y"], then_branch=inner, else_branch=inner)
    graph = onnx_helper.make_graph(
        [node], "g", [info("c", TensorProto.BOOL, [])], [info("y", TensorProto.FLOAT, [1])]
    )
    report = scan(write(tmp_path, "m.onnx", onnx_helper.make_model(graph).SerializeToString()))
    assert "VAL-MDL-0603" in rules(report)


def test_corrupt_onnx_is_an_error(tmp_path: Path) -> None:
    report = scan(write(tmp_path, "m.onnx", b"\x08\x07\x3a\xff\xff\xff\xff\x0f"))
    assert report.verdict is FileVerdict.ERROR


# -- PyTorch ---------------------------------------------------------------------------------------------


def test_pytorch_archive_findings_name_the_member(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, ("echo x",))

    path = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2), "p": Payload()}, path)
    (finding,) = only(scan(path), "VAL-MDL-0101")
    assert finding.location.startswith("m/data.pkl > offset ")


def test_pytorch_without_torch_is_still_scanned(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"epoch": 1}, 2))
        z.writestr("archive/version", "3\n")
        z.writestr("archive/data/0", b"\x00" * 16)
    report = scan(write(tmp_path, "m.bin", buf.getvalue()))
    assert (report.format, report.verdict) == ("pytorch", FileVerdict.SAFE)


# -- Hugging Face folders --------------------------------------------------------------------------------


def test_hf_folder_is_scanned_recursively(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    write(
        folder,
        "config.json",
        json.dumps({"architectures": ["X"], "auto_map": {"AutoModel": "modeling_x.XModel"}}).encode(),
    )
    write(folder, "modeling_x.py", b"import os\n")
    write(folder, "model.safetensors", safetensors_bytes({"w": np.zeros(2, np.float32)}))
    write(folder, ".git/objects/ab/cdef", b"\x78\x9c\x00")
    reports = {Path(r.path).name: r for r in ModelScanner().scan([folder])}
    assert set(reports) == {"config.json", "modeling_x.py", "model.safetensors"}
    assert "present here" in reports["config.json"].findings[0].message
    assert reports["model.safetensors"].verdict is FileVerdict.SAFE


def test_large_data_json_is_not_parsed_but_large_configs_are_an_error(tmp_path: Path) -> None:
    policy = ModelScanPolicy(limits=Limits(max_json_bytes=100))
    big = json.dumps({"model": {"vocab": {f"t{i}": i for i in range(100)}}}).encode()
    assert scan(write(tmp_path, "tokenizer.json", big), policy).verdict is FileVerdict.SAFE
    assert scan(write(tmp_path, "config.json", big), policy).verdict is FileVerdict.ERROR
