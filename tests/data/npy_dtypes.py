"""Writes tests/data/npy_dtypes/: one small array per numeric dtype np.save writes, in C and Fortran order and both
byte orders, and what each must read as (float32 values, as np.asarray(a, np.float32) gives them) in expected.json.
Run with NumPy installed: python3 tests/data/npy_dtypes.py. tests/formats.rs reads the files."""
import json
import pathlib

import numpy as np

out = pathlib.Path(__file__).parent / "npy_dtypes"
out.mkdir(exist_ok=True)
expected = {}
base = np.array([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]])
signed = base - 5
cases = {
    "f2": np.array([[0.1, -2.5, 65504, 6e-8], [1, 2, 3, 4], [-0.0, 1e-3, 7.5, 1024]]),
    "f4": np.array([[0.1, -2.5, 3.4e38, 1e-40], [1, 2, 3, 4], [5, 6, 7, 8]]),
    "f8": np.array([[0.1, -2.5, 1e30, 1e-300], [1, 2, 3, 4], [5, 6, 7, 8]]),
    "i1": signed * 20,
    "i2": signed * 3000,
    "i4": signed * 3_000_000,
    "i8": np.where(base == 3, -(2**40), signed * 1_000_000),
    "u1": base * 23,
    "u2": base * 5000,
    "u4": base * 1_000_000,
    "u8": np.where(base == 3, 2**60, base * 1_000_000),
    "b1": base % 3 == 0,
}
for code, values in cases.items():
    for order in "CF":
        for endian in "<>":
            if code in ("i1", "u1", "b1") and endian == ">":
                continue
            dtype = np.dtype(bool if code == "b1" else endian + code)
            a = np.asarray(values, dtype=dtype, order=order)
            name = f"{code}_{order}_{'le' if endian == '<' else 'be'}.npy"
            np.save(out / name, a)
            expected[name] = [float(v) for v in np.asarray(a, np.float32).ravel(order="C")]
# Integers float32 cannot hold exactly: refused, naming the index.
np.save(out / "i4_inexact.npy", np.array([[1, 2], [16777217, 4]], dtype="<i4"))
np.save(out / "u8_inexact.npy", np.array([[1, 2**64 - 1]], dtype="<u8"))
(out / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
