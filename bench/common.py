"""Shared pieces of the benchmarks: this machine's matmul ceiling, MLP FLOP counts, interleaved timing, tables.

Every benchmark that compares a planner with the hardware measures the ceiling itself, in the same process and
run (``measure_peaks``), because on a shared machine the absolute figures move from minute to minute while
ratios taken together hold. Timings are interleaved (``interleaved``: one repeat of every variant in turn) so a
load change hits all variants alike; a variant's figure is the best of its repeats (its capability, as the
peak is) with the median beside it.
"""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
# The clock of every timing: wall time (the truth on a quiet machine), or with --clock cpu this process's CPU time
# (for one thread on a machine that other work loads: the time the work itself took while it had a core).
CLOCK = {'name': 'wall', 'fn': time.perf_counter}


def set_clock(name: str) -> None:
    if name not in ('wall', 'cpu'):
        raise ValueError(f'clock must be wall or cpu, found {name!r}')
    if name == 'cpu' and torch.get_num_threads() != 1:
        raise ValueError('--clock cpu needs --threads 1 (threads waiting on each other burn CPU time too)')
    CLOCK.update(name=name, fn=time.perf_counter if name == 'wall' else time.process_time)


def add_clock_argument(ap) -> None:
    ap.add_argument('--clock', default='wall', choices=['wall', 'cpu'],
                    help='wall time (default), or CPU time of this process with --threads 1 on a loaded machine')


def machine_info() -> dict:
    """CPU model, logical CPUs, torch version and threads, 1/5/15-min load averages, commit."""
    cpu = platform.processor() or ''
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(['git', '-C', str(REPO), 'rev-parse', '--short', 'HEAD'], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(['git', '-C', str(REPO), 'status', '--porcelain', '--untracked-files=no'],
                               capture_output=True, text=True, check=True).stdout.strip()
        commit += ' (+ uncommitted changes)' if dirty else ''
    except (OSError, subprocess.CalledProcessError):
        commit = 'unknown'
    return {'cpu': cpu, 'logical_cpus': os.cpu_count(), 'torch': torch.__version__,
            'threads': torch.get_num_threads(), 'load': os.getloadavg(), 'commit': commit}


def _best_rate(fn, flops: float, seconds: float = 0.4, min_calls: int = 3) -> float:
    """Best GFLOP/s of repeated calls of ``fn`` over about ``seconds``."""
    fn()
    clock = CLOCK['fn']
    best, t_end, calls = 0.0, time.perf_counter() + seconds, 0
    while calls < min_calls or time.perf_counter() < t_end:
        t0 = clock()
        fn()
        best = max(best, flops / max(clock() - t0, 1e-9) / 1e9)
        calls += 1
    return best


def numpy_blas_threads(n: int) -> bool:
    """Hold numpy's OpenBLAS to ``n`` threads (it starts one per CPU, whatever torch's count): False where this
    numpy has no OpenBLAS of its own to set."""
    import ctypes
    import glob
    for lib in glob.glob(str(Path(np.__file__).parent) + '.libs/*openblas*.so*'):
        dll = ctypes.CDLL(lib)
        for name in ('scipy_openblas_set_num_threads64_', 'openblas_set_num_threads64_', 'openblas_set_num_threads'):
            if hasattr(dll, name):
                getattr(dll, name)(ctypes.c_int(n))
                return True
    return False


def measure_peaks(sizes=(1024, 2048), seconds: float = 0.4) -> dict:
    """Matmul ceiling of this machine at the current thread count, GFLOP/s (best over sizes and repeats).

    'f32': float32, the largest of torch's BLAS (``torch.mm``: MKL), torch's oneDNN (the kernel of the planners'
    rollout on a CPU, core.rollout) and numpy's (OpenBLAS) square matmuls; 'f32_torch', 'f32_onednn',
    'f32_numpy' separately (on this AMD CPU oneDNN's AVX-512 kernels run at about twice MKL's rate: a ceiling
    without it would be half the machine's); 'bf16': the larger of torch's bfloat16 ``mm`` and oneDNN's. n x n @ n x n counts 2 n^3 FLOP. numpy's OpenBLAS runs on as many
    threads as torch (left alone it used every CPU: with --threads 1 the "1-thread" ceiling was a 2-thread one);
    where its thread count cannot be set, numpy is left out (0) unless torch uses every CPU anyway.
    """
    from mbmf_ros.core.rollout import onednn_available, onednn_linear
    onednn = onednn_available()
    out = {'f32_torch': 0.0, 'f32_onednn': 0.0, 'f32_numpy': 0.0, 'bf16': 0.0}
    numpy_ok = numpy_blas_threads(torch.get_num_threads()) or torch.get_num_threads() == os.cpu_count()
    for n in sizes:
        flops = 2.0 * n ** 3
        a, b = torch.randn(n, n), torch.randn(n, n)
        c = torch.empty(n, n)
        out['f32_torch'] = max(out['f32_torch'], _best_rate(lambda: torch.mm(a, b, out=c), flops, seconds))
        ab, bb = a.bfloat16(), b.bfloat16()
        cb = torch.empty(n, n, dtype=torch.bfloat16)
        out['bf16'] = max(out['bf16'], _best_rate(lambda: torch.mm(ab, bb, out=cb), flops, seconds))
        if onednn:          # an inner product of n rows, n inputs, n outputs: the same 2 n^3 FLOP
            out['f32_onednn'] = max(out['f32_onednn'], _best_rate(lambda: onednn_linear(a, b, None, 'none'),
                                                                    flops, seconds))
            out['bf16'] = max(out['bf16'], _best_rate(lambda: onednn_linear(ab, bb, None, 'none'), flops, seconds))
        an, bn = a.numpy(), b.numpy()
        cn = np.empty((n, n), dtype=np.float32)
        if numpy_ok:
            out['f32_numpy'] = max(out['f32_numpy'], _best_rate(lambda: np.matmul(an, bn, out=cn), flops, seconds))
    out['f32'] = max(out['f32_torch'], out['f32_onednn'], out['f32_numpy'])
    return out


def mlp_flops(dims, rows: int, members: int = 1) -> float:
    """Multiply-add FLOP of one pass of an MLP with layer widths ``dims`` (in, hidden..., out) over ``rows``."""
    return 2.0 * rows * members * sum(i * o for i, o in zip(dims[:-1], dims[1:]))


def model_dims(model) -> tuple:
    return (model.in_dim,) + tuple(model.hidden_sizes) + (model.out_dim,)


def interleaved(variants: dict, repeats: int, warmup: int = 1, settle: int = 1) -> dict:
    """Time each callable of ``variants`` {name: fn} ``repeats`` times, one call of each in turn, each timed call
    after ``settle`` untimed calls of the same variant: a planner runs plan after plan, and the call right after
    another variant pays for that one's leftovers (libgomp's idle threads spin for a few ms after a parallel op
    and take the core a rollout worker needs: +5 ms on a 15 ms plan here).

    Returns {name: {'best': s, 'median': s, 'times': [s...]}}.
    """
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in variants}
    clock = CLOCK['fn']
    for _ in range(repeats):
        for k, fn in variants.items():
            for _ in range(settle):
                fn()
            t0 = clock()
            fn()
            times[k].append(max(clock() - t0, 1e-9))
    return {k: {'best': min(v), 'median': statistics.median(v), 'times': v} for k, v in times.items()}


def start_state(spec) -> np.ndarray:
    """A state at rest, (state_dim,) float32: level (every cos = 1), z = 15 mm (the hexapod standing), the rest 0."""
    s = np.zeros(spec.state_dim, dtype=np.float32)
    for i, n in enumerate(spec.state_names):
        if n.startswith('cos_'):
            s[i] = 1.0
        if n == 'z':
            s[i] = 0.015
    return s


def table(headers, rows) -> str:
    """A GitHub markdown table (strings as given; floats with 2 decimals)."""
    def cell(v):
        return f'{v:.2f}' if isinstance(v, float) else str(v)
    lines = ['| ' + ' | '.join(headers) + ' |', '|' + '---|' * len(headers)]
    lines += ['| ' + ' | '.join(cell(v) for v in r) + ' |' for r in rows]
    return '\n'.join(lines)


def header_lines(peaks: dict | None = None) -> str:
    """Machine, threads, load, commit (and the ceiling measured in this run) as markdown bullet lines."""
    m = machine_info()
    lines = [f"- machine: {m['cpu']}, {m['logical_cpus']} logical CPUs; torch {m['torch']}, "
             f"{m['threads']} thread(s); clock: {CLOCK['name']} time",
             f"- load average at the start (1/5/15 min): {m['load'][0]:.2f} / {m['load'][1]:.2f} / "
             f"{m['load'][2]:.2f}",
             f"- commit: {m['commit']}"]
    if peaks:
        lines.append(f"- ceiling measured in this run: float32 matmul {peaks['f32']:.0f} GFLOP/s (torch "
                     f"{peaks['f32_torch']:.0f}, torch's oneDNN {peaks.get('f32_onednn', 0):.0f}, numpy {peaks['f32_numpy']:.0f}), "
                     f"bfloat16 {peaks['bf16']:.0f}")
    return '\n'.join(lines)
