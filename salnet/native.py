"""Optional C kernels (``salnet/csrc/``) for CPU hot loops that take torch's operators several passes.

Interface: ``csrc/kernels.h`` declares every kernel once. ``metrics.c`` and ``resize.c`` include it, so the C
compiler checks each definition against it, and cffi (API mode) generates the Python bindings from the same
text, so each call is checked against it as well: a wrong argument count, an integer out of range, or a
tensor of another element type than the declared pointer (see :class:`Kernels`) is a TypeError, not wrong numbers.

Build: on first use, cffi writes the bindings' C source, and the system C compiler (``$CC``, else
``cc``/``gcc``; ``-O3 -march=native -std=c11``) compiles it with the kernels into one extension module. The
module is loaded once (which checks that every declared kernel is defined) and then moved atomically into a
cache folder (``$SALNET_CACHE``, default ``~/.cache/salnet``) under a name keyed by the sources, the compiler,
its flags, the CPU, Python and cffi. If the build fails (no compiler, no cffi or Python headers, a definition
that does not match its declaration), :func:`library` is None after one warning naming the reason, and every
caller takes its torch path (same values: tests/test_native.py compares them). ``SALNET_NATIVE=0`` turns the
kernels off without a build or a warning.

Threads: the compute-bound metric kernels (KLD, AUC-Judd's pass) run over ranges of rows in
``torch.get_num_threads()`` threads (cffi releases the GIL during a call); the memory-bound ones, which a
second thread on the same memory does not speed up, and the loader's resize (each loader worker is one
thread) run in the calling thread.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import torch

CSRC = Path(__file__).parent / "csrc"
HEADER = "kernels.h"  # the declarations: included by the sources, parsed by cffi
SOURCES = ("metrics.c", "resize.c")
FLAGS = ("-O3", "-march=native", "-shared", "-fPIC", "-std=c11")


class BuildError(RuntimeError):
    """The kernels could not be built or loaded; the message says why."""


_POINTER = {torch.float64: "double *", torch.float32: "float *", torch.int64: "int64_t *", torch.int32: "int32_t *",
            torch.uint8: "uint8_t *", torch.uint16: "uint16_t *", torch.uint64: "uint64_t *"}


class Kernels:
    """The built kernels: ``lib`` holds the functions of ``csrc/kernels.h``, ``module`` is their extension
    module, and ``ptr(t)`` gives a tensor's data as a C pointer typed by its dtype: cffi checks it against the
    kernel's declared pointer type, and offsets added to it count elements, not bytes."""

    def __init__(self, module: ModuleType):
        self.module, self.lib = module, module.lib
        cast, types = module.ffi.cast, {dtype: module.ffi.typeof(c) for dtype, c in _POINTER.items()}

        def ptr(t: torch.Tensor):  # a closure, not a method: one lookup less per pointer
            return cast(types[t.dtype], t.data_ptr())

        self.ptr = ptr


def _cpu_id() -> str:
    """The CPU's model and feature flags (a -march=native build must not run on another CPU)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    lines = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(lines)))


def cache_dir() -> Path:
    return Path(os.environ.get("SALNET_CACHE", Path.home() / ".cache" / "salnet"))


def _compiler_errors(stderr: bytes) -> str:
    """The compiler's error lines (they name the function and the file), else the end of its output."""
    text = stderr.decode(errors="replace")
    errors = [ln.strip() for ln in text.splitlines() if "error" in ln]
    return "; ".join(errors[:4]) if errors else text.strip()[-400:]


def _load(name: str, path: Path) -> ModuleType:
    """Import the extension module ``name`` from ``path``; Python's dlopen resolves every symbol now, so a
    kernel declared but not defined fails here, naming it."""
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"{path} is not an extension module")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except ImportError as exn:
        raise BuildError(f"the built kernels do not load: {exn}") from exn
    return module


def _toolchain() -> tuple[str, ModuleType]:
    """The C compiler's path and the cffi module, or :class:`BuildError` naming the one missing."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        raise BuildError("no C compiler ($CC, cc or gcc) on the PATH")
    try:
        import cffi
    except ImportError as exn:
        raise BuildError(f"cffi is not installed ({exn})") from exn
    return cc, cffi


def _read(csrc: Path) -> list[bytes]:
    """The texts of :data:`HEADER` and :data:`SOURCES` in ``csrc``."""
    try:
        return [(csrc / name).read_bytes() for name in (HEADER, *SOURCES)]
    except OSError as exn:
        raise BuildError(f"cannot read the kernels' sources: {exn}") from exn


def cached_path(csrc: Path | None = None, cache: Path | None = None) -> Path:
    """Where the build of ``csrc`` (default :data:`CSRC`) lives in ``cache`` (default :func:`cache_dir`): named
    by a hash of the sources, the compiler, its flags, the CPU, Python and cffi, so that a change to any is a
    new build."""
    cc, cffi = _toolchain()
    csrc = CSRC if csrc is None else csrc
    key = hashlib.sha256(b"\0".join([*_read(csrc), cc.encode(), " ".join(FLAGS).encode(), _cpu_id().encode(),
                                     sys.version.encode(), cffi.__version__.encode()]))
    name = f"_salnet_kernels_{key.hexdigest()[:16]}"  # its own init symbol: builds of other sources can coexist
    return (cache_dir() if cache is None else cache) / (name + sysconfig.get_config_var("EXT_SUFFIX"))


def build(csrc: Path | None = None, cache: Path | None = None) -> Kernels:
    """The :class:`Kernels` of ``csrc`` (default :data:`CSRC`; :data:`HEADER` and :data:`SOURCES`): loaded from
    ``cache`` (default :func:`cache_dir`) when built before, else compiled there. Raises :class:`BuildError`
    saying why when they cannot be built."""
    cc, cffi = _toolchain()
    csrc = CSRC if csrc is None else csrc
    path = cached_path(csrc, cache)
    name = path.name.split(".")[0]
    if path.exists():
        return Kernels(_load(name, path))
    header = _read(csrc)[0].decode()
    ffi = cffi.FFI()
    try:  # the declarations without the preprocessor lines, which only the C compiler needs
        ffi.cdef("\n".join(ln for ln in header.splitlines() if not ln.lstrip().startswith("#")))
    except cffi.CDefError as exn:
        raise BuildError(f"cffi cannot parse {csrc / HEADER}: {exn}") from exn
    ffi.set_source(name, f'#include "{HEADER}"', compiler_verbose=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            bindings, built = Path(tmp) / f"{name}.c", Path(tmp) / path.name
            ffi.emit_c_code(str(bindings))
            includes = {sysconfig.get_paths()[k] for k in ("include", "platinclude")}
            subprocess.run([cc, *FLAGS, "-I", str(csrc), *(f"-I{d}" for d in sorted(includes)), str(bindings),
                            *(str(csrc / s) for s in SOURCES), "-o", str(built)],
                           check=True, capture_output=True, timeout=300, env={**os.environ, "LC_ALL": "C"})
            module = _load(name, built)  # before it is cached: a module that does not load is no build
            os.replace(built, path)  # atomic: concurrent processes never load a half-written file
            module.__file__ = str(path)  # where it now is
            if module.__spec__ is not None:
                module.__spec__.origin = str(path)
    except subprocess.CalledProcessError as exn:
        raise BuildError(f"{Path(cc).name} failed: {_compiler_errors(exn.stderr)}") from exn
    except (OSError, subprocess.SubprocessError) as exn:
        raise BuildError(f"{Path(cc).name} could not build {', '.join(SOURCES)}: {exn}") from exn
    return Kernels(module)


@functools.cache
def library() -> Kernels | None:
    """The built kernels (see :func:`build`), or None: ``SALNET_NATIVE=0``, or the build failed (then one
    warning per process says why)."""
    if os.environ.get("SALNET_NATIVE", "1") == "0":
        return None
    try:
        return build()
    except BuildError as exn:
        warnings.warn(f"salnet: C kernels unavailable, using the torch paths (same values, slower): {exn}. "
                      "SALNET_NATIVE=0 turns the kernels off without this warning.", stacklevel=2)
        return None


@functools.cache
def _pool(threads: int, pid: int) -> ThreadPoolExecutor:
    """A pool per process (``pid``): a pool inherited through fork (a DataLoader worker) has no threads."""
    return ThreadPoolExecutor(threads, thread_name_prefix="salnet-native")


def _over_rows(rows: int, call, threaded: bool = True) -> None:
    """``call(start, stop)`` over ranges covering 0..rows, in up to ``torch.get_num_threads()`` threads when
    ``threaded`` (the compute-bound kernels; the memory-bound ones gain nothing from a second thread on the
    same memory and pay the pool's hand-over)."""
    threads = min(torch.get_num_threads(), rows) if threaded else 1
    if threads < 2:
        call(0, rows)
        return
    bounds = [rows * k // threads for k in range(threads + 1)]
    list(_pool(threads, os.getpid()).map(lambda k: call(bounds[k], bounds[k + 1]), range(threads)))


def _usable(*tensors: torch.Tensor) -> bool:
    return all(t.device.type == "cpu" and t.dtype == torch.float64 and t.is_contiguous() for t in tensors)


def row_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Per row of ``x`` (B,N) float64: (min, max, sum, sum of squares), each (B,), in one pass; None when
    the kernels are unavailable or ``x`` is not a contiguous float64 CPU tensor."""
    k = library()
    if k is None or x.ndim != 2 or not _usable(x):
        return None
    B, N = x.shape
    out = torch.empty((4, B), dtype=torch.float64)
    q = k.ptr(out)
    k.lib.salnet_row_stats_f64(k.ptr(x), B, N, q, q + B, q + 2 * B, q + 3 * B)  # memory-bound: one thread
    return out[0], out[1], out[2], out[3]


def pair_stats(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """Per row of ``x`` and ``y`` (B,N) float64, in one pass over both: (9, B) = min, max, sum and sum of
    squares of ``x``, the same four of ``y``, and the rows' dot products. None without the kernels or for
    other tensors."""
    k = library()
    if k is None or x.ndim != 2 or x.shape != y.shape or not _usable(x, y):
        return None
    B, N = x.shape
    out = torch.empty((9, B), dtype=torch.float64)
    k.lib.salnet_pair_stats_f64(k.ptr(x), k.ptr(y), B, N, B, k.ptr(out))  # memory-bound: one thread
    return out


def _per_row(k: Kernels, kernel, x: torch.Tensor, y: torch.Tensor, params: list[torch.Tensor], *extra,
             threaded: bool) -> tuple[torch.Tensor, int]:
    """``kernel(x rows, y rows, count, N, params..., *extra, out)`` over the rows of ``x``, ``y`` (B,N), in
    threads if ``threaded``; returns out (B,) and the sum of the kernel's return values (0 for void kernels)."""
    B, N = x.shape
    params = [p.to(torch.float64).contiguous() for p in params]
    out = torch.empty(B, dtype=torch.float64)
    px, py, pout = k.ptr(x), k.ptr(y), k.ptr(out)
    pparams = [k.ptr(p) for p in params]
    ret = [0] * B

    def call(a, b):  # rows a..b: pointers offset by a rows of N, or by a entries of the per-row arrays
        r = kernel(px + a * N, py + a * N, b - a, N, *[p + a for p in pparams], *extra, pout + a)
        ret[a] = r or 0

    _over_rows(B, call, threaded)
    return out, sum(ret)


def affine_l1(x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor
              ) -> torch.Tensor | None:
    """(B,) Σ|a·x + c − b·y| over each row of ``x``, ``y`` (B,N) float64, with a, b, c (B,) per row, in
    one pass; None without the kernels or for other tensors."""
    k = library()
    if k is None or x.ndim != 2 or x.shape != y.shape or not _usable(x, y):
        return None
    return _per_row(k, k.lib.salnet_affine_l1_f64, x, y, [a, b, c], threaded=False)[0]


def kld(x: torch.Tensor, y: torch.Tensor, kp: torch.Tensor, kg: torch.Tensor, eps: float) -> torch.Tensor | None:
    """(B,) Σ kg·y · log(eps + kg·y / (eps + kp·max(x, 0))) over each row of the prediction ``x`` and the
    ground truth ``y`` (B,N) float64, with kp, kg (B,) per row, in one pass (a vectorised log, < 1 ulp).
    None without the kernels, for other tensors, or where a log's argument is not a positive normal
    number (the caller's torch path then gives its NaN or inf)."""
    k = library()
    if k is None or x.ndim != 2 or x.shape != y.shape or not _usable(x, y):
        return None
    out, bad = _per_row(k, k.lib.salnet_kld_f64, x, y, [kp, kg], float(eps), threaded=True)
    return None if bad else out


def threshold_counts(S: torch.Tensor, idx: torch.Tensor, use: torch.Tensor, lo: torch.Tensor, spread: torch.Tensor,
                     T: torch.Tensor) -> torch.Tensor | None:
    """(B, len(T)+1) int64: per row of ``S`` (B,N) float64, its values at ``idx`` (B, splits, width) int64,
    the first ``use`` (B,) of each split, normalised by (v − lo)/spread (B,), counted by how many of the
    ascending thresholds ``T`` are ≤ v (a NaN as 0). None without the kernels or for other tensors."""
    k = library()
    if k is None or not _usable(S, lo, spread, T) or idx.device.type != "cpu" or idx.ndim != 3:
        return None
    B, N = S.shape
    _, splits, width = idx.shape
    idx, use = idx.to(torch.int64).contiguous(), use.to(torch.int64).contiguous()
    nt = T.numel()
    out = torch.empty((B, nt + 1), dtype=torch.int64)
    k.lib.salnet_threshold_counts_f64(k.ptr(S), B, N, k.ptr(idx), splits, width, k.ptr(use), k.ptr(lo),
                                      k.ptr(spread), k.ptr(T), nt, k.ptr(out))  # a few reads per image
    return out


def flat_nonzero(x: torch.Tensor) -> torch.Tensor | None:
    """Flat int64 indices (ascending) of the nonzero entries of a contiguous float64 CPU tensor (NaN
    nonzero, −0.0 zero, as ``nonzero``), skipping all-zero blocks of 64 in one pass; None without the
    kernels or for another tensor."""
    k = library()
    if k is None or not _usable(x):
        return None
    n = x.numel()
    bits = k.ptr(x.view(torch.uint64))  # the kernel tests the values' bit patterns
    out = torch.empty(n // 64 + 1024, dtype=torch.int64)  # a sparse map's; a denser one is counted, then rerun
    found = k.lib.salnet_nonzero_f64(bits, n, k.ptr(out), out.numel())
    if found > out.numel():
        out = torch.empty(found, dtype=torch.int64)
        k.lib.salnet_nonzero_f64(bits, n, k.ptr(out), found)
    return out[:found]


def judd_pass(S: torch.Tensor, lo: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, subtract: bool,
              marked: torch.Tensor, kmax: int, hist: torch.Tensor, close: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """AUC-Judd's per-pixel pass over ``S`` (B,N) float64: each pixel's bin, clamped to [1, kmax] (see
    ``csrc/metrics.c``). Returns ``far`` (B, R) int64, the histogram of the pixels whose bin is not ``marked``
    (B, R) bool, written into ``hist`` (B, R) int64, and ``close`` the flat indices (into S.view(-1),
    ascending) of those whose bin is, gathered through ``close`` (B·N,) int64. ``hist`` and ``close`` are
    the caller's reused scratch buffers (fresh multi-MB ones cost more in page faults than the pass). None
    without the kernels."""
    k = library()
    if k is None or not _usable(S, lo, scale, shift):
        return None
    B, N = S.shape
    R = marked.shape[1]
    marked = marked.contiguous().view(torch.uint8) if marked.dtype == torch.bool else marked.to(torch.uint8)
    found = torch.empty(B, dtype=torch.int64)
    s, lo_, sc, sh, m, h, c, f = (k.ptr(t) for t in (S, lo, scale, shift, marked, hist, close, found))

    def call(a, b):  # rows a..b: offsets by a rows of the per-pixel (N) and per-bin (R) arrays
        if k.lib.salnet_judd_pass_f64(s + a * N, b - a, N, lo_ + a, sc + a, sh + a, int(subtract), m + a * R, R,
                                      kmax, h + a * R, c + a * N, f + a) != 0:
            raise MemoryError(f"salnet.native.judd_pass: no memory for histograms of {R} bins")

    _over_rows(B, call)
    parts = [close[b * N:b * N + n] + b * N for b, n in enumerate(found.tolist())]
    return hist, torch.cat(parts) if parts else close[:0]


def area_shrink(x: torch.Tensor, rows: tuple[int, torch.Tensor, torch.Tensor],
                cols: tuple[int, torch.Tensor, torch.Tensor], scale: float, flip: bool = False,
                out: torch.Tensor | None = None) -> torch.Tensor | None:
    """Separable integer-weight shrink of ``x`` (H, W, C) uint8/uint16 into float32 (C, h, w) = scale · Σ
    weights · x (see ``csrc/resize.c``). ``rows`` = (block_in, first (block_out,) int32, weights (block_out, taps)
    int32): output o of each block of block_in rows is Σ_j weights[o, j] · row[first[o] + j] of the block;
    ``cols`` likewise. ``flip`` mirrors the output's columns. ``out``: a contiguous float32 (C, h, w) tensor
    to write into (e.g. a slot of a batch), else a new one. None without the kernels, or for another
    dtype, layout or device."""
    k = library()
    kernel = {torch.uint8: "salnet_area_shrink_u8", torch.uint16: "salnet_area_shrink_u16"}.get(x.dtype)
    if k is None or kernel is None or x.ndim != 3 or x.device.type != "cpu" or not x.is_contiguous():
        return None
    H, W, C = x.shape
    (bih, fh, kh), (biw, fw, kw) = rows, cols
    shape = (C, H // bih * kh.shape[0], W // biw * kw.shape[0])
    if out is None:
        out = torch.empty(shape, dtype=torch.float32)
    elif out.shape != shape or out.dtype != torch.float32 or not out.is_contiguous() or out.device.type != "cpu":
        raise ValueError(f"area_shrink: out must be a contiguous float32 CPU tensor of shape {shape}, got "
                         f"{out.dtype} {tuple(out.shape)}")
    if getattr(k.lib, kernel)(k.ptr(x), H, W, C, bih, kh.shape[0], kh.shape[1], k.ptr(fh), k.ptr(kh),
                              biw, kw.shape[0], kw.shape[1], k.ptr(fw), k.ptr(kw), scale, int(flip),
                              k.ptr(out)) != 0:
        raise MemoryError(f"salnet.native.area_shrink: no memory for a row of {W * C} sums")
    return out
