"""Builds and runs the C++ unit tests of the header-only core (tests/cpp/test_core.cpp,
test_lanes.cpp) with CMake under AddressSanitizer + UndefinedBehaviorSanitizer: once for the
build machine's instruction set and once for AVX2 (the SIMD passes' other backend)."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_core_unit_tests_under_sanitizers(tmp_path):
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.fail("cmake is required for the C++ unit tests (pip install cmake)")
    build = tmp_path / "cmake"
    env = dict(os.environ)
    # The sanitised test binary must not inherit a preloaded runtime from the environment.
    env.pop("LD_PRELOAD", None)
    subprocess.run([cmake, "-S", ROOT, "-B", str(build), "-DDSPARK_SANITIZE=ON",
                    f"-DPython3_EXECUTABLE={sys.executable}"],
                   check=True, capture_output=True, text=True, env=env)
    for target in ("dspark_core_tests", "dspark_core_tests_avx2"):
        subprocess.run([cmake, "--build", str(build), "--target", target],
                       check=True, capture_output=True, text=True, env=env)
        run = subprocess.run([str(build / target)], capture_output=True, text=True, env=env)
        assert run.returncode == 0, target + ": " + run.stdout + run.stderr
        assert "all checks passed" in run.stdout, target + ": " + run.stdout
    # The AVX2 binary exercises the AVX2 backend of the SIMD passes.
    assert "AVX2 lanes checked" in run.stdout, run.stdout


@pytest.mark.slow
def test_cmake_builds_the_cpu_extension(tmp_path):
    """CMakeLists.txt's extension target (for C++ developers) builds and its ops run."""
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.fail("cmake is required (pip install cmake)")
    build = tmp_path / "ext"
    subprocess.run([cmake, "-S", ROOT, "-B", str(build), "-DDSPARK_BUILD_EXTENSION=ON",
                    "-DCMAKE_BUILD_TYPE=Release", f"-DPython3_EXECUTABLE={sys.executable}"],
                   check=True, capture_output=True, text=True)
    subprocess.run([cmake, "--build", str(build), "--target", "_C", "-j2"], check=True,
                   capture_output=True, text=True)
    assert (build / "compile_commands.json").exists()
    pkg = tmp_path / "pkg" / "dspark_ext"
    shutil.copytree(os.path.join(ROOT, "dspark_ext"), pkg,
                    ignore=shutil.ignore_patterns("_C*.so", "__pycache__"))
    for so in build.glob("_C*.so"):
        shutil.copy(so, pkg)
    code = ("import torch, dspark_ext; "
            "r = dspark_ext.verify_greedy(torch.eye(3)[None], torch.tensor([[0, 1]])); "
            "assert r.accepted.tolist() == [2], r; print('ok')")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "pkg",
                         capture_output=True, text=True)
    assert run.returncode == 0 and "ok" in run.stdout, run.stdout + run.stderr
