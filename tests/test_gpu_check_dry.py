"""bench/gpu_check.sh on CPU: its dry run (GPU_CHECK_DRY=1, every CUDA step replaced by a
stand-in under the same capped timeout) writes the table, holds the deadline and leaves at
most 8 files in $OUT (what the device tool returns); a killed run leaves a partial table; the
skip-build path checks the carried extension and stops early without a GPU. Nothing is built."""
import os
import re
import signal
import subprocess
import sys
import tarfile
import time

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "bench", "gpu_check.sh")
STEPS = ["build", "enabled", "pytest", "memcheck", "timing", "bench_verify", "racecheck", "ncu",
         "bench_markov", "bench_schedule", "vllm"]
NAME_OK = re.compile(r"^[A-Za-z0-9._-]+$")  # names the device tool returns


def _env(tmp_path, **extra):
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path / "out"),
               GPU_CHECK_WORK=str(tmp_path / "work"), GPU_CHECK_DRY="1")
    env.pop("GPU_CHECK_STEPS", None)
    env.pop("GPU_CHECK_SKIP_BUILD", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _run(tmp_path, timeout=90, **extra):
    t0 = time.monotonic()
    p = subprocess.run(["bash", SCRIPT], env=_env(tmp_path, **extra), capture_output=True,
                       text=True, timeout=timeout)
    return p, time.monotonic() - t0


def _rows(md):
    """{step key: (result, seconds, details)} from gpu_check.md's table."""
    rows = {}
    for line in md.splitlines():
        m = re.match(r"^\| (\d+) \| (\w+): .*? \| (.*?) \| (\d*) \| (.*) \|$", line)
        if m:
            rows[m.group(2)] = (m.group(3), m.group(4), m.group(5))
    return rows


def _check_out(tmp_path):
    out = tmp_path / "out"
    files = [p for p in out.rglob("*") if p.is_file()]
    assert 0 < len(files) <= 8, files
    assert {p.name for p in files} == {"gpu_check.md", "gpu_check.tar.gz"}, files
    assert all(NAME_OK.match(p.name) for p in files)
    md = (out / "gpu_check.md").read_text()
    with tarfile.open(out / "gpu_check.tar.gz") as tar:
        names = tar.getnames()
    return md, names


def test_dry_run_writes_the_table_and_one_archive(tmp_path):
    p, _ = _run(tmp_path, GPU_CHECK_DEADLINE_S=120)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    md, names = _check_out(tmp_path)
    assert md.startswith("# gpu_check: complete")
    rows = _rows(md)
    assert list(rows) == STEPS
    assert all(r[0] == "dry run" for r in rows.values()), rows
    for key in STEPS + ["machine"]:
        assert f"gpu_check/logs/{key}.log" in names, names
    assert "gpu_check/gpu_check.md" in names
    logs = tmp_path / "work" / "gpu_check" / "logs"
    pytest_cmd = (logs / "pytest.log").read_text()
    assert "-m cuda" in pytest_cmd and "DSPARK_TEST_TIMEOUT_S=" in pytest_cmd
    assert "tests/test_cuda_verify.py" in pytest_cmd
    assert "--tool memcheck" in (logs / "memcheck.log").read_text()
    assert "setup.py build_ext --inplace" in (logs / "build.log").read_text()


def test_dry_run_holds_the_deadline(tmp_path):
    deadline, step_s = 10, 3
    p, wall = _run(tmp_path, GPU_CHECK_DEADLINE_S=deadline, GPU_CHECK_RESERVE_S=1,
                   GPU_CHECK_DRY_STEP_S=step_s)
    md, names = _check_out(tmp_path)
    rows = _rows(md)
    assert list(rows) == STEPS
    assert wall <= deadline + 3, (wall, md)
    results = [rows[k][0] for k in STEPS]
    assert "skipped (deadline)" in results, md
    first = results.index("skipped (deadline)")
    # Once a step no longer fits, none after it starts; the later ones say why.
    assert all(r == "skipped (deadline)" for r in results[first:]), results
    assert all(r in ("dry run", "TIMEOUT") for r in results[:first]), results
    # Every step that ran had its timeout capped at the time left before the deadline.
    for key in STEPS[:first]:
        log = (tmp_path / "work" / "gpu_check" / "logs" / f"{key}.log").read_text()
        m = re.search(r"started at (\d+)s, timeout (\d+)s", log)
        assert m and int(m.group(1)) + int(m.group(2)) <= deadline, (key, log)
    assert md.startswith("# gpu_check: complete")


def test_killed_run_still_leaves_a_partial_table(tmp_path):
    proc = subprocess.Popen(["bash", SCRIPT], env=_env(tmp_path, GPU_CHECK_DRY_STEP_S=60),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    md_path = tmp_path / "out" / "gpu_check.md"
    try:
        t_end = time.monotonic() + 60
        while time.monotonic() < t_end:
            if md_path.exists() and "| running |" in md_path.read_text():
                break
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # as the device tool ends a command at its limit
        proc.wait(timeout=30)
    md, names = _check_out(tmp_path)
    assert md.startswith("# gpu_check: partial")
    rows = _rows(md)
    assert rows["build"][0] == "running" and rows["vllm"][0] == "pending", rows
    assert "gpu_check/logs/machine.log" in names


@pytest.mark.skipif(torch.cuda.is_available(), reason="would run the real CUDA steps")
def test_skip_build_without_a_gpu_stops_after_two_rows(tmp_path):
    """Not a dry run: the carried-extension check and the device check run for real (no
    build); without a GPU every later step is skipped at once and the run fails."""
    p, wall = _run(tmp_path, GPU_CHECK_DRY=0, GPU_CHECK_SKIP_BUILD=1, GPU_CHECK_DEADLINE_S=120)
    md, names = _check_out(tmp_path)
    rows = _rows(md)
    assert p.returncode != 0
    # The repository's in-place build (not necessarily the dspark_ext imported here): a CUDA
    # build is reused and its stripped copy archived; a CPU-only or missing one fails row 1.
    if rows["build"][0] == "ok (reused)":
        assert any(n.startswith("gpu_check/so/_C") for n in names), names
    else:
        assert rows["build"][0].startswith("FAILED"), rows["build"]
        assert re.search(r"without the CUDA kernels|no dspark_ext/_C|Error", rows["build"][2])
    assert rows["enabled"][0].startswith("FAILED"), rows["enabled"]
    assert all(rows[k][0] == "skipped" for k in STEPS[2:]), rows
    assert md.startswith("# gpu_check: complete") and wall < 90
