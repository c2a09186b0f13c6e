"""Pickle analysis: the opcode reader follows pickle.load exactly, and the allow-list judges what it imports."""

from __future__ import annotations

import collections
import datetime
import decimal
import pickle
import pickletools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.supplychain_corpus import OS_SYSTEM_P0, call, g, s, stack_global_memo
from vallum.core.types import Severity
from vallum.supplychain import FileVerdict, ModelScanner, ModelScanPolicy
from vallum.supplychain.pickle_reader import PickleLimits, PickleMachine, PickleMalformed
from vallum.supplychain.policy import Limits


def scan_bytes(tmp_path: Path, data: bytes, name: str = "x.pkl", policy: ModelScanPolicy | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_bytes(data)
    return ModelScanner(policy).scan_file(path)


def globals_by_pickletools(data: bytes) -> set[tuple[str, str]]:
    """The globals a pickle names, by CPython's own opcode walker (memo and stack followed naively)."""
    found: set[tuple[str, str]] = set()
    memo: dict[int, Any] = {}
    stack: list[Any] = []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("GLOBAL", "INST"):
            found.add(tuple(arg.split(" ", 1)))  # type: ignore[arg-type]
            stack.append(None)
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
            stack.append(arg)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else None
        elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = stack[-1] if stack else None
        elif op.name in ("BINGET", "LONG_BINGET", "GET"):
            stack.append(memo.get(arg))
        elif op.name == "STACK_GLOBAL":
            found.add((stack[-2], stack[-1]))
            stack.append(None)
        else:
            stack.append(None)
    return found


VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=300),
    lambda children: (
        st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=5), children, max_size=5)
        | st.frozensets(st.integers(), max_size=3)
    ),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None)
@given(value=VALUES, protocol=st.integers(min_value=0, max_value=5))
def test_reader_reads_every_protocol_to_its_stop(value: Any, protocol: int) -> None:
    data = pickle.dumps(value, protocol)
    run = PickleMachine(data, PickleLimits()).run(0)
    assert run.end == len(data)
    assert {(r.module, r.name) for r in run.globals} == globals_by_pickletools(data)


@pytest.mark.parametrize("protocol", range(6))
def test_reader_names_the_same_globals_as_pickletools_for_rich_objects(protocol: int) -> None:
    value = {
        "od": collections.OrderedDict(a=1),
        "dd": collections.defaultdict(list),
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "money": decimal.Decimal("1.5"),
        "array": np.arange(6.0).reshape(2, 3),
        "scalar": np.float32(2.5),
        "set": {1, 2},
        "bytes": b"\x00" * 300,
    }
    data = pickle.dumps(value, protocol)
    run = PickleMachine(data, PickleLimits()).run(0)
    assert run.end == len(data)
    assert {(r.module, r.name) for r in run.globals} == globals_by_pickletools(data)


def test_stack_global_names_are_resolved_through_the_memo(tmp_path: Path) -> None:
    report = scan_bytes(tmp_path, stack_global_memo("os", "system", "id"))
    (finding,) = report.findings
    assert finding.rule == "VAL-MDL-0101"
    assert "os.system" in finding.message
    assert finding.location == "offset 22 (STACK_GLOBAL)"
    assert "REDUCE at offset 28" in finding.message


def test_finding_names_the_callable_and_the_opcode_offset(tmp_path: Path) -> None:
    data = b"\x80\x02" + g("evil_pkg", "run") + b")R."
    (finding,) = scan_bytes(tmp_path, data).findings
    assert finding.rule == "VAL-MDL-0102"
    assert finding.severity is Severity.ERROR
    assert finding.message.startswith("evil_pkg.run is not on the allow-list")
    assert finding.location == "offset 2 (GLOBAL)"


def test_allow_listed_containers_are_safe(tmp_path: Path) -> None:
    data = pickle.dumps(
        {"od": collections.OrderedDict(a=1), "s": {1}, "c": complex(1, 2), "b": bytearray(b"x")}, 2
    )
    assert scan_bytes(tmp_path, data).verdict is FileVerdict.SAFE


def test_python2_names_are_judged_under_their_python3_names(tmp_path: Path) -> None:
    assert scan_bytes(tmp_path, p0set()).verdict is FileVerdict.SAFE


def p0set() -> bytes:
    return call(g("__builtin__", "set"), b"(lI1\naI2\na") + b"."


def test_a_dotted_name_reaching_dunders_is_critical(tmp_path: Path) -> None:
    module, name = b"torch._utils", b"_rebuild_tensor_v2.__globals__"
    data = b"\x80\x04\x8c" + bytes([len(module)]) + module + b"\x8c" + bytes([len(name)]) + name + b"\x93."
    (finding,) = scan_bytes(tmp_path, data).findings
    assert finding.rule == "VAL-MDL-0101"


def test_policy_allow_globals_lets_a_trusted_class_through(tmp_path: Path) -> None:
    data = b"\x80\x02" + g("mypackage.models", "Net") + b")\x81}b."
    assert scan_bytes(tmp_path, data).verdict is FileVerdict.UNSAFE
    policy = ModelScanPolicy(allow_globals={"mypackage.models": ("Net",)})
    assert scan_bytes(tmp_path, data, policy=policy).verdict is FileVerdict.SAFE


def test_notices_do_not_make_a_file_unsafe_but_fail_on_notice_does(tmp_path: Path) -> None:
    data = pickle.dumps(1, 4) + b"trailing bytes"
    report = scan_bytes(tmp_path, data)
    assert report.verdict is FileVerdict.SAFE
    assert [f.rule for f in report.findings] == ["VAL-MDL-0106"]
    strict = ModelScanPolicy(fail_on="notice")
    assert scan_bytes(tmp_path, data, policy=strict).verdict is FileVerdict.UNSAFE


def test_ignored_rules_are_not_reported(tmp_path: Path) -> None:
    data = b"\x80\x02" + g("evil_pkg", "run") + b")R."
    policy = ModelScanPolicy(ignore_rules=frozenset({"VAL-MDL-0102"}))
    assert scan_bytes(tmp_path, data, policy=policy).verdict is FileVerdict.SAFE


def test_a_pickle_unpickled_by_another_is_scanned_as_strictly(tmp_path: Path) -> None:
    data = (
        b"\x80\x04"
        + g("pickle", "loads")
        + b"(B"
        + len(OS_SYSTEM_P0).to_bytes(4, "little")
        + OS_SYSTEM_P0
        + b"tR."
    )
    report = scan_bytes(tmp_path, data)
    inner = [f for f in report.findings if "os.system" in f.message]
    assert inner and inner[0].location.startswith("bytes at offset")


def test_a_malformed_pickle_after_a_dangerous_import_is_still_unsafe(tmp_path: Path) -> None:
    data = g("os", "system") + b"(" + s("id") + b"tR\xff"
    report = scan_bytes(tmp_path, data)
    assert report.verdict is FileVerdict.UNSAFE
    assert {f.rule for f in report.findings} == {"VAL-MDL-0101", "VAL-MDL-0001"}


def test_a_truncated_pickle_is_an_error_with_the_offset(tmp_path: Path) -> None:
    data = pickle.dumps(list(range(100)), 4)[:-20]
    report = scan_bytes(tmp_path, data)
    assert report.verdict is FileVerdict.ERROR
    (finding,) = report.findings
    assert finding.rule == "VAL-MDL-0001"
    assert "not a valid pickle" in finding.message


def test_deeply_nested_marks_are_an_error_not_a_crash(tmp_path: Path) -> None:
    data = b"\x80\x02" + b"(" * 100_000 + b"."
    report = scan_bytes(tmp_path, data)
    assert report.verdict is FileVerdict.ERROR
    assert "nested MARKs" in report.findings[0].message


def test_deeply_nested_lists_without_marks_are_read_without_recursion(tmp_path: Path) -> None:
    data = b"\x80\x02" + b"]" * 200_000 + b"a" * 199_999 + b"."
    assert scan_bytes(tmp_path, data).verdict is FileVerdict.SAFE


def test_pickles_nested_in_pickles_past_the_depth_limit_are_an_error(tmp_path: Path) -> None:
    data = OS_SYSTEM_P0
    for _ in range(8):
        data = b"\x80\x04" + g("pickle", "loads") + b"(B" + len(data).to_bytes(4, "little") + data + b"tR."
    report = scan_bytes(tmp_path, data)
    assert any(f.rule == "VAL-MDL-0001" and "levels deep" in f.message for f in report.findings)
    assert report.verdict is FileVerdict.UNSAFE  # pickle.loads itself is already a finding


def test_memory_is_bounded_by_the_item_limit(tmp_path: Path) -> None:
    data = b"\x80\x02]" + b"Na" * 50_000 + b"."
    policy = ModelScanPolicy(limits=Limits(max_pickle_items=10_000))
    report = scan_bytes(tmp_path, data, policy=policy)
    assert report.verdict is FileVerdict.ERROR
    assert "over the scan limit" in report.findings[0].message


def test_unknown_opcode_is_malformed() -> None:
    with pytest.raises(PickleMalformed, match="unknown opcode"):
        PickleMachine(b"\x80\x02\xff.", PickleLimits()).run(0)


def test_large_byte_strings_are_skipped_not_copied() -> None:
    data = pickle.dumps({"w": np.zeros(5_000_000, dtype=np.uint8)}, 4)
    run = PickleMachine(memoryview(data), PickleLimits()).run(0)
    assert run.end == len(data)


def test_joblib_arrays_are_skipped_and_the_same_bytes_read_as_pickle_load_would(tmp_path: Path) -> None:
    joblib = pytest.importorskip("joblib")
    path = tmp_path / "arrays.joblib"
    joblib.dump({"a": np.arange(1000.0), "b": np.array(["x", None], dtype=object)}, path)
    report = ModelScanner().scan_file(path)
    assert (report.format, report.verdict) == ("joblib", FileVerdict.SAFE)
