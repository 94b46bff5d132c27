"""whatmatters: which training choices matter most? Evidence from many small runs."""

__version__ = "0.1.0"

from whatmatters import blas  # noqa: E402  (standard library only: numpy is not loaded yet)

blas.limit_threads()   # before numpy loads OpenBLAS
blas.configure()       # before anyone imports pytensor
