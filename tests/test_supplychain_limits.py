"""Hostile input: bombs, deep nesting, truncation and garbage end in a verdict of `error` with the reason,
in bounded time and memory, never in a crash or in anything being run."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.supplychain_corpus import OS_SYSTEM_P0, dense, gguf_bytes, keras_archive, safetensors_bytes
from vallum.supplychain import FileVerdict, ModelScanner, ModelScanPolicy
from vallum.supplychain.policy import Limits

SCANNER = ModelScanner()
VERDICTS = set(FileVerdict)


def judged_without_crashing(report) -> bool:  # type: ignore[no-untyped-def]
    """A verdict, and not the scanner's fail-closed net for its own bugs."""
    return report.verdict in VERDICTS and not any("scanner failed" in f.message for f in report.findings)


def scan_bytes(tmp_path: Path, name: str, data: bytes, policy: ModelScanPolicy | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_bytes(data)
    return (ModelScanner(policy) if policy else SCANNER).scan_file(path)


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_zip_bomb_member_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    data = zip_of({"archive/data.pkl": b"\x00" * (80 << 20), "archive/version": b"3\n"})
    report = scan_bytes(tmp_path, "bomb.pt", data)
    assert report.verdict is FileVerdict.ERROR
    assert "zip bomb" in report.findings[0].message


def test_overlapping_zip_members_are_refused(tmp_path: Path) -> None:
    data = bytearray(zip_of({"a.pkl": OS_SYSTEM_P0}, zipfile.ZIP_STORED))
    cd_start = data.find(b"PK\x01\x02")
    eocd = data.find(b"PK\x05\x06")
    entry = bytes(data[cd_start:eocd])
    twin = entry.replace(b"a.pkl", b"b.pkl")
    body = bytes(data[:cd_start]) + entry + twin
    end = bytearray(data[eocd:])
    struct.pack_into("<HHII", end, 8, 2, 2, len(entry) * 2, cd_start)
    report = scan_bytes(tmp_path, "twins.zip", body + bytes(end))
    assert report.verdict is FileVerdict.ERROR
    assert "overlap" in report.findings[0].message


def test_too_many_archive_members_is_an_error(tmp_path: Path) -> None:
    data = zip_of({f"m{i}.txt": b"x" for i in range(50)})
    policy = ModelScanPolicy(limits=Limits(max_archive_members=10))
    report = scan_bytes(tmp_path, "many.zip", data, policy)
    assert report.verdict is FileVerdict.ERROR
    assert "50 members" in report.findings[0].message


def test_archives_nested_past_the_depth_limit_are_an_error(tmp_path: Path) -> None:
    data = pickle.dumps([1, 2, 3], 4)
    for level in range(8):
        data = zip_of({f"level{level}.zip" if level else "model.pkl": data})
    report = scan_bytes(tmp_path, "nested.zip", data)
    assert report.verdict is FileVerdict.ERROR
    assert "levels deep" in report.findings[0].message


def test_gzip_bomb_is_refused_while_expanding(tmp_path: Path) -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\x00" * (1 << 20)
    data = b"".join(compressor.compress(chunk) for _ in range(100)) + compressor.flush()
    report = scan_bytes(tmp_path, "bomb.pkl.gz", data)
    assert report.verdict is FileVerdict.ERROR
    assert "compression bomb" in report.findings[0].message


def test_expanded_size_limit_is_an_error(tmp_path: Path) -> None:
    data = gzip.compress(pickle.dumps(np.random.default_rng(0).random(200_000), 4))
    policy = ModelScanPolicy(limits=Limits(max_expanded_bytes=100_000))
    report = scan_bytes(tmp_path, "big.pkl.gz", data, policy)
    assert report.verdict is FileVerdict.ERROR
    assert "over the scan limit" in report.findings[0].message


def test_time_limit_is_an_error(tmp_path: Path) -> None:
    data = b"\x80\x02]" + b"Na" * 200_000 + b"."
    policy = ModelScanPolicy(limits=Limits(max_seconds=1e-9))
    report = scan_bytes(tmp_path, "slow.pkl", data, policy)
    assert report.verdict is FileVerdict.ERROR
    assert "took longer" in report.findings[0].message


def test_empty_file_is_inert(tmp_path: Path) -> None:
    report = scan_bytes(tmp_path, "empty.bin", b"")
    assert (report.format, report.verdict) == ("empty", FileVerdict.SAFE)


def base_files() -> dict[str, bytes]:
    buf = io.BytesIO()
    np.savez_compressed(buf, a=np.arange(50.0), b=np.array(["x"], dtype=object))
    return {
        "m.pkl": pickle.dumps({"w": np.arange(20.0), "n": [1, 2]}, 4),
        "m.npz": buf.getvalue(),
        "m.safetensors": safetensors_bytes({"w": np.zeros(8, np.float32)}),
        "m.gguf": gguf_bytes(
            [("general.architecture", 8, "llama"), ("tokenizer.chat_template", 8, "{{ x }}")], tensors=2
        ),
        "m.keras": keras_archive([dense("d", 2)]),
        "m.pt": zip_of(
            {"archive/data.pkl": pickle.dumps({"a": 1}, 2), "archive/version": b"3\n"}, zipfile.ZIP_STORED
        ),
    }


BASES = base_files()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(BASES)), cut=st.floats(min_value=0.0, max_value=1.0))
def test_truncated_files_never_crash_the_scanner(tmp_path: Path, name: str, cut: float) -> None:
    data = BASES[name]
    report = scan_bytes(tmp_path, name, data[: int(len(data) * cut)])
    assert judged_without_crashing(report), report.findings


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(sorted(BASES)),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=8),
)
@example(name="m.keras", flips=[(0.736328125, 0)])  # a member's name zeroed: zipfile's is_dir() raised
def test_corrupted_files_never_crash_the_scanner(
    tmp_path: Path, name: str, flips: list[tuple[float, int]]
) -> None:
    data = bytearray(BASES[name])
    for where, value in flips:
        data[min(int(where * len(data)), len(data) - 1)] = value
    report = scan_bytes(tmp_path, name, bytes(data))
    assert judged_without_crashing(report), report.findings


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    magic=st.sampled_from(
        [
            b"",
            b"\x80\x04",
            b"PK\x03\x04",
            b"\x93NUMPY\x01\x00",
            b"GGUF\x03\x00\x00\x00",
            b"\x1f\x8b",
            b"\x08\x07\x3a",
        ]
    ),
    body=st.binary(max_size=400),
)
def test_random_bytes_behind_any_magic_never_crash_the_scanner(
    tmp_path: Path, magic: bytes, body: bytes
) -> None:
    report = scan_bytes(tmp_path, "fuzz.bin", magic + body)
    assert judged_without_crashing(report), report.findings


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_pickle_fuzz_never_crashes_nor_runs_anything(tmp_path: Path, protocol: int) -> None:
    rng = np.random.default_rng(protocol)
    base = pickle.dumps({"a": [1, 2.0, "x"], "b": (None, True)}, protocol)
    for _ in range(200):
        data = bytearray(base)
        for _ in range(3):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        assert judged_without_crashing(scan_bytes(tmp_path, "f.pkl", bytes(data)))
