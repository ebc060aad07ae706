"""bench/bench_vllm.py's sampler part runs (small shapes) and its two samplers agree on
greedy inputs."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
import bench_vllm  # noqa: E402


@pytest.mark.parametrize("mode", ["greedy", "random", "ngram"])
def test_sampler_case_runs(mode):
    case = bench_vllm.sampler_case(4, 3, 1000, mode, torch.device("cpu"))
    assert case["dspark_ms"] > 0 and case["vllm_fixed_ms"] > 0 and case["speedup"] > 0


def test_fixed_expand_matches_vllm_semantics():
    out = bench_vllm.fixed_expand(torch.tensor([0.0, 0.5, 2.0]), torch.tensor([2, 2, 5]), 5,
                                  replace_from=0, replace_to=1)
    assert out.tolist() == [1.0, 1.0, 2.0, 2.0, 2.0]
