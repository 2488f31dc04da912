"""Optional C kernels (``salnet/csrc/``: ``metrics.c``, ``resize.c``) for CPU hot loops that take torch's
operators several passes.

The sources are compiled on first use with the system C compiler (``$CC``, else ``cc``/``gcc``; ``-O3
-march=native``) into one library in a cache folder (``$SALNET_CACHE``, default ``~/.cache/salnet``) keyed
by the sources, the compiler, its flags and the CPU, and loaded with ctypes. Without a compiler, or with
``SALNET_NATIVE=0``, :func:`library` is None and every caller uses its torch path (same values; the
kernels are tested against them). The compute-bound metric kernels (KLD, AUC-Judd's pass) run over ranges of
rows in ``torch.get_num_threads()`` threads (ctypes releases the GIL during the call); the memory-bound ones,
which a second thread on the same memory does not speed up, and the loader's resize (each loader worker is
one thread) run in the calling thread.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

SOURCES = tuple(Path(__file__).parent / "csrc" / name for name in ("metrics.c", "resize.c"))
FLAGS = ("-O3", "-march=native", "-shared", "-fPIC", "-std=c11")


def _cpu_id() -> str:
    """The CPU's model and feature flags (a -march=native build must not run on another CPU)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    lines = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(lines)))


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None (no compiler, compilation failed, or ``SALNET_NATIVE=0``)."""
    if os.environ.get("SALNET_NATIVE", "1") == "0":
        return None
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        return None
    sources = [src.read_bytes() for src in SOURCES]
    key = hashlib.sha256(b"\0".join([*sources, cc.encode(), " ".join(FLAGS).encode(), _cpu_id().encode()]))
    cache = Path(os.environ.get("SALNET_CACHE", Path.home() / ".cache" / "salnet"))
    path = cache / f"native-{key.hexdigest()[:16]}.so"
    if not path.exists():
        try:
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                built = Path(tmp) / path.name
                subprocess.run([cc, *FLAGS, *map(str, SOURCES), "-o", str(built)], check=True,
                               capture_output=True, timeout=120)
                os.replace(built, path)  # atomic: concurrent processes never load a half-written file
        except (OSError, subprocess.SubprocessError) as exn:
            detail = getattr(exn, "stderr", b"") or b""
            warnings.warn(f"salnet: could not compile {', '.join(s.name for s in SOURCES)} with {cc} ({exn}; "
                          f"{detail.decode(errors='replace')[-300:]}); using the torch paths", stacklevel=2)
            return None
    lib = ctypes.CDLL(str(path))
    P, I64 = ctypes.c_void_p, ctypes.c_int64
    lib.salnet_row_stats_f64.argtypes = [P, I64, I64, P, P, P, P]
    lib.salnet_row_stats_f64.restype = None
    lib.salnet_pair_stats_f64.argtypes = [P, P, I64, I64, I64, P]
    lib.salnet_pair_stats_f64.restype = None
    lib.salnet_affine_l1_f64.argtypes = [P, P, I64, I64, P, P, P, P]
    lib.salnet_affine_l1_f64.restype = None
    lib.salnet_kld_f64.argtypes = [P, P, I64, I64, P, P, ctypes.c_double, P]
    lib.salnet_kld_f64.restype = I64
    lib.salnet_threshold_counts_f64.argtypes = [P, I64, I64, P, I64, I64, P, P, P, P, I64, P]
    lib.salnet_threshold_counts_f64.restype = None
    lib.salnet_nonzero_f64.argtypes = [P, I64, P, I64]
    lib.salnet_nonzero_f64.restype = I64
    lib.salnet_judd_pass_f64.argtypes = [P, I64, I64, P, P, P, ctypes.c_int32, P, I64, I64, P, P, P]
    lib.salnet_judd_pass_f64.restype = ctypes.c_int32
    for f in (lib.salnet_area_shrink_u8, lib.salnet_area_shrink_u16):
        f.argtypes = [P, I64, I64, I64, I64, I64, I64, P, P, I64, I64, I64, P, P, ctypes.c_float, ctypes.c_int32, P]
        f.restype = ctypes.c_int32
    return lib


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
    lib = library()
    if lib is None or x.ndim != 2 or not _usable(x):
        return None
    B, N = x.shape
    out = torch.empty((4, B), dtype=torch.float64)
    q = out.data_ptr()
    lib.salnet_row_stats_f64(x.data_ptr(), B, N, q, q + B * 8, q + 2 * B * 8, q + 3 * B * 8)  # memory-bound: one thread
    return out[0], out[1], out[2], out[3]


def pair_stats(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """Per row of ``x`` and ``y`` (B,N) float64, in one pass over both: (9, B) = min, max, sum and sum of
    squares of ``x``, the same four of ``y``, and the rows' dot products. None without the kernels or for
    other tensors."""
    lib = library()
    if lib is None or x.ndim != 2 or x.shape != y.shape or not _usable(x, y):
        return None
    B, N = x.shape
    out = torch.empty((9, B), dtype=torch.float64)
    lib.salnet_pair_stats_f64(x.data_ptr(), y.data_ptr(), B, N, B, out.data_ptr())  # memory-bound: one thread
    return out


def _per_row(kernel, x: torch.Tensor, y: torch.Tensor, params: list[torch.Tensor], *extra,
             threaded: bool) -> tuple[torch.Tensor, int]:
    """``kernel(x rows, y rows, count, N, params..., *extra, out)`` over the rows of ``x``, ``y`` (B,N), in
    threads if ``threaded``; returns out (B,) and the sum of the kernel's return values (0 for void kernels)."""
    B, N = x.shape
    params = [p.to(torch.float64).contiguous() for p in params]
    out = torch.empty(B, dtype=torch.float64)
    ret = [0] * B

    def call(a, b):
        r = kernel(x.data_ptr() + a * N * 8, y.data_ptr() + a * N * 8, b - a, N,
                   *[p.data_ptr() + a * 8 for p in params], *extra, out.data_ptr() + a * 8)
        ret[a] = r or 0

    _over_rows(B, call, threaded)
    return out, sum(ret)


def affine_l1(x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor
              ) -> torch.Tensor | None:
    """(B,) Σ|a·x + c − b·y| over each row of ``x``, ``y`` (B,N) float64, with a, b, c (B,) per row, in
    one pass; None without the kernels or for other tensors."""
    lib = library()
    if lib is None or x.ndim != 2 or x.shape != y.shape or not _usable(x, y):
        return None
    return _per_row(lib.salnet_affine_l1_f64, x, y, [a, b, c], threaded=False)[0]


def kld(x: torch.Tensor, y: torch.Tensor, kp: torch.Tensor, kg: torch.Tensor, eps: float) -> torch.Tensor | None:
    """(B,) Σ kg·y · log(eps + kg·y / (eps + kp·max(x, 0))) over each row of the prediction ``x`` and the
    ground truth ``y`` (B,N) float64, with kp, kg (B,) per row, in one pass (a vectorised log, < 1 ulp).
    None without the kernels, for other tensors, or where a log's argument is not a positive normal
    number (the caller's torch path then gives its NaN or inf)."""
    lib = library()
    if lib is None or x.ndim != 2 or x.shape != y.shape or not _usable(x, y):
        return None
    out, bad = _per_row(lib.salnet_kld_f64, x, y, [kp, kg], ctypes.c_double(eps), threaded=True)
    return None if bad else out


def threshold_counts(S: torch.Tensor, idx: torch.Tensor, use: torch.Tensor, lo: torch.Tensor, spread: torch.Tensor,
                     T: torch.Tensor) -> torch.Tensor | None:
    """(B, len(T)+1) int64: per row of ``S`` (B,N) float64, its values at ``idx`` (B, splits, width) int64,
    the first ``use`` (B,) of each split, normalised by (v − lo)/spread (B,), counted by how many of the
    ascending thresholds ``T`` are ≤ v (a NaN as 0). None without the kernels or for other tensors."""
    lib = library()
    if lib is None or not _usable(S, lo, spread, T) or idx.device.type != "cpu" or idx.ndim != 3:
        return None
    B, N = S.shape
    _, splits, width = idx.shape
    idx, use = idx.to(torch.int64).contiguous(), use.to(torch.int64).contiguous()
    nt = T.numel()
    out = torch.empty((B, nt + 1), dtype=torch.int64)
    lib.salnet_threshold_counts_f64(S.data_ptr(), B, N, idx.data_ptr(), splits, width, use.data_ptr(), lo.data_ptr(),
                                    spread.data_ptr(), T.data_ptr(), nt, out.data_ptr())  # a few reads per image
    return out


def flat_nonzero(x: torch.Tensor) -> torch.Tensor | None:
    """Flat int64 indices (ascending) of the nonzero entries of a contiguous float64 CPU tensor (NaN
    nonzero, −0.0 zero, as ``nonzero``), skipping all-zero blocks of 64 in one pass; None without the
    kernels or for another tensor."""
    lib = library()
    if lib is None or not _usable(x):
        return None
    n = x.numel()
    out = torch.empty(n // 64 + 1024, dtype=torch.int64)  # a sparse map's; a denser one is counted, then rerun
    found = lib.salnet_nonzero_f64(x.data_ptr(), n, out.data_ptr(), out.numel())
    if found > out.numel():
        out = torch.empty(found, dtype=torch.int64)
        lib.salnet_nonzero_f64(x.data_ptr(), n, out.data_ptr(), found)
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
    lib = library()
    if lib is None or not _usable(S, lo, scale, shift):
        return None
    B, N = S.shape
    R = marked.shape[1]
    marked = marked.contiguous().view(torch.uint8) if marked.dtype == torch.bool else marked.to(torch.uint8)
    found = torch.empty(B, dtype=torch.int64)
    ptrs = [t.data_ptr() for t in (S, lo, scale, shift, marked, hist, close, found)]

    def call(a, b):
        s, lo_, sc, sh, m, h, c, f = ptrs
        if lib.salnet_judd_pass_f64(s + a * N * 8, b - a, N, lo_ + a * 8, sc + a * 8, sh + a * 8, int(subtract),
                                    m + a * R, R, kmax, h + a * R * 8, c + a * N * 8, f + a * 8) != 0:
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
    lib = library()
    kernel = {torch.uint8: "salnet_area_shrink_u8", torch.uint16: "salnet_area_shrink_u16"}.get(x.dtype)
    if lib is None or kernel is None or x.ndim != 3 or x.device.type != "cpu" or not x.is_contiguous():
        return None
    H, W, C = x.shape
    (bih, fh, kh), (biw, fw, kw) = rows, cols
    shape = (C, H // bih * kh.shape[0], W // biw * kw.shape[0])
    if out is None:
        out = torch.empty(shape, dtype=torch.float32)
    elif out.shape != shape or out.dtype != torch.float32 or not out.is_contiguous() or out.device.type != "cpu":
        raise ValueError(f"area_shrink: out must be a contiguous float32 CPU tensor of shape {shape}, got "
                         f"{out.dtype} {tuple(out.shape)}")
    if getattr(lib, kernel)(x.data_ptr(), H, W, C, bih, kh.shape[0], kh.shape[1], fh.data_ptr(), kh.data_ptr(),
                            biw, kw.shape[0], kw.shape[1], fw.data_ptr(), kw.data_ptr(), scale, int(flip),
                            out.data_ptr()) != 0:
        raise MemoryError(f"salnet.native.area_shrink: no memory for a row of {W * C} sums")
    return out
