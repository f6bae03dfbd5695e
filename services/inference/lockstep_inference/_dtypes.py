"""KServe datatype names <-> numpy dtypes <-> ONNX Runtime type strings."""

from __future__ import annotations

import numpy as np

from lockstep_inference._errors import InvalidInputError

__all__ = ["KSERVE_TO_NUMPY", "kserve_of_ort", "numpy_of_kserve"]

KSERVE_TO_NUMPY: dict[str, np.dtype[np.generic]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}

_ORT_TO_KSERVE = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def kserve_of_ort(ort_type: str) -> str:
    """KServe name of an ONNX Runtime type string ("tensor(float)" -> "FP32")."""
    return _ORT_TO_KSERVE.get(ort_type, ort_type.upper())


def numpy_of_kserve(datatype: str) -> np.dtype[np.generic]:
    """The little-endian numpy dtype of a KServe datatype; INVALID_ARGUMENT if unsupported."""
    try:
        return KSERVE_TO_NUMPY[datatype]
    except KeyError:
        known = ", ".join(KSERVE_TO_NUMPY)
        raise InvalidInputError(f"unsupported datatype {datatype!r} (supported: {known})") from None


def kserve_of_numpy(dtype: np.dtype[np.generic]) -> str:
    """KServe name of a numpy dtype."""
    for name, dt in KSERVE_TO_NUMPY.items():
        if dt == dtype.newbyteorder("<") or dt == dtype:
            return name
    raise InvalidInputError(f"unsupported output dtype {dtype}")
