"""Engine level on a GPU (bench/gpu_check.sh runs it where a CUDA build of vLLM and of
dspark_ext are present; skipped elsewhere): the plugin with vLLM's V1 model runner on CUDA,
and what it does under the V2 model runner (MRV2, vLLM's default on GPUs): nothing, vLLM's
own MRV2 sampler verifies.

dspark_ext may be importable here without being installed (an in-place build on PYTHONPATH),
so the driver calls the plugin's register() itself instead of relying on the entry point.
"""
import pytest

from engines import (assert_dspark_verified, build_models, greedy_jobs,
                     later_tokens_pvalue, run_engine, sampled_jobs)
from laws import target_law
from stats import ALPHA

pytestmark = pytest.mark.cuda
V1 = {"VLLM_USE_V2_MODEL_RUNNER": "0"}
GPU = {"llm": {"gpu_memory_utilization": 0.3}, "register": True}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_models(tmp_path_factory)


@pytest.fixture(scope="module")
def reference(models, tmp_path_factory):
    return run_engine(tmp_path_factory, models[0]["random"], False, True, greedy_jobs(),
                      env=V1, **GPU)


def test_v1_runner_greedy_with_plugin(models, reference, tmp_path_factory):
    result = run_engine(tmp_path_factory, models[0]["random"], True, True, greedy_jobs(),
                        env=V1, **GPU)
    assert_dspark_verified(result)
    assert result["jobs"]["greedy"] == reference["jobs"]["greedy"]


def test_v1_runner_sampling_with_plugin_is_lossless(models, tmp_path_factory):
    result = run_engine(tmp_path_factory, models[0]["iid"], True, True, sampled_jobs(["plain"]),
                        env=V1, **GPU)
    assert_dspark_verified(result)
    assert later_tokens_pvalue(result["jobs"]["plain"], target_law(models[1])) > ALPHA
    assert result["jobs"]["repro"][::-1] == result["jobs"]["plain"][: len(result["jobs"]["repro"])]


def test_model_runner_v2_keeps_its_own_sampler(models, reference, tmp_path_factory):
    """Under MRV2 the plugin replaces nothing: the V2 runner's rejection sampler
    (vllm/v1/worker/gpu/spec_decode/rejection_sampler.py) verifies."""
    result = run_engine(tmp_path_factory, models[0]["random"], True, True, greedy_jobs(),
                        env={"VLLM_USE_V2_MODEL_RUNNER": "1"}, **GPU)
    assert result["sampler"]["module"] == "vllm.v1.worker.gpu.spec_decode.rejection_sampler"
    assert result["jobs"]["greedy"] == reference["jobs"]["greedy"]
