"""Where joblib put an array's bytes: joblib pickles a NumpyArrayWrapper and writes the array right after it.

`joblib.dump` interleaves raw array data with the pickle stream (after the wrapper's BUILD), so a reader
that does not skip it reads array bytes as opcodes. The wrapper's state says how much to skip: shape,
dtype (itemsize, and whether it holds Python objects, which joblib writes as a nested pickle instead) and
the alignment padding of joblib >= 1.2. The dtype is only ever built from a plain type string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vallum.supplychain.pickle_reader import Call, GlobalRef, SymDict

WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_DTYPE_GLOBALS = {("numpy", "dtype"), ("numpy.core.multiarray", "dtype"), ("numpy._core.multiarray", "dtype")}


class JoblibLayoutError(Exception):
    """The wrapper's state does not say where the array's bytes end."""


@dataclass(frozen=True, slots=True)
class ArrayExtent:
    nbytes: int
    has_object: bool  # the bytes are a nested pickle, not raw data
    aligned: bool  # a padding-length byte (and padding) comes first


def is_wrapper(obj: Call) -> bool:
    func = obj.func
    return isinstance(func, GlobalRef) and (func.module, func.name) == WRAPPER


def array_extent(state: Any) -> ArrayExtent:
    if not isinstance(state, SymDict):
        raise JoblibLayoutError("NumpyArrayWrapper state is not a dict")
    shape = state.get("shape")
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise JoblibLayoutError("NumpyArrayWrapper shape is not a tuple of sizes")
    itemsize, has_object = _dtype_info(state.get("dtype"), depth=0)
    count = 1
    for dim in shape:
        count *= dim
    aligned = isinstance(state.get("numpy_array_alignment_bytes"), int)
    return ArrayExtent(count * itemsize, has_object, aligned)


def _dtype_info(value: Any, depth: int) -> tuple[int, bool]:
    """(itemsize, holds objects) of a pickled numpy.dtype: REDUCE(numpy.dtype, (descr, ...)) + BUILD(state)."""
    if depth > 8:
        raise JoblibLayoutError("dtype nested too deeply")
    if not (isinstance(value, Call) and isinstance(value.func, GlobalRef)):
        raise JoblibLayoutError("NumpyArrayWrapper dtype is not a numpy.dtype")
    if (value.func.module, value.func.name) not in _DTYPE_GLOBALS:
        raise JoblibLayoutError(f"NumpyArrayWrapper dtype is built by {value.func.dotted}")
    args = value.args
    if not (isinstance(args, tuple) and args and isinstance(args[0], str) and len(args[0]) <= 32):
        raise JoblibLayoutError("numpy.dtype is not built from a type string")
    try:
        base = np.dtype(args[0])
    except (TypeError, ValueError) as exc:
        raise JoblibLayoutError(f"numpy.dtype({args[0]!r}) is not a dtype: {exc}") from None
    itemsize, has_object = base.itemsize, base.hasobject
    state = value.state
    if isinstance(state, tuple) and len(state) >= 6:
        elsize = state[5]
        if isinstance(elsize, int) and elsize > 0:
            itemsize = elsize  # strings, unicode and structured types carry their size here
        subarray = state[2]
        if isinstance(subarray, tuple) and subarray:
            has_object = has_object or _dtype_info(subarray[0], depth + 1)[1]
        fields = state[4]
        if isinstance(fields, SymDict):
            for _, field in fields.items:
                if isinstance(field, tuple) and field:
                    has_object = has_object or _dtype_info(field[0], depth + 1)[1]
    return itemsize, has_object
