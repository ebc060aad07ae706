"""The vLLM stage's tests: they run inside the vLLM environment (scripts/setup_vllm_env.sh,
then `build/vllm-venv/bin/python -m pytest tests/vllm_stage` from outside the source tree, as
scripts/test.sh does). Anywhere vllm is not importable, e.g. the main suite's torch-2.14
environment, nothing here is collected. (The folder is not named ``vllm``: on sys.path, a
``tests/vllm`` folder would pass for a namespace package ``vllm`` where vLLM is absent.)"""
import importlib.util

if importlib.util.find_spec("vllm") is None:
    collect_ignore_glob = ["*.py"]
else:
    import pytest

    @pytest.fixture(scope="session", autouse=True)
    def cpu_kernel_overrides():
        """What a vLLM worker does at start-up (worker_base.py): on CPU, vLLM's Triton kernels
        (the rejection sampler's included) are replaced by its C++ ones."""
        from vllm.platforms import current_platform

        current_platform.register_triton_kernel_overrides()
