"""Every CUDA op once on small shapes (verification: V = 1, 7, 1029; aligned and misaligned
row views; one-hot drafts; invalid values (bad ragged offsets, out-of-range ids, negative
temperature, num_draft > K) that the kernel must turn into empty rows without stray reads);
int32 indices, inclusive offsets, draft_lse and sparse draft rows; the Markov ops (dense at
r = 64 and 512, top-k).

Run by bench/gpu_check.sh under compute-sanitizer (memcheck; racecheck with --quick); on its
own: python bench/gpu_check_ops.py [--quick] (needs a CUDA device and a CUDA build)."""
import sys
import torch
import dspark_ext  # noqa: F401

ops = torch.ops.dspark
dev = "cuda"
quick = "--quick" in sys.argv
g = torch.Generator(device=dev).manual_seed(0)


def logits(shape, dtype, misaligned):
    *lead, v = shape
    full = torch.randn(*lead, v + int(misaligned), device=dev, generator=g) * 3
    full = full.to(dtype)
    return full[..., 1:] if misaligned else full


B, K = 3, 4
dtypes = (torch.float32, torch.bfloat16) if quick else (torch.float32, torch.bfloat16,
                                                         torch.float16)
for dtype in dtypes:
    for V in ((7, 1029) if quick else (1, 7, 1029)):
        for mis in (False, True):
            t = logits((B, K + 1, V), dtype, mis)
            d = logits((B, K, V), dtype, mis)
            tok = torch.randint(0, V, (B, K), device=dev, generator=g)
            nd = torch.tensor([K, 2, 0], device=dev)
            temp = torch.tensor([0.0, 1.0, 0.7], device=dev)
            seed = torch.tensor([1, 2, 3], device=dev)
            off = torch.tensor([5, 6, 7], device=dev)
            ops.verify_greedy(t, tok, nd)
            ops.rejection_sample(t, tok, d, temp, seed, off, nd, False)
            ops.rejection_sample(t, tok, None, temp, seed, off, None, True)
            T = K + 2
            rows = logits((T + B, V), dtype, mis)
            drows = logits((T, V), dtype, mis)
            toks = torch.randint(0, V, (T,), device=dev, generator=g)
            cu = torch.tensor([0, K, K + 2, K + 2], device=dev)
            ops.verify_greedy_ragged(rows, toks, cu, K)
            ops.rejection_sample_ragged(rows, toks, drows, cu, K, temp, seed, off, True)
            ops.rejection_sample_ragged(rows, toks, None, cu, K, temp, seed, off, False)
# Invalid values: rows must come back empty.
V = 7
rows = logits((6 + 3, V), torch.float32, True)
toks = torch.randint(0, V, (6,), device=dev, generator=g)
bad_cu = torch.tensor([0, 5, 1, 9], device=dev)
out = ops.rejection_sample_ragged(rows, toks, None, bad_cu, 4, torch.ones(3, device=dev),
                                  torch.zeros(3, dtype=torch.long, device=dev),
                                  torch.zeros(3, dtype=torch.long, device=dev), True)
t = logits((3, 3, V), torch.float32, True)
tok = torch.tensor([[0, 99], [-3, 1], [1, 2]], device=dev)
out2 = ops.rejection_sample(t, tok, None, torch.tensor([1.0, 1.0, -1.0], device=dev),
                            torch.zeros(3, dtype=torch.long, device=dev),
                            torch.zeros(3, dtype=torch.long, device=dev),
                            torch.tensor([2, 2, 1], device=dev), False)
out3 = ops.verify_greedy(t, tok.clamp(0, V - 1), torch.tensor([3, 1, 0], device=dev))
torch.cuda.synchronize()
assert out[2].tolist()[1:] == [0, 0], out[2].tolist()
assert out2[2].tolist() == [0, 0, 0], out2[2].tolist()
assert out3[2].tolist()[0] == 0, out3[2].tolist()
# Issue 20's paths: int32 indices with vLLM's inclusive offsets, draft_lse, sparse draft rows
# (the densify kernel, an out-of-range id among them skipped), the top-k Markov op and the
# dense Markov kernel at r = 512 (u read from global memory where shared memory is short).
V = 1029
rows = logits((6 + 3, V), torch.float32, True)
drows = logits((6, V), torch.float32, False)
toks32 = torch.randint(0, V, (6,), device=dev, generator=g).int()
inc = torch.tensor([4, 6, 6], device=dev, dtype=torch.int32)
lse = torch.logsumexp(drows.float(), -1)
ops.rejection_sample_ragged(rows, toks32, drows, inc, 4, torch.ones(3, device=dev),
                            torch.arange(3, device=dev).int(), torch.zeros(3, device=dev).int(),
                            False, draft_lse=lse, cu_inclusive=True)
ids = torch.stack([torch.randperm(V, device=dev, generator=g)[:33] for _ in range(6)])
ids[0, 5] = V + 7
ops.rejection_sample_ragged(rows, toks32, drows[:, :33].contiguous(), inc, 4,
                            torch.ones(3, device=dev), torch.arange(3, device=dev),
                            torch.zeros(3, dtype=torch.long, device=dev), True,
                            draft_ids=ids, cu_inclusive=True)
for rank in (64, 512):
    base = logits((3, 4, V), torch.float32, False).contiguous()
    w = torch.randn(V, rank, device=dev, generator=g) * 0.1
    args = (base, torch.tensor([0, 5, V - 1], device=dev), w, w, torch.ones(3, device=dev),
            torch.arange(3, device=dev), torch.zeros(3, dtype=torch.long, device=dev),
            "vanilla", None, None, None, None, None, None)
    ops.markov_sample(*args)
    ops.markov_sample_topk(*args, 16)
torch.cuda.synchronize()
dspark_ext.ops.cuda_input_errors()  # clear: the invalid values above set bits on purpose
# B = 0: no launch.
ops.verify_greedy(torch.randn(0, 2, 5, device=dev), torch.zeros(0, 1, dtype=torch.long,
                                                                 device=dev), None)
torch.cuda.synchronize()
print("ops_once: all ops ran")
