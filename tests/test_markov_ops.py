"""markov_sample is a proper torch op: opcheck (schema, fake kernel, dispatch) and
torch.compile(fullgraph=True) (design §9)."""
import pytest
import torch

import dspark_ext
from markov_cases import make_case, op_args

OPCHECK_CASES = {
    "vanilla": lambda: op_args(make_case("vanilla", 3, 4, 37, 8, conf=None)),
    "vanilla_conf_bf16": lambda: op_args(make_case("vanilla", 3, 4, 37, 8, dtype=torch.bfloat16)),
    "gated_bf16_weights": lambda: op_args(make_case("gated", 2, 3, 33, 8,
                                                    wdtype=torch.bfloat16)),
    "rnn_fp16": lambda: op_args(make_case("rnn", 2, 3, 29, 4, dtype=torch.float16)),
    "teacher": lambda: op_args(make_case("rnn", 2, 3, 29, 4),
                               torch.tensor([[1, 2, 3], [4, 5, 6]])),
}


@pytest.mark.parametrize("case", sorted(OPCHECK_CASES))
def test_opcheck(case):
    torch.library.opcheck(torch.ops.dspark.markov_sample.default, OPCHECK_CASES[case]())


def test_compile_fullgraph_matches_eager():
    c = make_case("gated", 3, 4, 37, 8)

    def draft(base, anchor, w1, w2, hidden, gw, gb, cw, cb, temp, seed, offset):
        out = dspark_ext.markov_sample(base, anchor, w1, w2, temp, seed, offset, head="gated",
                                       hidden=hidden, gate_weight=gw, gate_bias=gb,
                                       conf_weight=cw, conf_bias=cb)
        # post-processing in the same graph, as an engine would do it
        return out.draft_tokens + 0, out.draft_logits * 1, torch.sigmoid(out.confidence_logits)

    args = (c["base_logits"], c["anchor_tokens"], c["w1"], c["w2"], c["hidden"],
            c["head_weight"], c["head_bias"], c["conf_weight"], c["conf_bias"],
            c["temperature"], c["seed"], c["offset"])
    got = torch.compile(draft, fullgraph=True)(*args)
    want = draft(*args)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    torch.testing.assert_close(got[2], want[2])  # inductor's sigmoid may round differently
