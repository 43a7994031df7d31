"""ember.compile: replayed steps equal eager steps; guards recompile exactly when they must."""
import numpy as np
import pytest

import ember
import ember.nn as nn
import ember.nn.functional as F


def _batches(n, shape, classes, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [(ember.tensor(rng.standard_normal(shape).astype(dtype)), ember.tensor(rng.integers(0, classes, shape[0])))
            for _ in range(n)]


def _train(build, batches, compiled, steps=20, loss_fn=None, lr_schedule=None):
    """Train from seed 0; returns (losses, final weights, step fn)."""
    ember.manual_seed(0)
    model, opt = build()
    loss_fn = loss_fn or nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    f = ember.compile(step) if compiled else step
    sched = lr_schedule(opt) if lr_schedule else None
    losses = []
    for i in range(steps):
        x, y = batches[i % len(batches)]
        losses.append(f(x, y).item())
        if sched:
            sched.step()
    return np.array(losses), {k: v.detach().numpy() for k, v in model.state_dict().items()}, f


def _assert_same(a, b):
    la, wa, _ = a
    lb, wb, _ = b
    np.testing.assert_allclose(lb, la, rtol=1e-5, atol=1e-7)
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_allclose(wb[k], wa[k], rtol=1e-5, atol=1e-6, err_msg=k)


def _mlp():
    m = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 5))
    return m, ember.optim.Adam(m.parameters(), lr=1e-2)


def test_mlp_with_dropout_compiled_equals_eager():
    data = _batches(4, (16, 20), 5)
    eager, comp = _train(_mlp, data, False), _train(_mlp, data, True)
    _assert_same(eager, comp)
    info = comp[2].cache_info()
    assert info["variants"] == 1 and info["hits"] + info["misses"] == 20
    assert info["misses"] <= 3   # the first step differs (no optimizer state yet); then stable
    assert eager[0][-1] < eager[0][0]    # it trains


class _CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, 1), nn.Conv2d(4, 8, 3, 1)
        self.bn = nn.BatchNorm2d(8)
        self.drop1, self.drop2 = nn.Dropout(0.25), nn.Dropout(0.5)
        self.fc1, self.fc2 = nn.Linear(8 * 3 * 3, 16), nn.Linear(16, 3)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.bn(self.conv2(x)))
        x = self.drop1(F.max_pool2d(x, 2))
        x = self.drop2(F.relu(self.fc1(ember.flatten(x, 1))))
        return F.log_softmax(self.fc2(x), dim=1)


def test_cnn_with_dropout_and_batchnorm_compiled_equals_eager():
    def build():
        m = _CNN()
        return m, ember.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    data = _batches(3, (6, 1, 10, 10), 3, seed=1)
    eager = _train(build, data, False, steps=12, loss_fn=F.nll_loss)
    comp = _train(build, data, True, steps=12, loss_fn=F.nll_loss)
    _assert_same(eager, comp)   # includes BatchNorm's running statistics
    assert comp[2].cache_info()["hits"] >= 9


def test_small_transformer_compiled_equals_eager():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(11, 16)
            self.enc = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True)
            self.head = nn.Linear(16, 11)

        def forward(self, idx):
            return self.head(self.enc(self.emb(idx))).reshape(-1, 11)

    def build():
        m = Tiny()
        # not Adam: attention's key bias has an exactly-zero gradient (softmax ignores a constant
        # added to every score), so its computed gradient is rounding noise whose value depends on
        # the summation order of the schedule, and Adam would scale that noise up to lr-sized steps
        return m, ember.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(2)
    data = [(ember.tensor(rng.integers(0, 11, (3, 5))), ember.tensor(rng.integers(0, 11, 15))) for _ in range(3)]
    _assert_same(_train(build, data, False, steps=8), _train(build, data, True, steps=8))


def test_lr_schedule_is_read_at_every_replay_without_recompiling():
    sched = lambda opt: ember.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    data = _batches(2, (8, 20), 5)
    eager = _train(_mlp, data, False, steps=10, lr_schedule=sched)
    comp = _train(_mlp, data, True, steps=10, lr_schedule=sched)
    _assert_same(eager, comp)
    assert comp[2].cache_info()["variants"] == 1 and comp[2].cache_info()["misses"] <= 3


def test_guards_batch_size_dtype_and_python_constants():
    w = ember.tensor(np.arange(6, dtype=np.float32).reshape(3, 2))

    @ember.compile
    def f(x, scale):
        return (x @ w.to(x.dtype)) * scale + 1

    rng = np.random.default_rng(0)
    for shape, dt, scale in [((4, 3), np.float32, 2.0), ((4, 3), np.float32, 2.0), ((4, 3), np.float32, 2.0),
                             ((7, 3), np.float32, 2.0), ((4, 3), np.float32, 3.0), ((4, 3), np.float64, 2.0),
                             ((4, 3), np.float32, 2.0)]:
        xn = rng.standard_normal(shape).astype(dt)
        out = f(ember.tensor(xn), scale)
        ref = (xn @ np.arange(6, dtype=dt).reshape(3, 2)) * scale + 1
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5)
        assert out.dtype == ember.tensor(ref).dtype
    info = f.cache_info()
    # (4,3) f32 2.0: traced twice, replayed; then three new variants, each traced; then a replay
    assert info["variants"] == 1 and info["hits"] == 2 and info["misses"] == 5
    before = dict(info)
    for _ in range(3):
        f(ember.tensor(rng.standard_normal((4, 3)).astype(np.float32)), 2.0)
    assert f.cache_info()["misses"] == before["misses"]   # same shapes never recompile


def test_train_eval_switch_retraces():
    ember.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    f = ember.compile(m)
    x = ember.ones(2, 4)
    for _ in range(3):
        f(x)
    m.eval()
    for _ in range(3):   # no dropout in eval mode, traced or replayed
        np.testing.assert_allclose(f(x).detach().numpy(), m(x).detach().numpy(), rtol=1e-6)
    assert len(list(f.parameters())) == 2   # the compiled module still looks like the module


def test_item_inside_compiled_function_raises_clearly():
    @ember.compile
    def f(x):
        return (x * 2).sum().item()

    with pytest.raises(RuntimeError, match="outside"):
        f(ember.ones(3))


def test_returned_structure_and_fresh_results():
    @ember.compile
    def f(x):
        return {"sum": x.sum(), "parts": (x * 2, 7)}

    outs = []
    for k in range(4):
        xn = np.full((2, 2), float(k), np.float32)
        r = f(ember.tensor(xn))
        outs.append(r)
        assert r["parts"][1] == 7
    for k, r in enumerate(outs):   # earlier results keep their values
        assert r["sum"].item() == 4.0 * k
        np.testing.assert_array_equal(r["parts"][0].numpy(), np.full((2, 2), 2.0 * k, np.float32))


def test_random_numbers_advance_like_eager():
    @ember.compile
    def f(x):
        return x + ember.rand(5)

    ember.manual_seed(3)
    comp = [f(ember.zeros(5)).numpy() for _ in range(5)]
    ember.manual_seed(3)
    eager = [ember.rand(5).numpy() for _ in range(5)]
    np.testing.assert_array_equal(np.stack(comp), np.stack(eager))
    assert len({tuple(c) for c in comp}) == 5


_CUDA_STEP = """
import json, sys
import ember, ember.nn as nn
dev = sys.argv[1]
ember.manual_seed(0)
m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.25), nn.Linear(8, 3)).to(dev)
opt = ember.optim.Adam(m.parameters(), lr=0.05)
lf = nn.CrossEntropyLoss()

@ember.compile
def step(x, y):
    opt.zero_grad(); loss = lf(m(x), y); loss.backward(); opt.step(); return loss

x, y = ember.randn(5, 4).to(dev), ember.tensor([0, 1, 2, 0, 1]).to(dev)
losses = [step(x, y).item() for _ in range(5)]
print(json.dumps({"losses": losses, "info": step.cache_info(), "device": str(m[0].weight.device)}))
"""


def test_compiled_step_on_the_triton_device_matches_cpu():
    """The same compiled training step replayed by the Triton backend (its interpreter: the test
    mode of the "cuda" device) gives the CPU's losses, dropout included."""
    import json
    import os
    import subprocess
    import sys
    runs = {}
    for dev, env in (("cpu", {}), ("cuda", {"EMBER_TRITON_INTERPRET": "1"})):
        r = subprocess.run([sys.executable, "-c", _CUDA_STEP, dev], env={**os.environ, **env},
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        runs[dev] = json.loads(r.stdout.strip().splitlines()[-1])
    assert runs["cuda"]["device"].startswith("cuda")
    np.testing.assert_allclose(runs["cuda"]["losses"], runs["cpu"]["losses"], rtol=1e-5)
    assert runs["cuda"]["info"]["hits"] == 2 and runs["cuda"]["info"]["variants"] == 1


def test_replay_memory_plan_never_shares_bytes_between_live_buffers():
    """The arena of a compiled step: intermediates whose lifetimes overlap never overlap in memory,
    buffers that are never alive together may share bytes, and results are not in the arena."""
    data = _batches(2, (16, 20), 5)
    _, _, f = _train(_mlp, data, True, steps=5)
    prog = next(v.programs[0] for v in f._variants.values()).final
    plan, arena = prog.plan, prog.arena
    n_leaves = len(arena.ptrs) - len(plan.tmps)
    results = {i for src, i in plan.outputs if src == "tmp"}
    life = {}
    for k, st in enumerate(plan.steps):
        for t in st.out_tmps:
            life.setdefault(t, [k, k])
        for src, i in st.params:
            if src == "tmp":
                life[i][1] = k
    spans = {t: (arena.ptrs[n_leaves + t], arena.ptrs[n_leaves + t] + plan.tmps[t][0].itemsize * plan.tmps[t][1])
             for t in life if t not in results}
    assert all(arena.ptrs[n_leaves + t] == 0 for t in results)
    for a in spans:
        for b in spans:
            if a < b and life[a][0] <= life[b][1] and life[b][0] <= life[a][1]:
                assert spans[a][1] <= spans[b][0] or spans[b][1] <= spans[a][0], (a, b)
    assert arena.nbytes <= sum(e - s + 64 for s, e in spans.values())


def test_switching_between_train_and_eval_keeps_both_programs():
    ember.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    f = ember.compile(m)
    x = ember.ones(2, 4)
    for mode in ["train", "eval"] * 3 + ["train"] * 3 + ["eval"] * 3:
        getattr(m, mode)()
        out = f(x).detach().numpy()
        if mode == "eval":
            np.testing.assert_allclose(out, m(x).detach().numpy(), rtol=1e-6)
    info = f.cache_info()
    assert info["variants"] == 2            # one trusted program per mode, both kept
    hits_before = info["hits"]
    m.train(); f(x); m.eval(); f(x)
    assert f.cache_info()["hits"] == hits_before + 2   # switching back and forth replays, no retrace


def _adam_mlp_step():
    ember.manual_seed(0)
    m = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 5))
    opt = ember.optim.Adam(m.parameters(), lr=1e-2)

    @ember.compile
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        return loss
    return m, opt, step


def test_replays_update_parameters_and_optimizer_state_in_place():
    """From the first replay on, parameters and Adam's moments keep their buffers: the update
    kernels write the new values over the old ones (and the values still equal eager training,
    test_mlp_with_dropout_compiled_equals_eager)."""
    m, opt, step = _adam_mlp_step()
    data = _batches(2, (16, 20), 5)
    state = lambda: list(m.parameters()) + [s for p in m.parameters() for s in opt.state[p].values()  # noqa: E731
                                              if isinstance(s, ember.Tensor) and s.ndim]
    for i in range(3):                 # two traces, then the program is trusted
        step(*data[i % 2])
    before = [t.node.arg.ptr() for t in state()]   # addresses only: holding a buffer forbids writing it
    assert len(before) == 12
    for i in range(3):   # double buffering would alternate between two addresses
        step(*data[i % 2])
        assert [t.node.arg.ptr() for t in state()] == before
    prog = next(v.programs[0] for v in step._variants.values()).final
    assert len(prog.inplace) == 12


def test_in_place_updates_never_change_a_value_someone_else_holds():
    """A detached copy, a state_dict snapshot, a lazy expression and a DLPack export of a parameter
    keep the value they had: those parameters get fresh buffers instead."""
    m, opt, step = _adam_mlp_step()
    data = _batches(2, (16, 20), 5)
    for i in range(3):
        step(*data[i % 2])
    w, b = m[0].weight, m[0].bias
    with ember.no_grad():
        held = {"detach": w.detach(), "snapshot": m.state_dict()["2.weight"], "lazy": b * 1.0}
    exported = np.from_dlpack(m[2].bias.detach())
    values = {k: v.numpy().copy() for k, v in held.items()}
    exported_value = exported.copy()
    for i in range(3):
        step(*data[i % 2])
    for k, v in held.items():
        np.testing.assert_array_equal(v.numpy(), values[k], err_msg=k)
    np.testing.assert_array_equal(exported, exported_value)
    assert not np.array_equal(w.detach().numpy(), values["detach"])   # training went on
    assert not np.array_equal(m[2].bias.detach().numpy(), exported_value)


def test_inplace_pairs_of_kernels():
    """kir.inplace_pairs allows an output over an input only for element-aligned reads."""
    from ember.compiler import kir
    from ember.compiler.ir import Node
    from ember.compiler.lower import lower
    from ember.compiler.buffer import Buffer
    from ember.compiler.dtypes import float32

    def leaf(shape):
        return Node.make("buffer", arg=Buffer("cpu", float32, int(np.prod(shape))), dtype=float32, shape=shape)

    def pairs(out, names):
        """{(input name, True if the output is `out`)} of the kernel computing `out`."""
        k, nodes = lower([[out]], lambda n: n.op == "buffer")
        return {(names[id(nodes[i])], nodes[j] is out) for i, j in kir.inplace_pairs(k)}

    a, c = leaf((8, 8)), leaf((8, 8))
    names = {id(a): "a", id(c): "c"}
    assert pairs(Node.make("add", (a, c)), names) == {("a", True), ("c", True)}   # both aligned
    tr = Node.make("add", (Node.make("permute", (a,), arg=(1, 0)), c))
    assert pairs(tr, names) == {("c", True)}                   # a is read transposed: only c
    rowsum = Node.make("sum", (a,), arg=(1,))
    bcast = Node.make("add", (Node.make("expand", (rowsum,), arg=(8, 8)), c))
    assert pairs(bcast, names) == {("c", True)}                # a's row is read by every column
    shift = Node.make("add", (Node.make("pad", (Node.make("slice", (a,), arg=((1, 1, 7), (0, 1, 8))),),
                                        arg=((0, 1), (0, 0))), c))
    assert pairs(shift, names) == {("c", True)}                # a read one row ahead


def test_dynamic_true_warns_that_shapes_are_specialised_and_still_works():
    """dynamic=True is accepted (PyTorch code passes it) but not built: a warning says so, and each
    batch size is a variant of its own with correct results."""
    with pytest.warns(UserWarning, match="symbolic shapes are not supported"):
        f = ember.compile(lambda x: (x * 2).sum(0), dynamic=True)
    for n in (3, 5, 3, 5, 3, 5):
        x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
        np.testing.assert_allclose(f(ember.tensor(x)).numpy(), (x * 2).sum(0))
    assert f.cache_info()["variants"] == 2
