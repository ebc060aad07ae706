"""Build of dspark_ext: one extension module, dspark_ext._C.

The CUDA kernels are compiled whenever torch is a CUDA build and a CUDA toolkit is found
(CUDA_HOME, defaulting to /usr/local/cuda when it exists); otherwise, or with
DSPARK_FORCE_CPU=1, a CPU-only extension is built. Environment knobs:

  DSPARK_FORCE_CPU=1          build without CUDA even when a toolkit is present
  TORCH_CUDA_ARCH_LIST        CUDA architectures (default "8.0;9.0")
  DSPARK_CPU_ARCH_FLAGS       instruction-set flags for the CPU kernels (default: AVX-512 or
                              AVX2+FMA+F16C when the building CPU has them, else none; set
                              it, e.g. to "", when building a wheel for other machines)
  MAX_JOBS                    parallel compile jobs (ninja)

Install into an existing environment that already has torch (how serving stacks do it):
    pip install --no-build-isolation .
"""
import glob
import os
import sys

from setuptools import find_packages, setup

VERSION = "0.1.0"
ROOT = os.path.dirname(os.path.abspath(__file__))


def _cpu_arch_flags():
    if "DSPARK_CPU_ARCH_FLAGS" in os.environ:
        return os.environ["DSPARK_CPU_ARCH_FLAGS"].split()
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        return []
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma", "f16c"} <= flags:
        # 512-bit vectors: the row passes are ALU-bound (exp, log, Philox), so width pays.
        return ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma",
                "-mf16c", "-mprefer-vector-width=512"]
    if {"avx2", "fma", "f16c"} <= flags:
        return ["-mavx2", "-mfma", "-mf16c"]
    return []


def _cuda_home():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if not home and os.path.exists("/usr/local/cuda/bin/nvcc"):
        home = "/usr/local/cuda"
    if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
        # torch.utils.cpp_extension reads CUDA_HOME at import: set it before importing.
        os.environ["CUDA_HOME"] = home
        return home
    return None


def _pip_cuda_include_dirs():
    """Headers of the pip CUDA runtime packages (nvidia/cu13/include etc.): a minimal toolkit
    lacks some headers that ATen/cuda/CUDAContext.h pulls in."""
    dirs = []
    for base in sys.path:
        for pattern in ("nvidia/cu*/include", "nvidia/cuda_runtime/include"):
            dirs.extend(sorted(glob.glob(os.path.join(base, pattern))))
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


def _extensions():
    cuda_home = None if os.environ.get("DSPARK_FORCE_CPU") == "1" else _cuda_home()
    import torch
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    with_cuda = cuda_home is not None and torch.version.cuda is not None
    cpu_flags = _cpu_arch_flags()
    arch_list = ""
    sources = sorted(glob.glob("csrc/*.cpp")) + sorted(glob.glob("csrc/cpu/*.cpp"))
    define_macros = [
        ("DSPARK_VERSION", f'"{VERSION}"'),
        ("DSPARK_CPU_FLAGS", '"' + " ".join(cpu_flags) + '"'),
    ]
    # -ffp-contract=off / --fmad=false: no compiler-chosen FMA contraction, so the shared
    # per-element math (csrc/core/fastmath.h) rounds the same on CPU and GPU.
    # -fno-math-errno / -fno-trapping-math change no result; they only let GCC vectorise the
    # branch-free selects and fmaf calls of the row passes.
    # -fopenmp: at::parallel_for only runs threads when the extension itself is built with
    # OpenMP (torch's CPU build uses it); it also enables the `omp simd` loops.
    cxx = ["-O3", "-fopenmp", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math",
           "-fvisibility=hidden"] + cpu_flags
    extra = {"cxx": cxx}
    include_dirs = [os.path.join(ROOT, "csrc")]
    if with_cuda:
        arch_list = os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        define_macros += [("DSPARK_WITH_CUDA", None),
                          ("DSPARK_CUDA_ARCH_LIST", f'"{arch_list}"')]
        extra["nvcc"] = ["-O3", "--fmad=false", "-lineinfo",
                         "--expt-relaxed-constexpr", "-Xcompiler", "-ffp-contract=off"]
        include_dirs += _pip_cuda_include_dirs()
        ext_cls = CUDAExtension
    else:
        ext_cls = CppExtension
    print(f"dspark_ext: building {'CUDA' if with_cuda else 'CPU-only'} extension"
          f" (arch list '{arch_list}', CPU flags {cpu_flags})", flush=True)
    return [ext_cls("dspark_ext._C", sources, include_dirs=include_dirs,
                    define_macros=define_macros, extra_compile_args=extra,
                    extra_link_args=["-fopenmp"])]


def _cmdclass():
    from torch.utils.cpp_extension import BuildExtension
    return {"build_ext": BuildExtension.with_options(use_ninja=True)}


setup(
    name="dspark_ext",
    version=VERSION,
    description="Fast, lossless speculative decoding (DSpark) for any torch model: "
                "verification, rejection sampling, block verification and Markov-head "
                "drafting kernels, drafters, a batched decoder and Hugging Face integration",
    packages=find_packages(include=["dspark_ext", "dspark_ext.*"]),
    # The bundled default models (dspark_ext.default_pair()) are installed with the package.
    package_data={"dspark_ext.bundled": ["models/*.txt", "models/*.json", "models/*.jsonl",
                                         "models/*/*.json", "models/*/*.safetensors"]},
    ext_modules=_extensions(),
    cmdclass=_cmdclass(),
    python_requires=">=3.10",
    install_requires=["torch>=2.6", "numpy"],
    # Optional: Hugging Face targets, DSpark checkpoints and plots (the core ops need none).
    extras_require={"hf": ["transformers>=5.17", "safetensors"], "plot": ["matplotlib"]},
    entry_points={
        "console_scripts": ["dspark-train = dspark_ext.train.__main__:main",
                            "dspark-eval = dspark_ext.eval.__main__:main"],
        # vLLM loads this in every process (DSPARK_VLLM_PLUGIN=0 turns it off): its v1
        # rejection sampler then runs on dspark's ops (dspark_ext/integrations/vllm, under its
        # public path dspark_ext.vllm_plugin; README "inside vLLM").
        "vllm.general_plugins": ["dspark_ext = dspark_ext.vllm_plugin:register"],
    },
    zip_safe=False,
)
