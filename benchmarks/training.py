"""Training-step benchmarks: one optimizer step of a model, eager-looking and compiled.

    .venv/bin/python -m benchmarks.training                 # all models
    .venv/bin/python -m benchmarks.training --only mlp      # a subset
    .venv/bin/python -m benchmarks.training --write         # also record the table in RESULTS.md

Each framework trains the same model from the same initial weights on the same batches; the table
shows the median step time after warm-up (each step ends with its loss read to the host, as a
training loop that logs the loss does; the timed steps of all columns are interleaved, see
`_measure`), ratios against ember.compile, and a check that the
losses of the first steps agree with PyTorch's. Columns: PyTorch eager, torch.compile, ember
eager (graph built every step, plans cached by structure), ember.compile (replay).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .harness import cpu_count


@dataclass
class Model:
    name: str
    describe: str
    build: Callable            # (nn, seed_weights) -> (model, optimizer, loss_fn); nn is torch.nn or ember.nn
    batches: Callable          # (n, quick) -> list of (x, y) numpy batches
    targets: tuple = ()        # (peer column, min speedup of ember.compile over it, issue that sets it)
    eager_within: float | None = None   # ember eager's time at most this many times PyTorch eager's
    tol: float | None = 1e-4   # relative agreement of the first losses with PyTorch (None: not comparable)
    jax_step: Callable | None = None   # (torch model, quick) -> (jitted step(state, x, y) -> (state, loss), state)


def _mlp_build(lib, quick):
    nn, optim = lib.nn, lib.optim
    d = (784, 128, 128, 10) if quick else (784, 512, 512, 10)
    model = nn.Sequential(nn.Linear(d[0], d[1]), nn.ReLU(), nn.Linear(d[1], d[2]), nn.ReLU(), nn.Linear(d[2], d[3]))
    return model, optim.Adam(model.parameters(), lr=1e-3), nn.CrossEntropyLoss()


def _mlp_batches(n, quick):
    rng = np.random.default_rng(0)
    b = 32 if quick else 256
    return [(rng.standard_normal((b, 784)).astype(np.float32), rng.integers(0, 10, b)) for _ in range(n)]


def _mlp_jax(tmodel, quick):
    """The MLP step as a JAX user writes it: a pure function of (params, Adam state, batch), the
    gradient by jax.grad, Adam (PyTorch's defaults) by hand, the whole update under one jax.jit
    with the old state donated. Same initial weights as the PyTorch model."""
    import jax
    import jax.numpy as jnp
    params = [jnp.asarray(p.detach().numpy()) for p in tmodel.parameters()]   # (w, b) per layer

    def loss_fn(ps, x, y):
        h = x
        for i in range(0, len(ps), 2):
            h = h @ ps[i].T + ps[i + 1]
            if i + 2 < len(ps):
                h = jax.nn.relu(h)
        logp = jax.nn.log_softmax(h, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    def step(state, x, y, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        ps, m, v, t = state
        loss, g = jax.value_and_grad(loss_fn)(ps, x, y)
        t = t + 1
        m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
        v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g)]
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        ps = [p - lr * (mi / c1) / (jnp.sqrt(vi / c2) + eps) for p, mi, vi in zip(ps, m, v)]
        return (ps, m, v, t), loss

    zeros = lambda: [jnp.zeros_like(p) for p in params]   # noqa: E731  (donated buffers must be distinct)
    return jax.jit(step, donate_argnums=0), (params, zeros(), zeros(), jnp.float32(0))


def _cnn_build(lib, quick):
    from .cnn import _net   # PyTorch's MNIST example network, shared with the cnn_step benchmark
    model = _net(lib.nn, lib.nn.functional, lib.flatten)
    return model, lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), lib.nn.functional.nll_loss


def _cnn_batches(n, quick):
    rng = np.random.default_rng(0)
    b = 8 if quick else 64
    return [(rng.standard_normal((b, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, b)) for _ in range(n)]


def _gpt_build(lib, quick):
    nn, optim = lib.nn, lib.optim
    d, heads, ctx, vocab, layers = 128, 4, 64, 256, 2

    class TinyGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(vocab, d)
            self.pos = nn.Embedding(ctx, d)
            layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(layer, layers)
            self.ln = nn.LayerNorm(d)
            self.head = nn.Linear(d, vocab)
            self.register_buffer("mask", lib.triu(lib.full((ctx, ctx), float("-inf")), diagonal=1))

        def forward(self, idx):
            pos = lib.arange(idx.shape[1])
            h = self.blocks(self.tok(idx) + self.pos(pos), mask=self.mask)
            return self.head(self.ln(h))

    model = TinyGPT()
    return model, optim.AdamW(model.parameters(), lr=1e-3), _SeqLoss(nn.CrossEntropyLoss(), vocab)


class _SeqLoss:
    def __init__(self, loss, vocab):
        self.loss, self.vocab = loss, vocab

    def __call__(self, logits, y):
        return self.loss(logits.reshape(-1, self.vocab), y.reshape(-1))


def _gpt_batches(n, quick):
    rng = np.random.default_rng(0)
    b = 4 if quick else 16
    return [(rng.integers(0, 256, (b, 64)), rng.integers(0, 256, (b, 64))) for _ in range(n)]


MODELS = (
    Model("mlp", "MLP 784-512-512-10, ReLU, batch 256, cross-entropy, Adam", _mlp_build, _mlp_batches,
          targets=(("torch", 1.2, "#5"), ("torch.compile", 1.0, "#5"), ("torch", 1.5, "#8"),
                   ("torch.compile", 1.1, "#8"), ("jax", 1.1, "#8")),
          eager_within=1.5, jax_step=_mlp_jax),
    Model("cnn", "MNIST CNN (2 conv, max-pool, 2 dropout, 2 linear), batch 64, 28x28, NLL, SGD momentum 0.9",
          _cnn_build, _cnn_batches, tol=None,
          targets=(("torch", 1.0, "#5"), ("torch", 1.2, "#8"), ("torch.compile", 1.0, "#8"))),
    Model("tinygpt", "GPT: 2 pre-norm layers, d_model 128, 4 heads, context 64, vocab 256, batch 16, AdamW",
          _gpt_build, _gpt_batches, tol=1e-3,
          targets=(("torch", 1.0, "#5"), ("torch", 1.2, "#8"), ("torch.compile", 1.0, "#8"))),
)


def _copy_weights(src, dst) -> None:
    """PyTorch model weights -> ember model (same names, same layouts)."""
    import ember
    sd = {k: ember.tensor(v.detach().numpy().copy()) for k, v in src.state_dict().items()}
    dst.load_state_dict(sd)


def _stepper(framework: str, model_def: Model, batches, quick: bool):
    """One framework's training loop as a function: i -> the loss of step i (on batch i mod n), read
    to the host. Models start from the same PyTorch-initialised weights."""
    import torch
    torch.manual_seed(0)
    tmodel, topt, tloss = model_def.build(torch, quick)
    if framework == "jax":
        return _jax_stepper(model_def, tmodel, batches, quick)
    if framework.startswith("torch"):
        model, opt, loss_fn, lib = tmodel, topt, tloss, torch
        conv = lambda a: torch.from_numpy(a)
    else:
        import ember
        lib = ember
        ember.manual_seed(0)
        model, opt, loss_fn = model_def.build(ember, quick)
        _copy_weights(tmodel, model)
        conv = lambda a: ember.tensor(a)

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    if framework == "torch.compile":
        step = torch.compile(step)
    elif framework == "ember.compile":
        step = lib.compile(step)
    data = [(conv(x), conv(y)) for x, y in batches]
    return lambda i: float(step(*data[i % len(data)]).item())


def _jax_stepper(model_def: Model, tmodel, batches, quick: bool):
    if model_def.jax_step is None:
        raise NotImplementedError(f"no JAX version of the {model_def.name} step")
    import jax.numpy as jnp
    step, state = model_def.jax_step(tmodel, quick)
    data = [(jnp.asarray(x), jnp.asarray(y)) for x, y in batches]
    box = [state]

    def run(i):
        box[0], loss = step(box[0], *data[i % len(data)])
        return float(loss)          # the loss read to the host, as in the other columns
    return run


def _run(framework: str, model_def: Model, batches, steps: int, quick: bool):
    """Per-step times, losses and the first step's time of one framework run alone."""
    run = _stepper(framework, model_def, batches, quick)
    times, losses = [], []
    for i in range(steps):
        t0 = time.perf_counter()
        losses.append(run(i))
        times.append(time.perf_counter() - t0)
    return times, losses, times[0]


def _measure(runs: dict, steps: int, warmup: int) -> dict:
    """{framework: (median step, first step, losses) or an error string}. Each framework's first
    call (compilation included) and warm-up run alone; then the timed steps are interleaved, one
    step of each framework in turn (the order rotating), so that a machine whose speed drifts
    during the run (other jobs, frequency) slows every column alike and the ratios stay fair."""
    out, losses, times = {}, {}, {}
    for fw, run in list(runs.items()):
        try:
            t0 = time.perf_counter()
            losses[fw] = [run(0)]
            first = time.perf_counter() - t0
            losses[fw] += [run(i) for i in range(1, warmup)]
            out[fw], times[fw] = first, []
        except Exception as e:  # a framework that fails gets its error in its row
            out[fw] = repr(e)[:120]
            del runs[fw]
    order = list(runs)
    for i in range(warmup, warmup + steps):
        for fw in order:
            t0 = time.perf_counter()
            losses[fw].append(runs[fw](i))
            times[fw].append(time.perf_counter() - t0)
        order = order[1:] + order[:1]
    return {fw: v if isinstance(v, str) else (statistics.median(times[fw]), v, losses[fw]) for fw, v in out.items()}


_STARTUP = """
import sys, time
t0 = time.perf_counter()
import numpy as np, ember
from benchmarks.training import MODELS, _run
m = next(m for m in MODELS if m.name == sys.argv[1])
import torch
times, _, _ = _run("ember.compile", m, m.batches(1, False), 3, False)
print(sum(times))
"""


def startup(name: str) -> tuple[float, float]:
    """Seconds from nothing to a replay-ready ember.compile step (its first 3 calls, which trace),
    in a fresh process with an empty kernel cache, then again in another fresh process that finds
    the kernels in the on-disk cache."""
    import os
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, EMBER_CACHE_DIR=d)
        out = []
        for _ in range(2):
            r = subprocess.run([sys.executable, "-c", _STARTUP, name], env=env, capture_output=True, text=True,
                               cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            if r.returncode:
                raise RuntimeError(r.stderr[-500:])
            out.append(float(r.stdout.split()[-1]))
    return out[0], out[1]


def replay_overhead(n_kernels: int = 64, calls: int = 200) -> float:
    """Seconds per kernel launch of a replayed program of tiny kernels, minus the kernels' own time
    (measured by launching the same compiled kernels directly)."""
    import ember
    from ember.compiler.realize import execute
    ws = [ember.randn(4, 4).realize() for _ in range(n_kernels)]
    xs = [ember.randn(4, 4).realize()]

    @ember.compile
    def f(x):   # a chain of tiny matmuls: one kernel each, none can fuse with the next
        for w in ws:
            x = x @ w
        return x
    for _ in range(3):
        f(*xs)
    prog = next(v.programs[0] for v in f._variants.values()).final
    leaf = [xs[src].node.arg if kind == "arg" else src.node.arg if kind == "owner" else src
            for kind, src in prog.sources]
    t0 = time.perf_counter()
    for _ in range(calls):
        f(*xs)
    per_call = (time.perf_counter() - t0) / calls
    t0 = time.perf_counter()
    for _ in range(calls):
        execute(prog.plan, leaf)
    bare = (time.perf_counter() - t0) / calls
    n = len(prog.plan.steps)
    return per_call / n, bare / n, n


def _has_jax() -> bool:
    import importlib.util
    return importlib.util.find_spec("jax") is not None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", help="model names")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--frameworks", nargs="*", default=["torch", "torch.compile", "ember", "ember.compile"]
                    + (["jax"] if _has_jax() else []))
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(cpu_count())
    load = __import__("os").getloadavg()[0]
    print(f"threads: {cpu_count()}, load average {load:.2f}" + ("  (WARNING: machine busy)" if load > 0.5 else ""))
    rows = []
    for m in MODELS:
        if args.only and m.name not in args.only:
            continue
        batches = m.batches(8, args.quick)
        runs, res = {}, {}
        for fw in args.frameworks:
            if fw == "jax" and m.jax_step is None:
                continue
            print(f"{m.name} / {fw} ...", flush=True)
            try:
                runs[fw] = _stepper(fw, m, batches, args.quick)
            except Exception as e:  # a framework that fails gets its error in its row
                res[fw] = repr(e)[:120]
        res.update(_measure(runs, args.steps, args.warmup))
        res = {fw: (None, None, v) if isinstance(v, str) else v for fw, v in res.items()}
        ref = res.get("torch", (None, None, None))[2]
        for fw, (med, first, losses) in res.items():
            if med is None:
                rows.append((m, fw, None, None, None, f"error: {losses}"))
                continue
            check = "" if m.tol is not None else "losses not compared (dropout: each framework its own random stream)"
            if isinstance(ref, list) and m.tol is not None:
                k = 5
                err = max(abs(a - b) / max(abs(b), 1e-6) for a, b in zip(losses[:k], ref[:k]))
                check = f"first {k} losses within {err:.1e} of torch" + ("" if err <= m.tol else " MISMATCH")
            rows.append((m, fw, med, first, res.get("ember.compile", (None,))[0], check))
    lines = ["| model | framework | median step | ember.compile speedup | first step | check |", "|---|---|---|---|---|---|"]
    for m, fw, med, first, ec, check in rows:
        if med is None:
            lines.append(f"| {m.name} | {fw} |  |  |  | {check} |")
            continue
        sp = f"{med / ec:.2f}x" if ec and fw != "ember.compile" else ""
        lines.append(f"| {m.name} | {fw} | {med * 1e3:.2f} ms | {sp} | {first * 1e3:.0f} ms | {check} |")
    print("\n" + "\n".join(lines))
    verdicts = []
    for m in MODELS:
        ec = next((r[2] for r in rows if r[0] is m and r[1] == "ember.compile"), None)
        for peer, need, issue in m.targets:
            pt = next((r[2] for r in rows if r[0] is m and r[1] == peer), None)
            if ec and pt:
                sp = pt / ec
                verdicts.append(f"- {issue} {m.name}: ember.compile >= {need:g}x {peer}: {sp:.2f}x "
                                f"{'PASS' if sp >= need else 'FAIL'}")
        ee = next((r[2] for r in rows if r[0] is m and r[1] == "ember"), None)
        pt = next((r[2] for r in rows if r[0] is m and r[1] == "torch"), None)
        if m.eager_within and ee and pt:
            verdicts.append(f"- #4 {m.name}: ember eager within {m.eager_within:g}x of PyTorch eager: {ee / pt:.2f}x "
                            f"{'PASS' if ee / pt <= m.eager_within else 'FAIL'}")
    if not args.quick and "ember.compile" in args.frameworks:
        per, bare, n = replay_overhead()
        first_extra = len(lines)
        lines += ["", f"Replay cost per kernel launch ({n} tiny kernels): {per * 1e6:.1f} us per kernel for the "
                  f"whole compiled call, {bare * 1e6:.1f} us in the launch loop alone (kernel time included)"]
        verdicts.append(f"- #5 replay: compiled-call cost per tiny kernel below 5 us: {per * 1e6:.1f} us "
                        f"{'PASS' if per < 5e-6 else 'FAIL'}")
        for m in MODELS:
            if m.name == "mlp" and (not args.only or "mlp" in args.only):
                cold, warm = startup("mlp")
                lines += [f"MLP step startup to a replay-ready ember.compile step (3 traced calls, fresh "
                          f"process): cold cache {cold:.2f} s, warm disk cache {warm:.2f} s"]
                verdicts += [f"- {issue} {what} under {limit:g} s: {value:.2f} s {'PASS' if value < limit else 'FAIL'}"
                             for issue, what, value, limit in (("#5", "cold compile of the MLP step", cold, 5),
                                                               ("#5", "warm start", warm, 0.5),
                                                               ("#8", "cold compile of the MLP step", cold, 2),
                                                               ("#8", "warm start", warm, 0.3))]
        print("\n".join(lines[first_extra:]))
    print("\nTargets:\n" + "\n".join(verdicts))
    if args.write:
        import shlex
        from .harness import machine_facts
        from .run import section, write_results
        if args.quick:
            print("--write records full-size runs only")
            return 1
        command = " ".join([".venv/bin/python", "-m", "benchmarks.training"] + [shlex.quote(a) for a in (argv or sys.argv[1:])])
        write_results(section(machine_facts(cpu_count(), f"{load:.2f}"), command, "\n".join(lines), verdicts))
        print("wrote a results section to benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
