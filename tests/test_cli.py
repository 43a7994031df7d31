"""The `ember` CLI, driven as a subprocess (`python -m ember`) on small scripts (tests/cli_scripts/)
and on examples/demo.py. Expectations come from the scripts themselves (what they compute and
how many values they ask for), from numpy, and from llvmlite parsing what the CLI prints."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import llvmlite.binding as llvm
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent / "cli_scripts"
DEMO = ROOT / "examples" / "demo.py"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ember-cache")  # shared: the machine is calibrated once


def ember(*args, cache, check=True):
    env = dict(os.environ, EMBER_CACHE_DIR=str(cache))
    env.pop("EMBER_DEBUG", None)
    p = subprocess.run([sys.executable, "-m", "ember", *map(str, args)], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    if check:
        assert p.returncode == 0, f"ember {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}"
    return p


def as_json(*args, cache):
    return json.loads(ember(*args, "--json", cache=cache).stdout)


def script(name):
    return SCRIPTS / name


# -- ember run --------------------------------------------------------------------------------------
def test_run_profiles_the_one_fused_kernel_with_its_flops_and_bytes(cache_dir):
    n = 4096
    report = as_json("run", script("fused_chain.py"), n, cache=cache_dir)
    [k] = report["kernels"]                        # x*3+1, exp, sum: one fused kernel
    assert {"mul", "add", "exp", "sum"} <= set(k["ops"])
    assert k["launches"] == 1 and k["backend"] == "llvm"
    assert k["flops"] == 4 * n                     # mul, add, exp per element + one accumulation each
    assert k["bytes"] == 4 * n + 4                 # reads x (float32), writes one float32
    assert k["GBps"] > 0 and k["GFLOPs"] > 0 and 0 < k["peak_fraction"]
    cal = report["calibration"]
    assert cal["bandwidth_GBps"] > 0 and cal["peak_GFLOPs"] > 0
    assert report["summary"]["realizes"] == 1 and report["summary"]["plans_compiled"] == 1


def test_run_runs_the_script_unchanged_and_prints_a_table(cache_dir):
    n = 1000
    p = ember("run", script("fused_chain.py"), n, cache=cache_dir)
    x = np.linspace(-1, 1, n, dtype=np.float32).astype(np.float64)
    printed = float(re.search(r"result (\S+)", p.stdout).group(1))
    assert printed == pytest.approx(np.exp(x * 3 + 1).sum(), rel=1e-5)
    lines = p.stdout.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.split()[:2] == ["#", "kernel"])
    rows = lines[header + 1:lines.index("", header)]
    assert len(rows) == 1                                     # one fused kernel
    assert "llvm" in rows[0] and all(op in rows[0] for op in ("mul", "add", "exp", "sum"))
    assert "1 kernel, 1 launch" in p.stdout


def test_run_counts_a_gemm_template_as_2mnk_flops(cache_dir):
    p = ember("run", script("matmul.py"), "--json", cache=cache_dir)
    report = json.loads(p.stdout)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((256, 128), dtype=np.float32), rng.standard_normal((128, 64), dtype=np.float32)
    printed = float(re.search(r"result (\S+)", p.stderr).group(1))   # --json: the script's stdout is on stderr
    assert printed == pytest.approx(((a.astype(np.float64) * 2) @ b).sum(), rel=1e-4)
    [gemm] = [k for k in report["kernels"] if k["ops"] == ["gemm"]]
    assert gemm["flops"] == 2 * 256 * 64 * 128 and gemm["why"] == ["gemm"]


def test_run_passes_arguments_through_and_double_dash_protects_ember_options(cache_dir):
    p = ember("run", script("argv.py"), "1", "--lr", "0.5", "--", "--json", cache=cache_dir)
    assert "ARGV ['1', '--lr', '0.5', '--json']" in p.stdout
    assert "ran no kernels" in p.stderr


def test_run_on_the_demo_lists_its_training_kernels(cache_dir):
    report = as_json("run", DEMO, cache=cache_dir)
    ks = report["kernels"]
    # 200 steps realize (W, b, loss) + the test accuracy: step 1 (W, b still constants), steps
    # 2..200 (one reused plan), the accuracy graph
    assert report["summary"]["realizes"] == 201 and report["summary"]["plans_compiled"] == 3
    assert report["summary"]["launches"] == sum(k["launches"] for k in ks)
    assert max(k["launches"] for k in ks) >= 199
    ops = set().union(*(k["ops"] for k in ks))
    assert {"mul", "sum", "rmax", "exp", "log", "add", "neg"} <= ops   # matmul + log_softmax + SGD
    assert [k["total_ms"] for k in ks] == sorted((k["total_ms"] for k in ks), reverse=True)


# -- ember kernels ----------------------------------------------------------------------------------
def test_kernels_stage_llvm_is_ir_that_llvmlite_parses(cache_dir):
    [k] = as_json("kernels", script("fused_chain.py"), "--kernel", "0", "--stage", "llvm", cache=cache_dir)
    llvm.parse_assembly(k["text"]).verify()
    assert f"@{k['symbol']}(" in k["text"]


def test_kernels_stage_asm_defines_the_kernel_symbol(cache_dir):
    [k] = as_json("kernels", script("plain.py"), "--stage", "asm", cache=cache_dir)
    assert re.search(rf"^{k['symbol']}:", k["text"], re.M)


def test_kernels_list_and_every_stage_written_by_out(cache_dir, tmp_path):
    ks = as_json("kernels", script("normalize.py"), cache=cache_dir)
    assert [k["why"] for k in ks] == [["recompute"], ["output"]]   # the column sum, then the division
    out = tmp_path / "stages"
    p = ember("kernels", script("normalize.py"), "--out", out, cache=cache_dir)
    # every stage of both kernels, the Triton ones compiled for sm_90 included, except that the column
    # sum has a CPU-only loop order (it accumulates into its output) and so no Triton stages
    assert len(list(out.iterdir())) == 2 * 11 - 5
    assert "skipped stage triton" in p.stderr and "CPU-only loop order" in p.stderr

    def stage(k, ext):
        return (out / f"{k:02d}_{ks[k]['name']}{ext}").read_text()
    assert re.search(r"for r0 in 0..65  # serial\n\s+for c1 in 0..33  # parallel", stage(0, ".kir"))
    assert "add(" in stage(0, ".kir") and "div" not in stage(0, ".kir")
    assert re.search(r"div\(.*# kernel 1 output \[output\]", stage(1, ".graph.txt"))
    assert "loaded: kernel 0 output [recompute]" in stage(1, ".graph.txt")
    assert "separate from kernel 0" in stage(1, ".schedule.txt")
    for k in (0, 1):
        for ext in (".ll", ".opt.ll"):
            llvm.parse_assembly(stage(k, ext)).verify()
        assert re.search(rf"^{ks[k]['symbol']}:", stage(k, ".s"), re.M)


# -- ember explain / graph --------------------------------------------------------------------------
def test_explain_names_recompute_for_a_column_normalisation(cache_dir):
    text = ember("explain", script("normalize.py"), cache=cache_dir).stdout
    assert re.search(r"\[recompute\].*read by %\d+ in kernel 1", text)
    [plan] = as_json("explain", script("normalize.py"), cache=cache_dir)["plans"]
    assert [o["rule"] for k in plan["kernels"] for o in k["outputs"]] == ["recompute", "output"]


def test_explain_names_output_for_a_plain_expression(cache_dir):
    [plan] = as_json("explain", script("plain.py"), cache=cache_dir)["plans"]
    [k] = plan["kernels"]
    assert [o["rule"] for o in k["outputs"]] == ["output"] and k["after"] == []


def test_graph_text_and_dot(cache_dir):
    text = ember("graph", script("normalize.py"), cache=cache_dir).stdout
    assert re.search(r"= sum\(%\d+, \(0,\)\) : float32\[1, 33\]", text)
    assert re.search(r"= div\(%\d+, %\d+\) : float32\[65, 33\]", text)
    dot = ember("graph", script("normalize.py"), "--format", "dot", cache=cache_dir).stdout
    assert dot.startswith("digraph plan_0 {") and dot.rstrip().endswith("}")
    assert len(re.findall(r"subgraph cluster_k\d+", dot)) == 2
    declared = set(re.findall(r"^\s*(n\d+) \[", dot, re.M))
    edges = re.findall(r"^\s*(n\d+) -> (n\d+);", dot, re.M)
    assert edges and all(a in declared and b in declared for a, b in edges)


# -- ember cache / info -----------------------------------------------------------------------------
def test_cache_clear_empties_it_and_the_next_run_repopulates_it(tmp_path):
    ember("kernels", script("normalize.py"), cache=tmp_path)
    before = {e["name"] for e in as_json("cache", "ls", cache=tmp_path)}
    # two kernels' object code and the plan that launches them
    assert sorted(n.rsplit(".", 1)[1] for n in before) == ["o", "o", "plan"]
    p = ember("cache", "clear", cache=tmp_path)
    assert "removed 3 entries" in p.stdout
    assert as_json("cache", "ls", cache=tmp_path) == []
    ember("kernels", script("normalize.py"), cache=tmp_path)
    assert {e["name"] for e in as_json("cache", "ls", cache=tmp_path)} == before


def test_info_reports_the_host_and_a_calibration(cache_dir):
    info = as_json("info", cache=cache_dir)
    llvm.initialize_native_target()
    assert info["cpu"] == llvm.get_host_cpu_name() and info["target"] == llvm.get_process_triple()
    assert info["cores"] == os.cpu_count()
    assert info["backends"]["triton"].startswith("available")
    assert info["cuda"]["mode"] in ("unavailable", "gpu") and (info["cuda"]["mode"] == "gpu") == (info["cuda"]["devices"] > 0)
    assert info["calibration"]["bandwidth_GBps"] > 0 and "matmul" in info["calibration"]["peak_method"]


# -- user errors: one line, non-zero, no traceback --------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (("run", "no_such_script.py"), "can't open file"),
    (("kernels", script("plain.py"), "--kernel", "7"), "no kernel 7"),
    (("kernels", script("plain.py"), "--kernel", "nonexistent"), "no kernel named 'nonexistent'"),
    (("kernels", script("plain.py"), "--stage", "bogus"), "invalid choice: 'bogus'"),
    (("explain", script("plain.py"), "--plan", "3"), "no plan 3"),
    (("frobnicate",), "invalid choice"),
])
def test_user_errors_are_one_line(cache_dir, args, message):
    p = ember(*args, cache=cache_dir, check=False)
    assert p.returncode != 0
    mine = [ln for ln in p.stderr.splitlines() if ln.startswith("ember")]   # the rest is the script's
    assert mine == [p.stderr.splitlines()[-1]] and message in mine[0] and "Traceback" not in p.stderr


def test_a_script_that_raises_shows_its_own_traceback_and_exits_1(cache_dir):
    p = ember("run", script("raises.py"), cache=cache_dir, check=False)
    assert p.returncode == 1
    err = p.stderr
    assert err.startswith("Traceback (most recent call last):")
    assert 'raises.py", line 6, in broken' in err and "runpy" not in err and "cli.py" not in err
    assert err.rstrip().splitlines()[-1].startswith("ember.errors.ShapeError: The size of tensor a (3)")


def test_explain_lists_compile_traces_with_the_failed_guard(cache_dir):
    out = as_json("explain", script("compiled_step.py"), cache=cache_dir)
    reasons = [t["reason"] for t in out["compile_traces"] if t["function"] == "step"]
    assert reasons[0] == "new variant: first call"
    assert any("argument 0 changed: tensor[4, 3] float32 on cpu -> tensor[6, 3] float32 on cpu" in r for r in reasons)
    assert any("Sequential.training changed to False" in r for r in reasons)
    text = ember("explain", script("compiled_step.py"), cache=cache_dir).stdout
    assert "ember.compile traces:" in text and "step: retrace: Sequential.training changed to False" in text
    # the traced calls' plans are listed like any realize's (batch 4, batch 6, eval mode)
    assert len(out["plans"]) >= 3 and all(p["realizes"] >= 1 and p["kernels"] for p in out["plans"])


def test_kernels_stage_ptx_compiles_a_cpu_kernel_for_sm_90(cache_dir):
    [k] = as_json("kernels", script("plain.py"), "--stage", "ptx", cache=cache_dir)
    assert ".target sm_90" in k["text"] and re.search(r"^\.visible \.entry \w+\(", k["text"], re.M)
    [t] = as_json("kernels", script("plain.py"), "--stage", "triton", cache=cache_dir)
    assert "@triton.jit" in t["text"]
