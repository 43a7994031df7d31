"""The `ember` command line: run a PyTorch-style script unchanged and see every graph, fusion
decision and generated kernel (docs/cli.md).

    ember run train.py --epochs 1            # the script's kernels, sorted by time, vs machine peak
    ember kernels train.py --kernel 0 --stage llvm
    ember explain train.py                   # why each kernel boundary exists
    ember graph train.py --format dot | dot -Tsvg > g.svg
    ember cache ls | info | clear
    ember info [--calibrate]

The script runs in this process (runpy, with sys.argv set as `python SCRIPT ARGS` would) inside an
`ember.debug.capture()`. ember's own options may come before or after SCRIPT; everything else
after SCRIPT, and everything after `--`, is the script's.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import runpy
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

SCRIPT_COMMANDS = ("run", "kernels", "explain", "graph")
STAGE_EXT = {"graph": ".graph.txt", "schedule": ".schedule.txt", "ir": ".kir", "llvm": ".ll",
             "llvm_opt": ".opt.ll", "asm": ".s", "triton": ".triton.py", "ttir": ".ttir",
             "ttgir": ".ttgir", "llir": ".llir.ll", "ptx": ".ptx"}
LEXER = {"llvm": "llvm", "llvm_opt": "llvm", "llir": "llvm", "asm": "gas", "triton": "python", "ptx": "nasm"}


class CLIError(Exception):
    """A user error: printed as one line, exit status `code`, no traceback."""

    def __init__(self, msg: str, code: int = 2):
        super().__init__(msg)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CLIError(f"{message} (see `{self.prog} --help`)")


# -- output: rich on a terminal, plain text otherwise ----------------------------------------------
def _tty() -> bool:
    return sys.stdout.isatty()


def _console():
    from rich.console import Console
    return Console(highlight=False)


def table(columns: list[str], rows: list[list], title: str = "", numeric: set = frozenset(),
          header: bool = True) -> None:
    """Print rows under columns; columns named in `numeric` are right-aligned."""
    rows = [["" if v is None else str(v) for v in r] for r in rows]
    if _tty():
        from rich import box
        from rich.table import Table
        t = Table(title=title or None, box=box.SIMPLE_HEAD, title_justify="left", show_header=header)
        for c in columns:
            t.add_column(c, justify="right" if c in numeric else "left", overflow="fold")
        for r in rows:
            t.add_row(*r)
        _console().print(t)
        return
    if title:
        print(title)
    w = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]

    def line(vals):
        cells = [v.rjust(w[i]) if columns[i] in numeric else v.ljust(w[i]) for i, v in enumerate(vals)]
        return "  ".join(cells).rstrip()
    if header:
        print(line(columns))
    for r in rows:
        print(line(r))


def show_code(text: str, stage: str) -> None:
    if _tty() and stage in LEXER:
        from rich.syntax import Syntax
        _console().print(Syntax(text, LEXER[stage], theme="ansi_dark", word_wrap=False))
    else:
        print(text)


def emit_json(obj) -> None:
    print(json.dumps(obj, indent=2))


# -- running the user's script ------------------------------------------------------------------------
def run_script(path: str, args: list[str], quiet: bool):
    """Run `path` as __main__ under a capture. Returns (capture, wall seconds, exit status or None).
    With quiet, the script's stdout goes to stderr so that ours stays machine-readable."""
    import ember
    if not os.path.isfile(path):
        raise CLIError(f"can't open file '{path}': No such file or directory")
    script = os.path.abspath(path)
    sys.argv = [path, *args]
    sys.path.insert(0, os.path.dirname(script))
    status = None
    redirect = contextlib.redirect_stdout(sys.stderr) if quiet else contextlib.nullcontext()
    t0 = time.perf_counter()
    with ember.debug.capture() as cap, redirect:
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as e:
            if e.code not in (None, 0):
                if not isinstance(e.code, int):
                    print(e.code, file=sys.stderr)
                status = e.code if isinstance(e.code, int) else 1
        except KeyboardInterrupt:
            print("ember: interrupted; kernels so far:", file=sys.stderr)
        except BaseException as e:  # the script's own error: its traceback, as python prints it
            _print_script_traceback(e, script)
            status = 1
    return cap, time.perf_counter() - t0, status


def _print_script_traceback(e: BaseException, script: str) -> None:
    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != script:  # drop runpy/ember frames
        tb = tb.tb_next
    if tb is None:  # e.g. a SyntaxError: no frame of the script ran
        sys.stderr.write("".join(traceback.format_exception_only(type(e), e)))
    else:
        sys.stderr.write("".join(traceback.format_exception(type(e), e, tb)))


@dataclass
class KernelStats:
    """One distinct compiled kernel and all its launches; `index` is its `--kernel` number."""
    index: int
    rec: object                 # first KernelRecord
    launches: int = 0
    time_s: float = 0.0

    @property
    def shapes(self) -> list[tuple]:
        kp = self.rec.scheduled
        return kp.shapes if kp else [self.rec.shape]

    @property
    def reasons(self) -> list[str]:
        kp = self.rec.scheduled
        return list(dict.fromkeys(r for _, r, _ in kp.outputs)) if kp else []

    def rates(self) -> tuple[float, float]:
        t = max(self.time_s, 1e-12)
        return self.rec.bytes * self.launches / t / 1e9, self.rec.flops * self.launches / t / 1e9

    def row(self, cal: dict | None) -> dict:
        gbps, gflops = self.rates()
        d = {"index": self.index, "name": self.rec.name, "symbol": self.rec.symbol,
             "backend": self.rec.backend, "ops": self.rec.ops, "shapes": [list(s) for s in self.shapes],
             "launches": self.launches, "total_ms": self.time_s * 1e3,
             "mean_us": self.time_s / max(self.launches, 1) * 1e6, "bytes": self.rec.bytes,
             "flops": self.rec.flops, "GBps": gbps, "GFLOPs": gflops, "why": self.reasons}
        if cal:  # roofline: the nearer of the two limits
            mem, comp = gbps / cal["bandwidth_GBps"], gflops / cal["peak_GFLOPs"]
            d["peak_fraction"], d["bound"] = max(mem, comp), "mem" if mem >= comp else "compute"
        return d


def kernel_stats(cap) -> list[KernelStats]:
    by: dict = {}
    for r in cap.kernels:
        s = by.get(r.symbol)
        if s is None:
            s = by[r.symbol] = KernelStats(len(by), r)
        s.launches += 1
        s.time_s += r.time_s
    return list(by.values())


def _shapes(shapes) -> str:
    return " + ".join("x".join(map(str, s)) or "scalar" for s in shapes)


def _n(k: int, noun: str) -> str:
    return f"{k} {noun}" if k == 1 else f"{k} {noun}{'es' if noun.endswith('h') else 's'}"


def select(stats: list[KernelStats], key: str | None, script: str) -> list[KernelStats]:
    if key is None:
        return stats
    if key.lstrip("-").isdigit():
        i = int(key)
        if -len(stats) <= i < len(stats):
            return [stats[i]]
        raise CLIError(f"no kernel {i}: {script} ran {_n(len(stats), 'kernel')}"
                       + (f" (0..{len(stats) - 1})" if stats else ""), 1)
    hits = [s for s in stats if key in (s.rec.name, s.rec.symbol)] or [s for s in stats if key in s.rec.name]
    if len(hits) == 1:
        return hits
    if hits:
        raise CLIError(f"kernel name '{key}' matches {len(hits)} kernels ({', '.join(str(h.index) for h in hits)}); "
                       "pass an index", 1)
    raise CLIError(f"no kernel named '{key}' in {script}; list them with `ember kernels {script}`", 1)


# -- commands -------------------------------------------------------------------------------------------
def cmd_run(a) -> int:
    cap, wall, status = run_script(a.script, a.script_args, quiet=a.json)
    if status is not None:
        return status
    stats = kernel_stats(cap)
    cal = None
    if stats:
        cal = _calibration(False)
    rows = sorted((s.row(cal) for s in stats), key=lambda d: -d["total_ms"])
    summary = {"kernels": len(stats), "launches": len(cap.kernels),
               "kernel_ms": sum(s.time_s for s in stats) * 1e3, "realizes": cap.realizes,
               "plans_compiled": len(cap.plans), "wall_s": wall}
    if a.json:
        emit_json({"kernels": rows, "summary": summary, "calibration": cal})
        return 0
    if not stats:
        hint = " (EMBER_BACKEND=interpret evaluates with numpy)" if os.environ.get("EMBER_BACKEND") == "interpret" else ""
        print(f"ember: {a.script} ran no kernels{hint}", file=sys.stderr)
        return 0
    cols = ["#", "kernel", "backend", "launches", "total ms", "mean us", "GB/s", "GFLOP/s", "% peak", "shape", "ops fused"]
    table(cols, [[d["index"], d["name"], d["backend"], d["launches"], f"{d['total_ms']:.3f}", f"{d['mean_us']:.1f}",
                  f"{d['GBps']:.2f}", f"{d['GFLOPs']:.2f}", f"{d['peak_fraction'] * 100:.1f} {d['bound']}",
                  _shapes(d["shapes"]), ", ".join(d["ops"])] for d in rows],
          numeric={"#", "launches", "total ms", "mean us", "GB/s", "GFLOP/s", "% peak"})
    print(f"\n{_n(summary['kernels'], 'kernel')}, {_n(summary['launches'], 'launch')}, "
          f"{summary['kernel_ms']:.1f} ms in kernels; {_n(summary['realizes'], 'realize')}, "
          f"{_n(summary['plans_compiled'], 'plan')} compiled; script {wall:.2f} s")
    print(f"% peak: the nearer roofline limit, vs {cal['bandwidth_GBps']:.1f} GB/s and {cal['peak_GFLOPs']:.1f} GFLOP/s "
          "(`ember info`)")
    return 0


def _calibration(recalibrate: bool) -> dict:
    from ember.compiler import cache
    from ember.debug import calibration
    path = cache.cache_dir() / ".calibration.json"
    if recalibrate or not path.exists():
        print("ember: calibrating this machine (memory bandwidth, peak FLOP/s)...", file=sys.stderr)
    return calibration(recalibrate)


def cmd_kernels(a) -> int:
    cap, _, status = run_script(a.script, a.script_args, quiet=True)
    if status is not None:
        return status
    stats = select(kernel_stats(cap), a.kernel, a.script)
    if a.out:
        return _write_stages(stats, a.stage, Path(a.out))
    if a.stage is None and a.kernel is None:
        if not stats and not a.json:
            print(f"ember: {a.script} ran no kernels", file=sys.stderr)
            return 0
        if a.json:
            emit_json([s.row(None) for s in stats])
            return 0
        table(["#", "kernel", "backend", "launches", "shape", "buffer why", "ops fused"],
              [[s.index, s.rec.name, s.rec.backend, s.launches, _shapes(s.shapes), ", ".join(s.reasons),
                ", ".join(s.rec.ops)] for s in stats], numeric={"#", "launches"})
        return 0
    stage = a.stage or "ir"
    texts = [(s, _source(s, stage)) for s in stats]
    if a.json:
        emit_json([{"index": s.index, "name": s.rec.name, "symbol": s.rec.symbol, "stage": stage, "text": t}
                   for s, t in texts])
        return 0
    for s, t in texts:
        if len(texts) > 1:
            print(f"==> kernel {s.index}: {s.rec.name} ({stage}) <==")
        show_code(t, stage)
    return 0


def _source(s: KernelStats, stage: str) -> str:
    from ember.compiler.debug import StageUnavailable
    try:
        return s.rec.source(stage)
    except StageUnavailable as e:
        raise CLIError(f"--stage {stage}: {e}", 1)


def _write_stages(stats, stage, out: Path) -> int:
    """Every stage of every kernel (or the one asked for); without --stage, stages a kernel does not
    have (LLVM stages of a Triton kernel, Triton stages without the triton package) are skipped."""
    from ember.compiler.debug import STAGES, StageUnavailable
    out.mkdir(parents=True, exist_ok=True)
    n, skipped = 0, {}
    for s in stats:
        for st in ([stage] if stage else STAGES):
            try:
                text = s.rec.source(st)
            except StageUnavailable as e:
                if stage:
                    raise CLIError(f"--stage {stage}: {e}", 1)
                skipped.setdefault(st, str(e))
                continue
            (out / f"{s.index:02d}_{s.rec.name}{STAGE_EXT[st]}").write_text(text + "\n")
            n += 1
    print(f"wrote {n} files ({stage or 'all stages'} of {len(stats)} kernels) to {out}")
    for st, why in skipped.items():
        print(f"skipped stage {st}: {why}", file=sys.stderr)
    return 0


def _plans(cap, which: int | None) -> list[tuple[int, object, int]]:
    uses: dict = {}
    for r in cap.log:
        if r.plan is not None:
            uses[id(r.plan)] = uses.get(id(r.plan), 0) + 1
    plans = [(i, p, uses.get(id(p), 0)) for i, p in enumerate(cap.plans)]
    if which is None:
        return plans
    if not 0 <= which < len(plans):
        raise CLIError(f"no plan {which}: the script compiled {_n(len(plans), 'plan')}"
                       + (f" (0..{len(plans) - 1})" if plans else ""), 1)
    return [plans[which]]


def _plan_header(i, p, uses) -> str:
    return (f"plan {i}: {_n(len(p.kernels), 'kernel')}, realized {uses}x; "
            f"graph of {p.nodes_before} nodes, {p.nodes_after} after rewrites")


def cmd_explain(a) -> int:
    from ember.compiler.debug import RULES
    cap, _, status = run_script(a.script, a.script_args, quiet=True)
    if status is not None:
        return status
    plans = _plans(cap, a.plan)
    if a.json:
        emit_json({"plans": [{"plan": i, "realizes": u, "nodes": p.nodes_before, "nodes_after_rewrites": p.nodes_after,
                    "kernels": [{"index": k.index, "name": k.name, "symbol": k.symbol, "after": k.after,
                                 "inputs": k.inputs,
                                 "outputs": [{"node": n, "rule": r, "why": RULES.get(r, r), "read_by": [{"node": x, "kernel": j} for x, j in rb]}
                                             for n, r, rb in k.outputs]} for k in p.kernels]}
                   for i, p, u in plans],
                   "compile_traces": [{"function": f, "reason": r} for f, r in cap.recompiles]})
        return 0
    for i, p, u in plans:
        print(_plan_header(i, p, u))
        for k in p.kernels:
            print("  " + k.explain().replace("\n", "\n  "))
        print()
    if cap.recompiles:   # ember.compile: every trace, with the guard or difference behind it
        print("ember.compile traces:")
        for fn, reason in cap.recompiles:
            print(f"  {fn}: {reason}")
    if not plans:
        print(f"ember: {a.script} compiled no plans", file=sys.stderr)
    return 0


def cmd_graph(a) -> int:
    cap, _, status = run_script(a.script, a.script_args, quiet=True)
    if status is not None:
        return status
    for i, p, u in _plans(cap, a.plan):
        if a.format == "dot":
            print(p.graph_dot.replace("digraph ember {", f"digraph plan_{i} {{", 1))
            continue
        print(_plan_header(i, p, u))
        print(p.graph_text)
        print("schedule:")
        for k in p.kernels:
            outs = ", ".join(f"{n.split(' ', 1)[0]} [{r}]" for n, r, _ in k.outputs)
            print(f"  kernel {k.index}: {k.name}  writes {outs}"
                  + (f"  after kernel {', '.join(map(str, k.after))}" if k.after else ""))
        print()
    return 0


def cmd_cache(a) -> int:
    from ember.compiler import cache
    d = cache.cache_dir()
    entries = cache.entries()
    size = sum(p.stat().st_size for p in entries)
    if a.action == "clear":
        n = cache.clear()
        print(f"removed {n} entries ({size / 1024:.1f} KiB) from {d}")
    elif a.action == "info":
        info = {"directory": str(d), "entries": len(entries), "bytes": size, "enabled": cache.enabled(),
                "calibration": str(d / ".calibration.json") if (d / ".calibration.json").exists() else None}
        if a.json:
            emit_json(info)
        else:
            table(["", ""], header=False, rows=[["directory", d], ["entries", len(entries)], ["size", f"{size / 1024:.1f} KiB"],
                             ["disk cache", "on" if info["enabled"] else "off (EMBER_DISK_CACHE=0)"],
                             ["calibration", info["calibration"] or "not measured yet (`ember info`)"]])
    else:
        rows = [{"name": p.name, "bytes": p.stat().st_size,
                 "modified": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p.stat().st_mtime))} for p in entries]
        if a.json:
            emit_json(rows)
        elif not rows:
            print(f"{d}: no entries")
        else:
            table(["entry", "size", "modified"], [[r["name"], r["bytes"], r["modified"]] for r in rows],
                  title=f"{d}: {len(rows)} entries, {size / 1024:.1f} KiB", numeric={"size"})
    return 0


def cmd_info(a) -> int:
    from ember.debug import machine_info
    info = machine_info()
    info["calibration"] = _calibration(a.calibrate)
    if a.json:
        emit_json(info)
        return 0
    cal = info["calibration"]
    table(["", ""], header=False, rows=[
        ["ember", info["ember"]],
        ["python / numpy", f"{info['python']} / {info['numpy']}"],
        ["llvmlite / LLVM", f"{info['llvmlite']} / {info['llvm']}"],
        ["target", info["target"]],
        ["cpu", info["cpu"]],
        ["cpu features", " ".join(info["cpu_features"])],
        ["cores", f"{info['cores']} ({info['threads']} used by kernels)"],
        ["backends", ", ".join(f"{k}: {v}" for k, v in info["backends"].items())],
        ["CUDA driver", "found" if info["cuda_driver"] else "not found"],
        ["cuda device", _cuda_line(info["cuda"])],
        ["Triton", info["triton"] or "not installed"],
        ["memory bandwidth", f"{cal['bandwidth_GBps']:.2f} GB/s  ({cal['bandwidth_method']})"],
        ["peak FLOP/s", f"{cal['peak_GFLOPs']:.2f} GFLOP/s  ({cal['peak_method']})"],
        ["calibrated", f"{cal['measured']} (`ember info --calibrate` to measure again)"],
    ])
    return 0


def _cuda_line(c: dict) -> str:
    if c["mode"] == "unavailable":
        return f"unavailable: {c.get('reason', '')}"
    cc = f", compute capability {c['compute_capability']}" if "compute_capability" in c else ""
    return f"{c['device']} ({c['mode']}{cc})"


# -- argument parsing -----------------------------------------------------------------------------------
def build_parser() -> _Parser:
    from ember.compiler.debug import STAGES
    p = _Parser(prog="ember", description="See every graph, fusion decision and generated kernel of an ember program.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def script_cmd(name, help, fn, json_flag=True):
        s = sub.add_parser(name, help=help, description=help)
        s.add_argument("script", help="the Python script to run (as `python SCRIPT ARGS` would)")
        if json_flag:
            s.add_argument("--json", action="store_true", help="machine-readable output")
        s.set_defaults(fn=fn)
        return s

    script_cmd("run", "run SCRIPT and profile its kernels: time, GB/s, GFLOP/s, fraction of peak", cmd_run)
    k = script_cmd("kernels", "list SCRIPT's kernels, or show one at a compiler stage", cmd_kernels)
    k.add_argument("--kernel", metavar="NAME|INDEX", help="a kernel by index (as listed) or name")
    k.add_argument("--stage", choices=list(STAGES), help="graph, schedule, kernel IR, LLVM IR (before/after "
                   "optimization), assembly; Triton source and its ttir/ttgir/llir/ptx compiled for sm_90, "
                   "for any kernel, no GPU needed (default: ir)")
    k.add_argument("--out", metavar="DIR", help="write the kernels' stages to files in DIR")
    e = script_cmd("explain", "why each kernel boundary exists (the scheduler rule behind it)", cmd_explain)
    e.add_argument("--plan", type=int, help="only this plan (a compiled graph structure)")
    g = script_cmd("graph", "the graph of each compiled plan and its schedule", cmd_graph, json_flag=False)
    g.add_argument("--format", choices=["text", "dot"], default="text")
    g.add_argument("--plan", type=int, help="only this plan")
    c = sub.add_parser("cache", help="the on-disk kernel cache", description="the on-disk kernel cache")
    c.add_argument("action", choices=["ls", "info", "clear"])
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=cmd_cache)
    i = sub.add_parser("info", help="versions, target, CPU, backends, calibration of bandwidth and peak FLOP/s")
    i.add_argument("--calibrate", action="store_true", help="measure bandwidth and peak FLOP/s again")
    i.add_argument("--json", action="store_true")
    i.set_defaults(fn=cmd_info)
    return p


def _split_script_args(sub: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], list[str]]:
    """ember's options (recognised exactly, anywhere before `--`) and SCRIPT for the parser;
    everything else after SCRIPT for the script."""
    takes_value = {o: a.nargs != 0 for a in sub._actions for o in a.option_strings}
    mine, theirs, script_seen, i = [], [], False, 0
    while i < len(argv):
        a = argv[i]
        opt = a.split("=", 1)[0]
        if a == "--":
            rest = argv[i + 1:]
            if not script_seen and rest:
                mine.append(rest.pop(0))
            theirs += rest
            break
        if opt in takes_value:
            mine.append(a)
            if takes_value[opt] and "=" not in a and i + 1 < len(argv):
                i += 1
                mine.append(argv[i])
        elif script_seen:
            theirs.append(a)
        else:
            mine.append(a)
            script_seen = not a.startswith("-")
        i += 1
    return mine, theirs


def parse(argv: list[str]) -> argparse.Namespace:
    p = build_parser()
    if argv and argv[0] in SCRIPT_COMMANDS:
        sub = p._subparsers._group_actions[0].choices[argv[0]]
        mine, theirs = _split_script_args(sub, argv[1:])
        a = p.parse_args([argv[0], *mine])
        a.script_args = theirs
        return a
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if not argv:
            build_parser().print_help()
            return 0
        a = parse(argv)
        return a.fn(a) or 0
    except CLIError as e:
        print(f"ember: error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `ember kernels x.py --stage asm | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
