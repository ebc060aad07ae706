"""The drafter's decode step under torch.compile (issue 17, item 8): the layers' forward has no
data-dependent Python control flow (host values are read once per round, outside it, by the
cache's plan), so it compiles with dynamic shapes, and decoding gives the same tokens as eager.
On a CPU it is not faster (bench/RESULTS.md: the round is GEMM-bound); the point is that a GPU
session can capture the same code."""
import pytest
import torch

from dspark_ext import FixedLength, SpeculativeDecoder

from dspark_cases_decoder import make_dspark_for
from test_decoder_greedy import NEW, VOCAB, prompts
from tiny_models import tiny_hf


@pytest.mark.slow
def test_compiled_layers_give_eager_tokens():
    hf_target = tiny_hf("qwen3", vocab=VOCAB, layers=3, seed=1)
    hf_target.generation_config.eos_token_id = None
    d = make_dspark_for(hf_target, block_size=5, seed=4)
    dec = SpeculativeDecoder(hf_target, d, gamma=4)
    ids, mask = prompts(3, seed=5)
    temps = torch.tensor([0.0, 0.9, 0.0])

    def run():
        return dec.generate(ids, attention_mask=mask, max_new_tokens=NEW, temperature=temps,
                            seed=11,
                            method="token", length_policy=FixedLength(4))

    eager = run()
    torch._dynamo.reset()
    for layer in d.layers:
        layer.decode = torch.compile(layer.decode, dynamic=True, fullgraph=True)
    try:
        compiled = run()
    finally:
        for layer in d.layers:
            del layer.decode  # back to the class's method
        torch._dynamo.reset()
    assert compiled.new_tokens == eager.new_tokens
