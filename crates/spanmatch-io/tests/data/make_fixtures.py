"""Regenerates the numpy-written fixtures used by tests/numpy_fixtures.rs (needs numpy).

Every array holds v(i) = ((7 * i) % 1021) * 0.25 - 100 at logical C-order index i, which is
exact in float16, float32 and float64.
"""
import numpy as np


def values(shape, dtype):
    n = int(np.prod(shape))
    i = np.arange(n)
    return (((7 * i) % 1021) * 0.25 - 100.0).reshape(shape).astype(dtype)


np.save("c_f4.npy", values((3, 2, 2, 3), "<f4"))
np.save("fortran_be_f8.npy", np.asfortranarray(values((4, 3, 2, 5), ">f8")))
np.savez_compressed(
    "compressed.npz",
    conv=values((2, 3, 2, 2), "<f2"),
    fc=values((5, 4), "<f4"),
    labels=np.arange(5, dtype="<i8"),
)
np.savez(
    "stored_fortran.npz",
    conv=np.asfortranarray(values((2, 3, 2, 2), "<f4")),
    fc=np.asfortranarray(values((5, 4), ">f8")),
)
np.savez_compressed("compressed_fortran.npz", conv=np.asfortranarray(values((3, 2, 4), "<f4")))
