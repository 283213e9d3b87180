"""The planners' hot loop: K action sequences of H steps through a DynamicsModel, at the machine's matmul ceiling.

``MLPRollout(model, precision, device, chunk_rows, refine_fraction, workers, kernel).rollout(model, task, state,
actions)`` returns what ``Planner.rollout`` returns (returns (K,), states (E, K, H+1, S)) with the same arithmetic
as H calls of ``model.predict`` and ``task.reward``, minus what costs time without being the work itself:

* the normaliser is folded into the first and last layers once per set of weights (float32: exactly the
  ``(x - mean) / std`` and ``y * std + mean`` of ``DynamicsModel`` up to rounding);
* every buffer is allocated once per (K, H, workers) and reused: states (H+1, E, K, S), the inputs and pose
  deltas and (BLAS kernel) the activations of one chunk; oneDNN's inner products return their own outputs;
* the network never sees the pose (core.state), so the loop over the H steps carries only the rest of the
  state (inputs, network, + delta, (sin, cos) pairs renormalised) and the poses of all H steps follow in one
  pass of cumulative sums (``core.state.integrate_poses_``): a third of the Python calls per step;
* candidates go through in chunks of ``chunk_rows`` rows, all H steps of one chunk before the next, so the
  activations of a chunk stay in the CPU's cache between layers and steps; bias and ReLU fused (oneDNN) or in
  place (BLAS);
* with several CPU threads the chunks run concurrently, one per worker thread whose torch runs single-threaded
  (``workers``), instead of splitting each matmul over the threads: the Python calls and the small ops of one
  chunk then overlap another chunk's matmuls, where an intra-op split makes both cores wait on each op;
* the task's reward runs once per chunk over all H steps (``Task.step_rewards``), not once per step;
* inference mode (no autograd bookkeeping);
* on a CPU the layers run as oneDNN inner products with the bias and ReLU fused (``kernel``; PyTorch's own
  ``mkldnn._linear_pointwise``, the op ``torch.compile`` emits for a Linear + ReLU on CPU), their weights packed
  once into oneDNN's blocked layout: on this AMD CPU (AVX-512) its float32 kernels run at about twice the rate
  of the BLAS behind ``torch.addmm``, which takes a slower code path there. ``kernel='blas'`` keeps ``addmm``
  (and any device other than the CPU uses it).

``precision='bfloat16'`` keeps the weights and activations in bfloat16 (AVX-512 BF16: about twice the float32
matmul rate) while states, deltas and reward sums stay float32: the inputs are centred in float32 before the
cast (a height of 0.02 m varying by 1 mm would otherwise lose its variation in bfloat16's 8 mantissa bits), and
the output mean is added in float32 after it.

The folded weights are rebuilt when the model's parameters or buffers change in place (their version counters)
or a different model is given, so a planner can keep one ``MLPRollout`` across model updates.
"""
from __future__ import annotations

import collections
import math
import os
import threading
from types import SimpleNamespace
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager

import torch

from mbmf_ros.core.dynamics import renormalise_views_
from mbmf_ros.core.state import POSE_DIM, integrate_poses_

PRECISIONS = {'float32': torch.float32, 'bfloat16': torch.bfloat16}
DEVICES = ('cpu', 'cuda', 'auto')
KERNELS = ('auto', 'onednn', 'blas')
# Rows per chunk: a plan of the 2x500 MLP at K=1000 H=10 took the least CPU time with 1024 (tried 128-2048, float32
# and bfloat16, BLAS kernel); matmuls of 2048 rows and more fall off the square-matmul rate (cache). oneDNN's
# float32 kernel wants fewer: on one thread a 1000-row chunk planned the hexapod's K=1000 H=10 in 37 ms against 25
# with 768 or 512 (the swimmer's 5000 x 5: 89 against 58); bfloat16 (half the bytes) keeps 1024.
DEFAULT_CHUNK_ROWS = 1024
DEFAULT_CHUNK_ROWS_ONEDNN_FLOAT32 = 768
# The float32 re-roll's skip rule (``refine_margin``): the bfloat16 error of a return is estimated as the 99th
# percentile of |bfloat16 - float32| over the last REFINE_ERROR_WINDOW re-rolled candidates, once
# REFINE_MIN_REROLLS re-rolls (plans) have been seen: until then every plan re-rolls. (A count of plans, not of
# values: one plan of the ant's K=7000 re-rolls 70 candidates, all from one state.)
REFINE_ERROR_WINDOW = 512
REFINE_MIN_REROLLS = 8
REFINE_ERROR_QUANTILE = 0.99
# Concurrent chunks are never split below this many rows: below it a chunk's Python calls cost about what its
# matmuls do, and one worker rolls the whole batch faster.
MIN_WORKER_ROWS = 64


def chunk_spans(K: int, chunk_rows: int, workers: int = 1) -> list:
    """Candidates [k0, k1) per chunk, of equal sizes: as few chunks of at most ``chunk_rows`` as cover K, their
    number rounded up to a multiple of ``workers`` (each worker gets as many: two workers split K=1000 into two
    chunks of 500) when every worker then gets at least MIN_WORKER_ROWS rows."""
    n = -(-K // chunk_rows)
    if workers > 1 and K >= workers * MIN_WORKER_ROWS:
        n = -(-n // workers) * workers
    rows = -(-K // n)
    return [(k0, min(k0 + rows, K)) for k0 in range(0, K, rows)]


_POOLS: dict = {}
# A forked child has none of the pools' threads: it starts its own (a submit to the parent's would never run).
os.register_at_fork(after_in_child=_POOLS.clear)


def worker_pool(workers: int) -> ThreadPoolExecutor:
    """The process's pool of ``workers`` threads for concurrent chunks, each running torch single-threaded (a
    worker's matmul releases the GIL, so the chunks run on separate cores). The threads that existed before keep
    their count; but ATen takes the last torch.set_num_threads as the count of every thread started afterwards,
    so a thread started after the first plan begins with 1 and must set its own (none of the package's does heavy
    work: the planner node's loader reads a checkpoint; the trainer node never plans). Setting it back from here
    would also reset the workers (tried)."""
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix='mlp-rollout',
                                             initializer=torch.set_num_threads, initargs=(1,))
    return _POOLS[workers]


@contextmanager
def serial_caller():
    """Run the calling thread's own torch ops single-threaded inside the block; yields the thread count it had
    (the rollout's worker count when ``workers`` is 0). Why: a planner's own ops (sampling K x H x A actions,
    refitting a distribution) are above ATen's grain size and run on libgomp's threads, which then spin for a few
    ms waiting for more work, on the cores the rollout's workers need: on two threads that cost the half_cheetah
    6 of 20 ms per plan (K=1000, H=10; OMP_WAIT_POLICY=PASSIVE made it vanish). Serial, those ops take well
    under a millisecond. Restored on leaving, error or not."""
    n = torch.get_num_threads()
    if n == 1:
        yield n
        return
    torch.set_num_threads(1)
    try:
        yield n
    finally:
        torch.set_num_threads(n)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'cpu' | 'cuda' | 'cuda:N' | 'auto' (cuda when available, else cpu) -> torch.device; a clear error when
    cuda is asked for and this torch build or machine has none."""
    name = 'cpu' if device is None else str(device)
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name.split(':')[0] not in ('cpu', 'cuda'):
        raise ValueError(f'device must be one of {list(DEVICES)} (or cuda:N), found {device!r}')
    if name.startswith('cuda') and not torch.cuda.is_available():
        raise ValueError(f'device {device!r} asked for, but torch {torch.__version__} sees no CUDA device '
                         f'(cuda available: False); use device cpu or auto')
    return torch.device(name)


def default_chunk_rows(kernel: str, dtype: torch.dtype) -> int:
    """Rows per chunk when the setting is 0 (see DEFAULT_CHUNK_ROWS)."""
    return DEFAULT_CHUNK_ROWS_ONEDNN_FLOAT32 if kernel == 'onednn' and dtype == torch.float32 else DEFAULT_CHUNK_ROWS


def onednn_linear(x, w, b, attr: str):
    """oneDNN's inner product x @ w.T + b with ``attr`` ('relu' | 'none') fused; its default overload called
    directly (the op packet would match the overloads on every call)."""
    return torch.ops.mkldnn._linear_pointwise.default(x, w, b, attr, [], '')


def pack_linear_weight(w, rows: int):
    """A weight (out, in) in oneDNN's layout for inputs of about ``rows`` rows (unchanged where torch lacks it)."""
    reorder = getattr(torch.ops.mkldnn, '_reorder_linear_weight', None)
    return w if reorder is None else reorder(w, rows)


def onednn_available() -> bool:
    """Whether this torch build has oneDNN's fused inner product on the CPU (``mkldnn._linear_pointwise``)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, '_linear_pointwise')


def resolve_kernel(kernel: str, device: torch.device) -> str:
    """'auto' | 'onednn' | 'blas' -> the kernel a rollout on ``device`` uses: oneDNN on a CPU where torch has it
    ('auto'), BLAS ``addmm`` elsewhere; 'onednn' asked for where it cannot run is a clear error."""
    if kernel not in KERNELS:
        raise ValueError(f'kernel must be one of {list(KERNELS)}, found {kernel!r}')
    if kernel == 'blas':
        return 'blas'
    ok = device.type == 'cpu' and onednn_available()
    if kernel == 'onednn' and not ok:
        raise ValueError(f'kernel onednn asked for, but it runs only on a CPU with a oneDNN build of torch '
                         f'(device {device}, oneDNN available: {onednn_available()}); use kernel auto or blas')
    return 'onednn' if ok else 'blas'


def resolve_precision(precision) -> torch.dtype:
    if isinstance(precision, torch.dtype) and precision in PRECISIONS.values():
        return precision
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {list(PRECISIONS)}, found {precision!r}')
    return PRECISIONS[precision]


def supports(model) -> bool:
    """Whether ``model`` is a DynamicsModel-like MLP this fast path can fold (else planners use predict)."""
    return all(hasattr(model, a) for a in ('layers', 'in_mean', 'in_std', 'out_mean', 'out_std', 'activation',
                                           'renormalise_pairs_')) and model.activation == 'relu'


def _versions(model) -> tuple:
    return tuple(t._version for t in list(model.parameters()) + list(model.buffers()))


class MLPRollout:
    """Fast rollouts of one DynamicsModel (see the module docstring).

    precision: 'float32' | 'bfloat16'; device: torch device of the buffers and folded weights; chunk_rows:
    candidates per chunk (None: default_chunk_rows); workers: threads rolling chunks concurrently, each with torch
    single-threaded (0: one per torch thread of the caller, torch.get_num_threads()); refine_fraction: see
    ``_refine``; refine_margin: see ``_clear_winner``; kernel: 'auto' | 'onednn' | 'blas' (see the module
    docstring). ``refines`` / ``refine_skips``: how many bfloat16 rollouts of the current model re-rolled their
    best candidates in float32 / skipped it (a clear winner).
    """

    def __init__(self, model, precision='float32', device='cpu', chunk_rows: int | None = None,
                 refine_fraction: float = 0.0, workers: int = 0, kernel: str = 'auto', refine_margin: float = 0.0):
        self.dtype = resolve_precision(precision)
        self.refine_fraction = float(refine_fraction)
        self.refine_margin = float(refine_margin)
        if self.refine_fraction < 0 or self.refine_margin < 0:
            raise ValueError(f'MLPRollout: refine_fraction and refine_margin must be >= 0, found '
                             f'{refine_fraction}, {refine_margin}')
        self._refiner: MLPRollout | None = None
        self.device = torch.device(device) if not isinstance(device, torch.device) else device
        self.kernel = resolve_kernel(kernel, self.device)
        self.chunk_rows = int(chunk_rows or default_chunk_rows(self.kernel, self.dtype))
        if self.chunk_rows < 1:
            raise ValueError(f'MLPRollout: chunk_rows must be >= 1, found {chunk_rows}')
        self.workers = int(workers or 0)
        if self.workers < 0:
            raise ValueError(f'MLPRollout: workers must be >= 0 (0: one per torch thread), found {workers}')
        self._model = None
        self._key = None
        self._buffers_key = None
        self.fold(model)

    # --- weights ---------------------------------------------------------------------------------------------
    def fold(self, model) -> None:
        """(Re)build the folded weights from ``model`` if it is not the one folded last or changed since."""
        key = (id(model), _versions(model))
        if self._model is model and key == self._key:
            return
        if not supports(model):
            raise ValueError(f'MLPRollout: {type(model).__name__} is not a ReLU DynamicsModel')
        self._model, self._key = model, key
        dev, dt = self.device, self.dtype
        with torch.no_grad():
            S, E = model.state_dim, model.num_members
            R = S - POSE_DIM
            in_mean = model.in_mean.detach().double().to(dev)
            in_std = model.in_std.detach().double().to(dev)
            out_mean = model.out_mean.detach().double().to(dev)
            out_std = model.out_std.detach().double().to(dev)
            ws = [layer.weight.detach().double().to(dev) for layer in model.layers]     # (E, in, out)
            bs = [layer.bias.detach().double().to(dev) for layer in model.layers]       # (E, 1, out)
            # First layer: W [(s - m) / sd ; a] + b = W_s' s + W_a a + (b - W_s' m), W_s' = W_s / sd (rows).
            w0 = ws[0].clone()
            w0[:, :R] = w0[:, :R] / in_std[:, None]
            b0 = bs[0].clone()
            if dt == torch.float32:
                b0 = b0 - (in_mean @ w0[:, :R])[:, None, :]
                self.in_shift = None
            else:
                self.in_shift = in_mean.float()          # centred in float32 before the cast (see docstring)
            # Last layer: (W h + b) * sd + m = (W * sd) h + (b * sd + m).
            wl = ws[-1] * out_std
            bl = bs[-1] * out_std
            if dt == torch.float32:
                bl = bl + out_mean
                self.out_shift = None
            else:
                self.out_shift = out_mean.float()            # added in float32 after the last layer, (S,)
            # The last layer computes the delta transposed, (S, rows) = W^T h^T: with S (~20) output columns a
            # GEMM runs at ~60% of the square-matmul rate here, with S output rows at ~80%; the delta is then a
            # (rows, S) view of it, with nothing copied.
            wl, bl = wl.transpose(1, 2), bl.transpose(1, 2)   # (E, S, hidden), (E, S, 1)
            ws[0], bs[0], ws[-1], bs[-1] = w0, b0, wl, bl
            # oneDNN's fused ReLU turns a NaN activation into 0 (torch's relu keeps it): a model with a non-finite
            # weight would give finite nonsense there, so it is caught here and all its candidates rank last.
            self.finite_weights = bool(all(torch.isfinite(t).all() for t in ws + bs))
            one = E == 1                                        # one member: plain matmuls, no batch dimension
            self.weights = [(w[0] if one else w).to(dt).contiguous() for w in ws]
            self.biases = [(b[0, 0] if one else b).to(dt).contiguous() for b in bs[:-1]] + [
                (bl[0] if one else bl).to(dt).contiguous()]
            if self.kernel == 'onednn':
                # oneDNN's inner product takes nn.Linear's layout: weight (out, in), bias (out,); per member.
                # The hidden layers are stored (E, in, out), the last one already transposed (E, S, hidden).
                # Packed once into oneDNN's own blocked layout for chunks of chunk_rows rows (any row count
                # works): it is otherwise reordered on every call (2x500: 4% of a 500-row layer's time).
                last = len(ws) - 1
                self.linear = [[(pack_linear_weight((w[e].t() if i < last else w[e]).to(dt).contiguous(),
                                                    self.chunk_rows),
                                 b[e].reshape(-1).to(dt).contiguous()) for i, (w, b) in enumerate(zip(ws, bs))]
                               for e in range(E)]
        self.members, self.state_dim, self.rest_dim = E, S, R
        self.action_dim = model.action_dim
        self.widths = tuple(w.shape[-1] for w in self.weights[:-1])     # of the hidden layers
        self._buffers_key = None
        # |bfloat16 - float32| of re-rolled returns: the skip rule's estimate of this model's bfloat16 error.
        self._refine_errors = collections.deque(maxlen=REFINE_ERROR_WINDOW)
        self.refines = self.refine_skips = 0        # of this model
        self._error_bound: float | None = None

    # --- buffers -----------------------------------------------------------------------------------------------
    def _buffers(self, K: int, H: int, workers: int):
        """The states (H+1, E, K, S) and returns (E, K) of a plan, the chunks (k0, k1) and one set of chunk
        buffers per worker: allocated once per (K, H, workers)."""
        key = (K, H, workers)
        if self._buffers_key != key:
            E, S, dev = self.members, self.state_dim, self.device
            self.spans = chunk_spans(K, self.chunk_rows, workers)
            c = max(k1 - k0 for k0, k1 in self.spans)
            self.states_buf = torch.empty(H + 1, E, K, S, device=dev)
            self.returns_buf = torch.empty(E, K, device=dev)
            self.scratch = [self._chunk_buffers(c, H) for _ in range(min(workers, len(self.spans)))]
            self._views = {}
            self._buffers_key = key
        return self.states_buf

    def _chunk_buffers(self, c: int, H: int) -> SimpleNamespace:
        """One worker's buffers for chunks of up to c rows: the network's inputs of all H steps ``x`` (H, c, R + A)
        (the actions are written in once per chunk), the float32 network outputs of all H steps ``y`` (H, E, c, S)
        (their pose deltas feed integrate_poses_), the norms of the (sin, cos) pairs ``norm`` (up to E x c x S);
        with the BLAS kernel also the hidden layers' activations (c, width), the last layer's output ``out``
        (E, S, c) (transposed) and the float32 delta ``delta`` (E, S, c) (in float32: the output itself)."""
        E, S, dev, dt = self.members, self.state_dim, self.device, self.dtype
        lead = (c,) if E == 1 else (E, c)
        b = SimpleNamespace(x=torch.empty(H, *lead, self.rest_dim + self.action_dim, device=dev, dtype=dt),
                            y=torch.empty(H, E, c, S, device=dev), hidden=[], out=None, delta=None,
                            norm=torch.empty(E * c * S, device=dev))
        if self.kernel != 'onednn':                 # oneDNN's inner products allocate their outputs
            b.delta = torch.empty(E, S, c, device=dev)
            b.out = b.delta if dt == torch.float32 else torch.empty(E, S, c, device=dev, dtype=dt)
            b.hidden = [torch.empty(*lead, w, device=dev, dtype=dt) for w in self.widths]
        return b

    def _chunk_views(self, model, k0: int, k1: int, H: int, b: SimpleNamespace) -> SimpleNamespace:
        """Every view the H steps of chunk k0:k1 read and write, on worker buffers ``b``: made once per (chunk,
        worker) and kept with the buffers, so the loop makes no Python-level slicing calls (on two workers the
        Python work of one chunk is what the other's matmuls wait on)."""
        key = (k0, k1, id(b))
        v = self._views.get(key)
        if v is not None:
            return v
        E, R, S, c = self.members, self.rest_dim, self.state_dim, k1 - k0
        one = E == 1
        chunk = self.states_buf[:, :, k0:k1]                            # (H+1, E, c, S) float32
        rests = chunk[..., POSE_DIM:]                                   # (H+1, E, c, R)
        xs = b.x[:, :c] if one else b.x[:, :, :c]                       # (H, c, R + A) or (H, E, c, R + A)
        ys = b.y[:, :, :c]                                              # (H, E, c, S) float32
        v = SimpleNamespace(chunk=chunk, x_acts=xs[..., R:], dpose=ys[..., :POSE_DIM], steps=[])
        if self.kernel != 'onednn':
            v.hidden = [h[:c] if one else h[:, :c] for h in b.hidden]
            v.out, v.delta = b.out[:, :, :c], b.delta[:, :, :c]        # (E, S, c)
        pair_views = getattr(model, 'pair_views', lambda rest: None)
        for t in range(H):
            rest, nxt, x = rests[t], rests[t + 1], xs[t]
            step = SimpleNamespace(
                x=x, x_rest=x[..., :R], rest_in=rest[0] if one else rest, rest=rest, nxt=nxt, y=ys[t],
                y_rest=ys[t][..., POSE_DIM:],
                members=[(x if one else x[e], rest[e], nxt[e], ys[t, e], ys[t, e][:, POSE_DIM:], ys[t, e][:, :POSE_DIM])
                         for e in range(E)],
                pairs=None)
            views = pair_views(nxt)                 # (sin, cos) interleaved in one block: see renormalise_pairs_
            if views is not None:
                n = views[2].shape[-2]
                step.pairs = views + (b.norm[:E * c * n].view(E, c, n, 1),)
            v.steps.append(step)
        self._views[key] = v
        return v

    # --- the loop ----------------------------------------------------------------------------------------------
    def rollout(self, model, task, state, actions, threads: int | None = None, best_only: bool = False):
        """state (S,) float32, actions (K, H, A) -> (returns (K,) mean over members, states (E, K, H+1, S)).

        Same contract and arithmetic as ``Planner.rollout`` with ``model.predict`` and ``task.reward``. With
        more than one worker the chunks are rolled concurrently (``task.step_rewards`` is then called from
        several threads at once, on disjoint candidates); which worker rolls a chunk changes nothing in the
        result. threads: the caller's torch thread count, the number of workers when ``workers`` is 0 (default
        torch.get_num_threads(); a planner inside ``serial_caller`` passes the count it had). best_only: the
        caller uses only the best candidate (random shooting), so the float32 re-roll may be skipped when the
        bfloat16 ranking leaves no doubt about it (``_clear_winner``).
        """
        self.fold(model)
        K, H, A = actions.shape
        # On a GPU one stream does the work: no concurrent chunks there.
        workers = 1 if self.device.type != 'cpu' else self.workers or threads or torch.get_num_threads()
        states = self._buffers(K, H, workers)
        states[0] = state.to(device=self.device, dtype=torch.float32)
        if workers == 1:
            with torch.inference_mode():
                for k0, k1 in self.spans:
                    self._chunk(model, task, actions, k0, k1, self.scratch[0])
        else:
            spans, lock = iter(self.spans), threading.Lock()

            def work(scratch):          # each worker takes the next chunk until none is left
                with torch.inference_mode():
                    while True:
                        with lock:
                            span = next(spans, None)
                        if span is None:
                            return
                        self._chunk(model, task, actions, *span, scratch)

            # Even a single chunk (a small K) goes to a worker: on the caller's threads torch would split its
            # small ops over them, and the threads would spin on each other more than they compute.
            pool = worker_pool(workers)
            futures = [pool.submit(work, scratch) for scratch in self.scratch]
            wait(futures)           # all of them, before an error is raised: none may still write the buffers
            for f in futures:
                f.result()
        # A member's -inf (non-finite prediction) makes the mean -inf: the candidate ranks last.
        returns, out_states = self.returns_buf.mean(0), states.permute(1, 2, 0, 3)
        if not self.finite_weights:
            returns.fill_(-math.inf)
        if self.dtype != torch.float32 and self.refine_fraction > 0 and K > 1:
            if best_only and self._clear_winner(returns):
                self.refine_skips += 1
            else:
                self._refine(model, task, state, actions, returns, out_states)
        return returns, out_states

    def _chunk(self, model, task, actions, k0: int, k1: int, b: SimpleNamespace) -> None:
        """Roll candidates k0:k1 through all H steps and write their states and summed rewards in place.

        The network sees only the state without its pose (core.state), so the H steps' loop carries that part
        alone (inputs, network, + delta, (sin, cos) pairs renormalised: the fewest Python calls per step, which
        is what two workers' matmuls wait on) and keeps each step's output; the poses of all H steps follow in
        one pass (core.state.integrate_poses_) from the outputs' pose deltas."""
        H = actions.shape[1]
        v = self._chunk_views(model, k0, k1, H, b)
        acts = actions[k0:k1].transpose(0, 1)                           # (H, c, A)
        v.x_acts.copy_(acts if self.members == 1 else acts.unsqueeze(1))
        shift, onednn, float32 = self.out_shift, self.kernel == 'onednn', self.in_shift is None
        for st in v.steps:
            # Inputs [s[3:], a]: the normaliser is in the first layer's weights (float32) or centred here in
            # float32 before the cast (bfloat16).
            if float32:
                st.x_rest.copy_(st.rest_in)
            else:
                torch.sub(st.rest_in, self.in_shift, out=st.x_rest)
            if onednn:
                for layers, (x, rest, nxt, y_out, y_rest, y_pose) in zip(self.linear, st.members):
                    y = self._network_onednn(x, layers)                 # (c, S), self.dtype
                    if shift is None:                                   # float32: the output in physical units
                        torch.add(rest, y[:, POSE_DIM:], out=nxt)
                        y_pose.copy_(y[:, :POSE_DIM])
                    else:       # bfloat16 + its output mean in float32 (one mixed-type op; the rest float32)
                        torch.add(y, shift, out=y_out)
                        torch.add(rest, y_rest, out=nxt)
            else:
                st.y.copy_(self._network_blas(st.x, v.hidden, v.out, v.delta))
                torch.add(st.rest, st.y_rest, out=st.nxt)
            if st.pairs is None:
                model.renormalise_pairs_(st.nxt)
            else:                                   # renormalise_pairs_ with its views made once
                renormalise_views_(*st.pairs)
        chunk = v.chunk
        integrate_poses_(chunk[..., :POSE_DIM], v.dpose)
        # All H rewards of the chunk in one call: states (E, c, H+1, S) -> rewards (E, c, H).
        # Whether every predicted state is finite, as whether their sum is (an overflow beyond 1e38 counts as
        # non-finite): summed over H first, in the buffer's own layout (H, E, c, S), it costs 1/25 of
        # isfinite().all() over the last dimensions.
        finite = torch.isfinite(chunk[1:].sum(0).sum(-1))
        self.returns_buf[:, k0:k1] = score(task, chunk.permute(1, 2, 0, 3), actions[k0:k1], finite)

    @staticmethod
    def _network_onednn(x, layers):
        """One member's network on inputs x (c, R + A) -> its output (c, S): oneDNN inner products with the bias
        and ReLU fused."""
        for w, b in layers[:-1]:
            x = onednn_linear(x, w, b, 'relu')
        w, b = layers[-1]
        return onednn_linear(x, w, b, 'none')

    def _network_blas(self, x, hs, out_t, delta_t):
        """The network on inputs x (c, R + A) or (E, c, R + A) -> the float32 delta (E, c, S), a transposed view
        of ``delta_t`` (E, S, c): addmm / baddbmm into the preallocated activations, ReLU in place."""
        E = self.members
        h = x
        for w, b, out in zip(self.weights[:-1], self.biases[:-1], hs):     # the hidden layers
            if E == 1:
                torch.addmm(b, h, w, out=out)
            else:
                torch.baddbmm(b, h, w, out=out)
            h = out.relu_()
        w_last, b_last = self.weights[-1], self.biases[-1]
        if E == 1:
            torch.addmm(b_last, w_last, h.t(), out=out_t[0])
        else:
            torch.baddbmm(b_last, w_last, h.transpose(1, 2), out=out_t)
        if self.out_shift is not None:
            torch.add(out_t, self.out_shift[:, None], out=delta_t)
        return delta_t.transpose(1, 2)

    def _clear_winner(self, returns) -> bool:
        """Whether the best bfloat16 return leads the second by more than ``refine_margin`` times this model's
        bfloat16 error (the 99th percentile of |bfloat16 - float32| over recent re-rolls): float32 would then
        pick the same winner, and its re-roll (a tenth of a K=1000 H=10 plan, nearly all per-call overhead) is
        skipped. Measured on the hexapod's follow runs (2 seeds x 5 paths, every plan re-rolled): the 99th
        percentile was 0.0009 with returns of ~0.2; float32 changed the winner in 0.5% of the plans at K=1000
        and 1% at K=500, and of those winners none (of 11) and 3 (of 23) had led by more than 3.3 of it; 85%
        of the plans led by more. 0 (or too few re-rolls seen yet): never skipped."""
        if self.refine_margin <= 0 or self._error_bound is None or returns.shape[0] < 2:
            return False
        first, second = torch.topk(returns, 2).values.tolist()
        return math.isfinite(first) and first - second > self.refine_margin * self._error_bound

    def _refine(self, model, task, state, actions, returns, states):
        """Re-roll the best ``refine_fraction`` of the candidates (at least 8) in float32 and put their float32
        returns and states in place: the winner, the elites and the heaviest MPPI weights are then decided in
        float32 (two candidates within bfloat16's rounding of each other otherwise swap places). A few rows:
        rolled on the calling thread, single-threaded (a worker's hand-over costs more than it saves)."""
        m = min(returns.shape[0], max(8, int(math.ceil(self.refine_fraction * returns.shape[0]))))
        top = torch.topk(returns, m).indices
        if self._refiner is None:
            self._refiner = MLPRollout(model, 'float32', self.device, self.chunk_rows, workers=1, kernel=self.kernel)
        with serial_caller():
            r32, s32 = self._refiner.rollout(model, task, state, actions[top], 1)
        err = (returns[top] - r32).abs()
        self._refine_errors.extend(err[torch.isfinite(err)].tolist())
        self.refines += 1
        if self.refines >= REFINE_MIN_REROLLS and self._refine_errors:
            self._error_bound = float(torch.quantile(torch.tensor(list(self._refine_errors)),
                                                     REFINE_ERROR_QUANTILE))
        returns[top] = r32
        states[:, top] = s32


def score(task, states, actions, states_finite):
    """Summed rewards (E, K) of sequences, states (E, K, H+1, S), actions (K, H, A), by the planners' rules:
    a candidate whose predicted states or rewards turn non-finite scores -inf (it ranks last); with a task that
    has ``healthy(next_states) -> bool``, termination is sticky: the step on which a candidate falls is scored by
    the task (minus its ``termination_penalty``, if any), the steps after it earn nothing. A task's
    ``planning_penalty`` (its height band) is subtracted from each step's reward. states_finite (E, K): whether
    all predicted states are finite."""
    r = task.step_rewards(states, actions)                               # (E, K, H)
    nxt = states[:, :, 1:]
    extra = task.planning_penalty(nxt) if hasattr(task, 'planning_penalty') else None
    if extra is not None:
        r = r - extra
    # A sum is finite iff every term is (short of an overflow beyond 1e38): cheaper than isfinite().all(-1).
    finite = torch.isfinite(r.sum(-1)) & states_finite
    healthy = getattr(task, 'healthy', None)
    # A task whose ``termination`` bounds are empty (the swimmer, the half_cheetah) never ends an episode: its
    # healthy() is then only the finiteness that ``finite`` already holds.
    if healthy is not None and getattr(task, 'termination', True):
        ok = healthy(nxt)                                                # (E, K, H): after step t
        # alive before step t: healthy after every step before it.
        alive = torch.cat([torch.ones_like(ok[..., :1]),
                           torch.cummin(ok[..., :-1].to(torch.uint8), -1).values.bool()], -1)
        r = torch.where(alive, r, torch.zeros_like(r))
        penalty = float(getattr(task, 'termination_penalty', 0.0))
        if penalty:
            # The step on which a candidate falls (alive before it, not after) also pays the task's penalty.
            r = r - penalty * (alive & ~ok).to(r.dtype)
    return r.sum(-1).masked_fill(~finite, -math.inf)
