"""whatmatters: which training choices matter most? Evidence from many small runs."""

import os

__version__ = "0.1.0"

# One OpenBLAS thread unless the user says otherwise, set before numpy loads OpenBLAS.
# The model's linear algebra is many small (< 100 x 100) problems, where OpenBLAS's
# threads only contend: a 21 x 21 triangular solve took 7.7 ms with the default threads
# and 30 us with one on a busy 2-core machine. Parallelism comes from chains and jobs.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from whatmatters import blas  # noqa: E402  (after the thread setting, before anyone imports pytensor)

blas.configure()
