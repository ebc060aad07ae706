"""The shared harness of the op benchmarks in bench/: how a run picks its device, times a
call, measures the machine's copy bandwidth, describes the machine, prints its goals and
writes its results. bench_verify.py, bench_markov.py and bench_schedule.py use it; a new
benchmark of an op should too, so that every number is measured the same way (bench/README.md,
"Copy bandwidth" and "Timing").

* :func:`pick_device` -- the benchmark device (CUDA when present and built in) and threads;
* :func:`machine_info`, :func:`loadavg`, :func:`mem_available` -- what the run ran on;
* :class:`Budget`, :func:`time_fn`, :func:`sync` -- repetitions, and the median time of a call;
* :class:`CopyBandwidth` -- ``dst.copy_(src)`` bandwidth per buffer size (STREAM's best repeat);
* :func:`print_targets` -- the PASS / FAIL / NOT MEASURED lines of a run's targets;
* :func:`write_json` -- a run's results file;
* :func:`plot_bandwidth` -- achieved GB/s per case next to the copy bandwidth (PNG with
  matplotlib, else SVG, both through :mod:`dspark_ext.plotting`).

It expects dspark_ext to be importable (the scripts put the repository root on ``sys.path``
before importing it).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch

import dspark_ext
from dspark_ext.plotting import Svg, pyplot

GIB = 1 << 30

# --------------------------------------------------------------------------------------------
# Prompts for HF generate (the decoding benchmarks' peer baseline)
# --------------------------------------------------------------------------------------------


def left_pad(batch: List[List[int]], pad: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> left-padded ids [B, L] and the attention mask HF ``generate`` takes."""
    width = max(len(r) for r in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.int64)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(batch):
        ids[i, width - len(r):] = torch.tensor(r)
        mask[i, width - len(r):] = 1
    return ids, mask


def cut_eos(row: List[int], eos) -> List[int]:
    """``row`` up to and including its first token in ``eos`` (an id or ids)."""
    ids = {eos} if isinstance(eos, int) else set(eos or ())
    for i, tok in enumerate(row):
        if tok in ids:
            return row[:i + 1]
    return row


# --------------------------------------------------------------------------------------------
# Device and machine
# --------------------------------------------------------------------------------------------


def pick_device(requested: Optional[str], threads: Optional[int]) -> torch.device:
    """The benchmark device (CUDA when present and compiled in, unless asked otherwise) and
    the CPU thread count (``torch.set_num_threads`` when ``threads`` is given)."""
    if threads:
        torch.set_num_threads(threads)
    if requested is None:
        use_cuda = torch.cuda.is_available() and dspark_ext.build_info()["cuda_enabled"]
        requested = "cuda" if use_cuda else "cpu"
    device = torch.device(requested)
    if device.type == "cuda" and not dspark_ext.build_info()["cuda_enabled"]:
        raise SystemExit("--device cuda: this dspark_ext build has no CUDA kernels")
    return device


def loadavg() -> Optional[List[float]]:
    """The 1, 5 and 15 minute load averages, or None where the OS has none."""
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def mem_available() -> Optional[int]:
    """Available memory in bytes (/proc/meminfo), or None off Linux."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def machine_info(device: torch.device) -> dict:
    """Platform, Python, CPU model and count, memory, torch and its thread count,
    ``dspark_ext.build_info()``, the load average at start, and the GPU on CUDA."""
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "dspark_ext": dspark_ext.build_info(),
        "device": str(device),
        "mem_total_bytes": None,
        "loadavg_start": loadavg(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["mem_total_bytes"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_mem_bytes"] = props.total_memory
        info["cuda"] = torch.version.cuda
    return info


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


@dataclass
class Budget:
    """Repetitions and time budgets (seconds) of one mode."""
    native: Tuple[int, int, float]  # (warm-up, max reps, seconds)
    eager: Tuple[int, int, float]
    ref: Tuple[int, int, float]
    copy: Tuple[int, int, float]
    min_reps: int = 3
    large_copy_bytes: int = GIB


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], object], device: torch.device, warmup: int, max_reps: int,
            budget_s: float, min_reps: int = 3) -> Tuple[float, List[float]]:
    """Median seconds of ``fn`` after ``warmup`` calls; at least ``min_reps`` repeats, then
    more until ``max_reps`` or ``budget_s`` seconds of measured time. CUDA: events around each
    call (synchronised); CPU: perf_counter. Returns (median, every repeat's seconds)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times: List[float] = []
    spent = 0.0
    while len(times) < max(min_reps, 1) or (len(times) < max_reps and spent < budget_s):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            dt = start.elapsed_time(end) / 1e3
        else:
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
    return statistics.median(times), times


class CopyBandwidth:
    """Measured ``dst.copy_(src)`` bandwidth (read + write bytes, best of the repeats, as
    STREAM reports it; the median is kept too), cached by buffer size."""

    def __init__(self, device: torch.device, budget: Budget):
        self.device = device
        self.budget = budget
        self.cache: Dict[int, dict] = {}

    def measure(self, nbytes: int) -> dict:
        nbytes = max(int(nbytes), 4096)
        nbytes -= nbytes % 64
        if nbytes in self.cache:
            return self.cache[nbytes]
        # Filled (not torch.empty): untouched pages would read as the shared zero page.
        src = torch.ones(nbytes, dtype=torch.uint8, device=self.device)
        dst = torch.zeros(nbytes, dtype=torch.uint8, device=self.device)
        w, reps, secs = self.budget.copy
        # CPU: with 1 thread and with torch's thread count, the best one counts (on a loaded
        # machine a 2-thread copy of a small buffer can wait milliseconds for its 2nd thread).
        threads = [None]
        if self.device.type == "cpu":
            threads = sorted({1, torch.get_num_threads()})
        runs = {}
        saved = torch.get_num_threads()
        try:
            for nt in threads:
                if nt is not None:
                    torch.set_num_threads(nt)
                med, times = time_fn(lambda: dst.copy_(src), self.device, w, reps, secs,
                                     self.budget.min_reps)
                runs[str(nt or "default")] = {"median_s": med, "min_s": min(times),
                                              "reps": len(times)}
        finally:
            torch.set_num_threads(saved)
        best = min(runs.values(), key=lambda r: r["min_s"])
        # STREAM convention: the best repeat is the machine's copy bandwidth (conservative for
        # the %copy ratios: a copy slowed by a busy machine cannot inflate them).
        out = {"bytes": nbytes, "median_s": best["median_s"], "min_s": best["min_s"],
               "GBps": 2 * nbytes / best["min_s"] / 1e9,
               "GBps_median": 2 * nbytes / best["median_s"] / 1e9, "by_threads": runs}
        self.cache[nbytes] = out
        return out


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def print_targets(tg: List[dict]) -> None:
    """The ``== targets ==`` section: one line per ``{"target", "value", "need", "pass"}``
    (a ``need`` below 1 is a fraction, shown in %; else a speed-up, shown as Nx)."""
    print("\n== targets ==")
    if not tg:
        print("  (no case of this run is covered by a target)")
    for t in tg:
        if t["value"] is None:
            status, val = "NOT MEASURED", "-"
        else:
            status = "PASS" if t["pass"] else "FAIL"
            val = (f"{100 * t['value']:.0f}%" if t["need"] < 1 else f"{t['value']:.1f}x")
        need = f"{100 * t['need']:.0f}%" if t["need"] < 1 else f"{t['need']:.0f}x"
        print(f"  [{status:>4}] {t['target']}: {val} (need {need})")


def write_json(results: dict, path: str) -> str:
    """Write a run's results (indent 1, as every bench script does); returns ``path``."""
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    return path


def plot_bandwidth(cases: List[dict], large_copy: dict, path_stem: str, title: str) -> str:
    """Bar chart of achieved GB/s per case next to the same-size copy bandwidth, each bar
    labelled with the speedup over the eager baseline, the large-buffer copy bandwidth as a
    dashed line. ``cases`` are results-JSON entries (op, B, K, V, dtype, GBps,
    copy_same_GBps, x_eager). Writes ``path_stem + '.png'`` with matplotlib, else
    ``path_stem + '.svg'``; returns the file written."""
    labels = [f"{c['op']} B{c['B']} K{c['K']} V{c['V'] // 1000}k {c['dtype']}" for c in cases]
    ach = [c["GBps"] for c in cases]
    cp = [c["copy_same_GBps"] for c in cases]
    spd = [("" if c.get("x_eager") is None else f"{c['x_eager']:.1f}x") for c in cases]
    plt = pyplot()
    if plt is None:
        return _bandwidth_svg(labels, ach, cp, spd, large_copy["GBps"], title,
                              path_stem + ".svg")
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(cases) + 3), 5))
    xs = range(len(cases))
    ax.bar([i - 0.2 for i in xs], cp, width=0.4, color="#bbbbbb", label="copy, same size")
    ax.bar([i + 0.2 for i in xs], ach, width=0.4, color="#1f77b4",
           label="dspark_ext op (label: speedup vs eager)")
    for i, (a, t) in enumerate(zip(ach, spd)):
        ax.text(i + 0.2, a, t, ha="center", va="bottom", fontsize=6, rotation=90)
    ax.axhline(large_copy["GBps"], color="#d62728", ls="--", lw=1,
               label=f"copy, {large_copy['bytes'] / GIB:.2g} GiB")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("GB/s (bytes the op must move / median time)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(plt, fig, path_stem, dpi=120)


def save_figure(plt, fig, path_stem: str, dpi: int = 110) -> str:
    """Lay out ``fig``, write it to ``path_stem``.png and close it; returns the path."""
    fig.tight_layout()
    path = path_stem + ".png"
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _bandwidth_svg(labels, ach, cp, spd, large, title, path) -> str:
    n = len(labels)
    bar, gap, left, top, height, bottom = 10, 8, 60, 40, 300, 170
    width = left + n * (2 * bar + gap) + 200
    ymax = max(ach + cp + [large]) * 1.15 or 1.0
    y = lambda v: top + height - v / ymax * height  # noqa: E731
    svg = Svg(width, top + height + bottom)
    svg.text(left, 20, title, size=12)
    for i in range(6):  # y grid
        v = ymax * i / 5
        svg.line(left, y(v), width - 190, y(v), stroke="#eeeeee")
        svg.text(left - 5, y(v) + 3, f"{v:.1f}", anchor="end")
    for i, (lab, a, c, t) in enumerate(zip(labels, ach, cp, spd)):
        x0 = left + gap / 2 + i * (2 * bar + gap)
        svg.rect(x0, y(c), bar, top + height - y(c), fill="#bbbbbb")
        svg.rect(x0 + bar, y(a), bar, top + height - y(a), fill="#1f77b4")
        svg.text(x0 + 1.5 * bar + 3, y(a) - 3, t, size=8, rotate=-90)
        svg.text(x0 + bar, top + height + 8, lab, rotate=60)
    svg.line(left, y(large), width - 190, y(large), stroke="#d62728", dash="4 3")
    svg.line(left, top, left, top + height)
    svg.text(15, top + height / 2, "GB/s", rotate=-90, anchor="middle")
    lx = width - 180
    for j, (col, name) in enumerate((("#bbbbbb", "copy, same size"),
                                     ("#1f77b4", "dspark_ext op (x: vs eager)"),
                                     ("#d62728", "copy, large buffer"))):
        svg.rect(lx, top + 15 * j, 10, 10, fill=col)
        svg.text(lx + 15, top + 15 * j + 9, name)
    return svg.save(path)
