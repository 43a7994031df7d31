"""Run the benchmark suite and print (and optionally record) one table.

    .venv/bin/python -m benchmarks.run                      # everything, full sizes
    .venv/bin/python -m benchmarks.run --only gelu --quick  # small sizes, a smoke test of the harness
    .venv/bin/python -m benchmarks.run --write              # also add a section to benchmarks/RESULTS.md

Every framework runs in this one process on the same inputs. The `copy` benchmark always runs: its
best bandwidth is the reference that the other rows' "% copy" column and the bandwidth targets use.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shlex
import statistics
import sys
import traceback
from dataclasses import dataclass

import numpy as np

from .harness import (FRAMEWORKS, Bench, Framework, Timing, applies, cpu_count, load_average, machine_facts,
                      measure)

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
MARKER = "<!-- results sections go below this line, newest first -->"
REFERENCE = "copy"
EMBER = "ember"


@dataclass
class Row:
    bench: Bench
    size: object
    framework: str
    label: str = ""  # size and dtype, for the table
    timing: Timing | None = None
    error: str = ""
    check: str = ""
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.timing is not None

    def gbps(self) -> float:
        return self.bench.bytes(self.size) / self.timing.median_s / 1e9

    def gflops(self) -> float:
        return self.bench.flops(self.size) / self.timing.median_s / 1e9


# ---- running ------------------------------------------------------------------------------------

def run_one(bench: Bench, size, fw: Framework, inputs: dict, ref: np.ndarray, warmup: int, repeat: int) -> Row:
    """Time one framework on one benchmark; any failure becomes the row's error, never the run's."""
    row = Row(bench, size, fw.name)
    try:
        if bench.notes.get(fw.name):
            row.note = bench.notes[fw.name]()
        fn = fw.wrap(bench.impls[fw.impl])
        args = {k: fw.convert(v) for k, v in inputs.items()}
        row.timing = measure(fn, args, fw.sync, warmup, repeat)
        row.check = check(fw.to_numpy(row.timing.out), ref, bench)
        row.timing.out = None  # free it before the next framework runs
    except Exception as e:  # noqa: BLE001 -- one framework's failure must not stop the table
        row.error = f"{type(e).__name__}: {e}".splitlines()[0]
        print(f"  {bench.name} / {fw.name} failed:\n" + traceback.format_exc(limit=-3), file=sys.stderr)
    return row


def check(out: np.ndarray, ref: np.ndarray, bench: Bench) -> str:
    out = np.asarray(out)
    if out.shape != ref.shape:
        return f"shape {list(out.shape)} != {list(ref.shape)}"
    if np.allclose(out, ref, rtol=bench.rtol, atol=bench.atol):
        return "ok"
    err = np.nanmax(np.abs(out.astype(np.float64) - ref)) if out.size else 0.0
    return f"MISMATCH (max abs err {err:.3g})"


def run_bench(bench: Bench, frameworks: list[Framework], quick: bool, warmup: int, repeat: int) -> list[Row]:
    size = bench.sizes["quick" if quick else "full"]
    inputs = bench.inputs(size)
    label = f"{fmt_size(size)} {next(iter(inputs.values())).dtype}"
    # the reference runs on copies: an impl may write into an input (copy's dst)
    ref = np.asarray(bench.impls["numpy"](**{k: v.copy() for k, v in inputs.items()}))
    rows = []
    for fw in frameworks:
        if not applies(fw, bench):
            continue
        print(f"{bench.name} / {fw.name} ...", file=sys.stderr, flush=True)
        row = run_one(bench, size, fw, inputs, ref, warmup, repeat)
        row.label = label
        if row.ok:
            print(f"  median {fmt_time(row.timing.median_s)}, first call {fmt_time(row.timing.first_s)}, "
                  f"check {row.check}", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


# ---- reporting ----------------------------------------------------------------------------------

def fmt_time(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def fmt_size(size) -> str:
    if isinstance(size, int):
        return f"2^{size.bit_length() - 1}" if size & (size - 1) == 0 else str(size)
    return "x".join(str(n) for n in size)


def noise(t: Timing) -> str:
    """Flags a measurement whose middle half spreads over more than 10% of the median."""
    q1, _, q3 = statistics.quantiles(t.times_s, n=4) if len(t.times_s) > 1 else (0, 0, 0)
    return f"noisy (IQR {(q3 - q1) / t.median_s:.0%})" if q3 - q1 > 0.1 * t.median_s else ""


def copy_bandwidth(rows: list[Row]) -> float | None:
    bws = [r.gbps() for r in rows if r.bench.name == REFERENCE and r.ok]
    return max(bws, default=None)


def _ember_row(rows: list[Row], bench: Bench) -> Row | None:
    return next((r for r in rows if r.bench is bench and r.framework == EMBER and r.ok), None)


def table(rows: list[Row], copy_bw: float | None) -> str:
    head = ["benchmark", "size", "framework", "median", "throughput", "% copy BW",
            "ember speedup", "first call", "check / notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.bench.name, r.label, r.framework]
        if not r.ok:
            cells += ["—"] * 5 + [("ERROR: " + r.error)[:160]]
        else:
            memory = r.bench.bound == "memory"
            thr = f"{r.gbps():.1f} GB/s" if memory else f"{r.gflops():.1f} GFLOP/s"
            frac = f"{r.gbps() / copy_bw:.0%}" if memory and copy_bw else ""
            ember = _ember_row(rows, r.bench)
            speed = f"{r.timing.median_s / ember.timing.median_s:.2f}x" if ember and r is not ember else ""
            notes = ", ".join(x for x in (r.check, r.error, r.note, noise(r.timing)) if x)
            cells += [fmt_time(r.timing.median_s), thr, frac, speed, fmt_time(r.timing.first_s), notes]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def targets(rows: list[Row], copy_bw: float | None) -> list[str]:
    out = []
    for bench in dict.fromkeys(r.bench for r in rows):
        ember = _ember_row(rows, bench)
        for t in bench.targets:
            if t.kind in ("speedup", "fastest"):
                peers = [r for r in rows if r.bench is bench and r.ok and r is not ember
                         and (r.framework == t.peer if t.kind == "speedup" else r.framework != EMBER)]
                peer = min(peers, key=lambda r: r.timing.median_s, default=None)
                value = peer.timing.median_s / ember.timing.median_s if ember and peer else None
                shown = (f"{value:.2f}x" + (f" (fastest peer: {peer.framework})" if t.kind == "fastest" else "")
                         if value is not None else "")
            else:
                value = ember.gbps() / copy_bw if ember and copy_bw else None
                shown = f"{value:.0%} ({ember.gbps():.1f} of {copy_bw:.1f} GB/s)" if value is not None else ""
            if value is None:
                verdict = "n/a (no ember or peer result)"
            elif ember.check != "ok":
                verdict = f"{shown} FAIL (ember result check: {ember.check})"
            else:
                verdict = f"{shown} {'PASS' if value >= t.threshold else 'FAIL'}"
            out.append(f"- {bench.name}: {t.describe()}: {verdict}")
    return out


def command_line(argv: list[str]) -> str:
    exe = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else "python"
    env = [f"{k}={shlex.quote(v)}" for k, v in sorted(os.environ.items()) if k.startswith("EMBER_")]
    return " ".join(env + [exe, "-m", "benchmarks.run"] + [shlex.quote(a) for a in argv])


def section(facts: dict, command: str, tbl: str, tgts: list[str]) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    f = facts
    return "\n".join([
        f"## {now} — {f['cpu']}, {f['cores']} cores",
        "",
        f"- Machine: {f['cpu']} ({f['isa']}), {f['cores']} cores, {f['memory']} RAM; torch threads "
        f"{f['torch_threads']}; load average at start {f['load']}",
        f"- Versions: python {f['python']}, torch {f['torch']}, numpy {f['numpy']}, llvmlite {f['llvmlite']}, "
        f"ember {f['ember']} (commit {f['commit']}, backend {f['backend']})",
        f"- Command: `{command}`",
        "",
        tbl,
        *(["", "Targets:", ""] + tgts if tgts else []),
        "",
    ])


HEADER = f"""# Benchmark results

Each section below is one run of `python -m benchmarks.run --write` or of
`python -m benchmarks.training --write` (training steps; see benchmarks/README.md): the machine,
library versions, the exact command, and the table it printed. Times are medians after warm-up;
"first call" includes torch.compile's compile and ember's JIT compile, which the median excludes.
"ember speedup" is (that framework's time) / (ember's time). GB/s counts the minimum bytes the
operation must move; "% copy BW" compares it with the same run's best memory-copy bandwidth.
Only full-size runs of the compiled backend are recorded here (the tool refuses --quick and
EMBER_BACKEND=interpret with --write), so numbers in different sections are comparable when the
machine line matches.

{MARKER}
"""


def write_results(text: str) -> None:
    old = open(RESULTS).read() if os.path.exists(RESULTS) else ""
    if MARKER not in old:
        old = HEADER
    head, _, rest = old.partition(MARKER)
    with open(RESULTS, "w") as f:
        f.write(head + MARKER + "\n\n" + text + ("\n" + rest.lstrip("\n") if rest.strip() else ""))


# ---- command line -------------------------------------------------------------------------------

def parse(argv: list[str], names: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", choices=names, metavar="NAME",
                   help=f"benchmarks to run ({', '.join(names)}); '{REFERENCE}' always runs")
    p.add_argument("--quick", action="store_true", help="small sizes: a fast smoke test of the harness")
    p.add_argument("--repeat", type=int, help="timed calls per measurement (default 15, quick 5)")
    p.add_argument("--warmup", type=int, help="untimed calls after the first (default 2, quick 1)")
    p.add_argument("--frameworks", nargs="+", choices=[f.name for f in FRAMEWORKS], metavar="FW",
                   default=[f.name for f in FRAMEWORKS],
                   help="columns to run (default all: " + ", ".join(f.name for f in FRAMEWORKS) + ")")
    p.add_argument("--write", action="store_true", help="add this run's section to benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    if args.write and (args.quick or os.environ.get("EMBER_BACKEND") == "interpret"):
        p.error("--write records only full-size runs of the compiled backend (no --quick, no EMBER_BACKEND=interpret)")
    if args.repeat is None:
        args.repeat = 5 if args.quick else 15
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    import torch
    from .suite import BENCHMARKS
    args = parse(argv, [b.name for b in BENCHMARKS])
    load = load_average()  # before we add load ourselves: other processes skew every column
    if float(load.split()[0]) > 0.5:
        print(f"warning: the machine is busy (load average {load}); timings will be unreliable", flush=True)
    threads = cpu_count()
    torch.set_num_threads(threads)
    print(f"torch threads: {torch.get_num_threads()} (cores: {threads}); "
          f"ember backend: {os.environ.get('EMBER_BACKEND', 'compiled')}; load average {load}", flush=True)

    wanted = set(args.only or [b.name for b in BENCHMARKS])
    frameworks = [f for f in FRAMEWORKS if f.name in args.frameworks]
    rows = []
    for bench in BENCHMARKS:
        if bench.name == REFERENCE:  # the reference line runs whatever columns were chosen
            rows += run_bench(bench, list(FRAMEWORKS), args.quick, args.warmup, args.repeat)
        elif bench.name in wanted:
            rows += run_bench(bench, frameworks, args.quick, args.warmup, args.repeat)

    copy_bw = copy_bandwidth(rows)
    tbl, tgts = table(rows, copy_bw), targets(rows, copy_bw)
    print()
    print(tbl)
    if tgts:
        print("\nTargets:\n" + "\n".join(tgts))
    if args.write:
        write_results(section(machine_facts(torch.get_num_threads(), load), command_line(argv), tbl, tgts))
        print(f"\nwrote a results section to {os.path.relpath(RESULTS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
