"""BLAS for the fit: one OpenBLAS thread, and PyTensor's C backend pointed at a real BLAS.

Threads
-------
The model's linear algebra is many small (< 300 x 300) problems, where OpenBLAS's
threads only contend: a 21 x 21 triangular solve took 7.7 ms with the default threads
and 30 us with one, on a busy 2-core machine. Parallelism comes from chains and jobs. So
the package asks for one thread when it is imported (:func:`limit_threads`, unless the
user set ``OPENBLAS_NUM_THREADS``), and the fit enforces one for its duration
(:func:`one_thread`), whatever Snakemake exported.

Why the link exists
-------------------
PyTensor compiles its ``Dot22`` / ``Gemm`` / ``Gemv`` / ``Ger`` ops to C that
calls the Fortran BLAS (``dgemm_``, ``dgemv_``, ``ddot_``, ...).  On first use
it looks for a BLAS to link (``pytensor.link.c.cmodule.default_blas_ldflags``):
MKL, Accelerate, ``-llapack -lblas -lcblas``, ``-lblas -lcblas`` or
``-lopenblas -lgfortran -lgomp`` in the compiler's library directories.  A
fresh pip install has none of those (numpy and scipy each carry a *private*
OpenBLAS), so PyTensor warns "PyTensor could not link to a BLAS installation"
and "Using NumPy C-API based implementation for BLAS functions", leaves
``blas__ldflags`` empty and drops matrix products to slow non-BLAS code.

The pip-only fix is the ``scipy-openblas32`` wheel: the same self-contained
OpenBLAS build that scipy bundles (no libgfortran needed, 32-bit integers =
the LP64 interface PyTensor's C code is written for), installed at a stable
path that ``get_lib_dir()`` reports.  Its one wrinkle: every symbol carries a
``scipy_`` prefix (``scipy_dgemm_``, ``scipy_ddot_``; check with
``nm -D libscipy_openblas.so``) so it cannot clash with another BLAS in the
process, while PyTensor's C code calls the plain names.  We therefore pass,
alongside ``-L<dir> -lscipy_openblas`` and an rpath, one preprocessor define
per BLAS routine, ``-Ddgemm_=scipy_dgemm_`` and so on: PyTensor hands every
flag in ``blas__ldflags`` that is not ``-l``/``-L``/``-I`` to the compiler of
each BLAS op (``c_compile_args``) and of its own probe programs, so both the
declarations and the calls are renamed to the symbols the library exports.

Do NOT use ``scipy-openblas64`` or numpy's bundled ``libscipy_openblas64_``:
those are ILP64 (64-bit integer arguments, ``scipy_dgemm_64_``) and would be
handed 32-bit ``int*`` by PyTensor.

The flags go into ``PYTENSOR_FLAGS`` (not only ``pytensor.config``) so that
worker processes started by ``pm.sample(cores>1)`` inherit them.

Call :func:`configure` once, before the first ``import pytensor`` / ``import
pymc``.  It does nothing and returns ``None`` when the user already chose
``blas__ldflags`` (in ``PYTENSOR_FLAGS`` or a ``.pytensorrc`` file) or when no
suitable library is installed, in which case PyTensor's own detection (and
its warning) is left as it is.
"""

from __future__ import annotations

import configparser
import contextlib
import ctypes
import importlib.util
import logging
import os
import shlex
import sys
from pathlib import Path

__all__ = ["configure", "find_openblas", "ldflags_for", "limit_threads", "one_thread"]

_log = logging.getLogger(__name__)

# The Fortran BLAS routines PyTensor declares in
# pytensor.tensor.blas_headers.blas_header_text() (levels 1-3, s/d/c/z).
_BLAS_ROUTINES = """
caxpy ccopy cgbmv cgemm cgemv cgerc cgeru chbmv chemm chemv cher cher2 cher2k
cherk chpmv chpr chpr2 cscal csscal cswap csymm csyr2k csyrk ctbmv ctbsv ctpmv
ctpsv ctrmm ctrmv ctrsm ctrsv daxpy dcopy ddot dgbmv dgemm dgemv dger drot
drotg drotm drotmg dsbmv dscal dspmv dspr dspr2 dswap dsymm dsymv dsyr dsyr2
dsyr2k dsyrk dtbmv dtbsv dtpmv dtpsv dtrmm dtrmv dtrsm dtrsv saxpy scopy sdot
sgbmv sgemm sgemv sger srot srotg srotm srotmg ssbmv sscal sspmv sspr sspr2
sswap ssymm ssymv ssyr ssyr2 ssyr2k ssyrk stbmv stbsv stpmv stpsv strmm strmv
strsm strsv xerbla zaxpy zcopy zdscal zgbmv zgemm zgemv zgerc zgeru zhbmv zhemm
zhemv zher zher2 zher2k zherk zhpmv zhpr zhpr2 zscal zswap zsymm zsyr2k zsyrk
ztbmv ztbsv ztpmv ztpsv ztrmm ztrmv ztrsm ztrsv
""".split()

_THREADS = "OPENBLAS_NUM_THREADS"   # read by OpenBLAS when it loads (numpy, scipy, each chain process)


def limit_threads() -> None:
    """One OpenBLAS thread unless the user says otherwise. Call before numpy loads OpenBLAS
    (the package does, on import)."""
    os.environ.setdefault(_THREADS, "1")


@contextlib.contextmanager
def one_thread():
    """One BLAS thread in this process and in the chain processes it starts.

    Snakemake exports OPENBLAS_NUM_THREADS = the rule's threads (the chain count) to every
    job, which made the default study's fit ~6x slower, so this overrides it for the
    block's duration (the fit's).
    """
    from threadpoolctl import threadpool_limits

    saved = os.environ.get(_THREADS)
    os.environ[_THREADS] = "1"          # read by the chain processes at start
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        if saved is None:
            os.environ.pop(_THREADS, None)
        else:
            os.environ[_THREADS] = saved


_PACKAGE = "scipy_openblas32"  # pip: scipy-openblas32 (LP64, symbols prefixed scipy_)
_PREFIX = "scipy_"


def _user_set_ldflags() -> bool:
    """True if blas__ldflags is already chosen in PYTENSOR_FLAGS or a pytensorrc file."""
    splitter = shlex.shlex(os.environ.get("PYTENSOR_FLAGS", ""), posix=True)
    splitter.whitespace = ","  # same parsing as pytensor.configparser.parse_config_string
    splitter.whitespace_split = True
    if any(kv.strip().split("=", 1)[0].strip() == "blas__ldflags" for kv in splitter):
        return True
    default_rc = "~/.pytensorrc:~/.pytensorrc.txt"
    for name in os.environ.get("PYTENSORRC", default_rc).split(os.pathsep):
        path = Path(name).expanduser()
        if not path.is_file():
            continue
        rc = configparser.ConfigParser(interpolation=None)
        try:
            rc.read(path)
        except configparser.Error:
            continue
        if rc.has_option("blas", "ldflags"):
            return True
    return False


def find_openblas() -> Path | None:
    """Path of libscipy_openblas.so from the scipy-openblas32 wheel, or None.

    The package is located without importing it (its ``__init__`` would load
    the library with RTLD_GLOBAL).
    """
    if sys.platform not in ("linux", "darwin"):
        return None  # Windows needs an import library and MSVC-style flags; not handled
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    lib_dir = Path(next(iter(spec.submodule_search_locations))) / "lib"
    suffix = ".dylib" if sys.platform == "darwin" else ".so"
    libs = sorted(lib_dir.glob(f"libscipy_openblas*{suffix}"))
    return libs[0] if libs else None


def ldflags_for(lib: Path) -> str | None:
    """blas__ldflags that link PyTensor's Fortran-BLAS calls to ``lib``.

    The library is opened with ctypes to see which names it exports: plain
    (``dgemm_``) or prefixed (``scipy_dgemm_``); ILP64-only builds are refused.
    """
    try:
        dll = ctypes.CDLL(str(lib))  # RTLD_LOCAL: no effect on symbol lookup elsewhere
    except OSError as err:
        _log.debug("cannot load %s: %s", lib, err)
        return None

    def has(symbol: str) -> bool:
        try:
            getattr(dll, symbol)
        except AttributeError:
            return False
        return True

    if has("dgemm_") and has("ddot_"):
        prefix = ""
    elif has(f"{_PREFIX}dgemm_") and has(f"{_PREFIX}ddot_"):
        prefix = _PREFIX
    else:  # e.g. ILP64 (scipy_dgemm_64_) - wrong integer width for PyTensor
        return None

    name = lib.name
    link_name = name[3:].rsplit(".", 1)[0] if name.startswith("lib") else name
    lib_dir = str(lib.parent)
    flags = [
        f"-L{lib_dir}",
        f"-l{link_name}",
        # rpath so compiled modules find the library when imported (the commas
        # are safe: the value is double-quoted inside PYTENSOR_FLAGS)
        f"-Wl,-rpath,{lib_dir}",
    ]
    if prefix:
        flags += [f"-D{r}_={prefix}{r}_" for r in _BLAS_ROUTINES if has(f"{prefix}{r}_")]
    return " ".join(shlex.quote(f) for f in flags)


def configure() -> str | None:
    """Make PyTensor link a real BLAS (scipy-openblas32) instead of warning.

    Call before pytensor is first imported.  Returns the ``blas__ldflags``
    now in force, or None when nothing was changed: the user already set
    ``blas__ldflags`` (PYTENSOR_FLAGS or .pytensorrc), or scipy-openblas32 is
    not installed / not usable on this platform.
    """
    if _user_set_ldflags():
        return None
    lib = find_openblas()
    if lib is None:
        return None
    flags = ldflags_for(lib)
    if not flags:
        return None
    if '"' in flags or "\\" in flags:
        return None  # cannot be quoted inside PYTENSOR_FLAGS; leave PyTensor alone

    entry = f'blas__ldflags="{flags}"'
    current = os.environ.get("PYTENSOR_FLAGS", "").strip().strip(",")
    os.environ["PYTENSOR_FLAGS"] = f"{current},{entry}" if current else entry

    if "pytensor" in sys.modules:
        # Imported already: the env var is read only at import, so set the live
        # config too (works as long as nothing has been compiled yet).
        import pytensor

        pytensor.config.blas__ldflags = flags
        _log.warning(
            "whatmatters.blas.configure() called after pytensor was imported; "
            "functions compiled earlier keep their old BLAS setting"
        )
    return flags
