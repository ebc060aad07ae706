"""CUDA-event timings of the verification kernels at serving sizes, with the bytes each
must read (every verified target/draft row once, approximated from the accepted counts)
as an effective bandwidth.
--ncu: one launch of each op only (for the profiler).

Run by bench/gpu_check.sh (kernel timings; ncu with --ncu); on its own:
python bench/gpu_check_timing.py [--ncu] (needs a CUDA device and a CUDA build)."""
import statistics
import sys
import torch
import dspark_ext  # noqa: F401

ops = torch.ops.dspark
dev = "cuda"
ncu = "--ncu" in sys.argv
g = torch.Generator(device=dev).manual_seed(0)


def case(B, K, V, dtype):
    t = (torch.randn(B, K + 1, V, device=dev, generator=g) * 3).to(dtype)
    d = (t[:, :K].float() + torch.randn(B, K, V, device=dev, generator=g)).to(dtype)
    tok = t[:, :K].float().argmax(-1)
    temp = torch.ones(B, device=dev)
    seed = torch.arange(B, device=dev)
    off = torch.zeros(B, dtype=torch.long, device=dev)
    return t, tok, d, temp, seed, off


def timeit(fn, reps=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3)
    return statistics.median(times)


if ncu:
    t, tok, d, temp, seed, off = case(264, 7, 151936, torch.bfloat16)
    ops.verify_greedy(t, tok, None)
    ops.rejection_sample(t, tok, d, temp, seed, off, None, False)
    ops.rejection_sample(t, tok, d, temp, seed, off, None, True)
    torch.cuda.synchronize()
    sys.exit(0)

print(f"{'op':<22}{'B':>6}{'K':>4}{'V':>8} {'dtype':<9}{'us':>10}{'~GB read':>9}{'GB/s':>8}")
for B, K, V, dtype in ((1, 7, 151936, torch.bfloat16), (64, 7, 151936, torch.bfloat16),
                       (512, 7, 151936, torch.bfloat16), (256, 16, 32000, torch.float32)):
    t, tok, d, temp, seed, off = case(B, K, V, dtype)
    es = t.element_size()
    for name, fn, rows in (
        ("verify_greedy", lambda: ops.verify_greedy(t, tok, None), K + 1),
        ("rejection token", lambda: ops.rejection_sample(t, tok, d, temp, seed, off, None,
                                                         False), None),
        ("rejection block", lambda: ops.rejection_sample(t, tok, d, temp, seed, off, None,
                                                         True), None),
    ):
        us = timeit(fn)
        if rows is None:  # rows actually verified: accepted prefix + the decisive position
            acc = fn()[0].float()
            rows = (2 * torch.clamp(acc + 1, max=K) + 1).mean().item()
        gb = B * rows * V * es / 1e9
        print(f"{name:<22}{B:>6}{K:>4}{V:>8} {str(dtype)[6:]:<9}{us:>10.1f}{gb:>9.3f}"
              f"{gb / (us * 1e-6):>8.0f}")
