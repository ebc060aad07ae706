"""Runs one vllm.LLM configuration and writes what it generated (one process per
configuration: vLLM's plugins are loaded once per process, so the plugin-on and plugin-off
engines cannot share one).

    python engine_driver.py SPEC.json OUT.json

SPEC: {"model": dir, "speculative": bool or a speculative_config dict, "plugin": bool,
"jobs": {name: [[prompt, params], ...]}} with params a dict of SamplingParams arguments;
optional "llm" (more vllm.LLM arguments) and "register" (call the plugin's register() here,
for a dspark_ext that is importable but not installed, so vLLM finds no entry point).
OUT: {"jobs": {name: [[token ids], ...]}, "sampler": the worker's rejection sampler class and
stats, "seconds": {"start": engine start, name: generation}, "tokens": {name: count}}.
"""
import json
import os
import sys
import time


def sampler_info(worker):
    sampler = getattr(worker.model_runner, "rejection_sampler", None)
    return {"class": type(sampler).__name__, "module": type(sampler).__module__,
            "stats": dict(getattr(sampler, "stats", {}))}


def main(spec_path, out_path):
    with open(spec_path) as f:
        spec = json.load(f)
    os.environ["DSPARK_VLLM_PLUGIN"] = "1" if spec["plugin"] else "0"
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine core in this process
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # collective_rpc(callable)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    t0 = time.perf_counter()
    from vllm import LLM, SamplingParams

    if spec.get("register") and spec["plugin"]:
        from dspark_ext.vllm_plugin import register

        register()
    kwargs = dict(model=spec["model"], dtype="float32", max_model_len=256, max_num_seqs=64,
                  enforce_eager=True, seed=0)
    kwargs.update(spec.get("llm", {}))
    if spec["speculative"]:
        kwargs["speculative_config"] = {"method": "ngram", "num_speculative_tokens": 4,
                                        "prompt_lookup_max": 3, "prompt_lookup_min": 1}
        if isinstance(spec["speculative"], dict):
            kwargs["speculative_config"].update(spec["speculative"])
    llm = LLM(**kwargs)
    seconds = {"start": time.perf_counter() - t0}
    jobs, tokens = {}, {}
    for name, requests in spec["jobs"].items():
        t1 = time.perf_counter()
        prompts = [prompt for prompt, _ in requests]
        params = [SamplingParams(**p) for _, p in requests]
        outputs = llm.generate(prompts, params, use_tqdm=False)
        seconds[name] = time.perf_counter() - t1
        jobs[name] = [list(o.outputs[0].token_ids) for o in outputs]
        tokens[name] = sum(len(t) for t in jobs[name])
    info = llm.collective_rpc(sampler_info)[0]
    with open(out_path, "w") as f:
        json.dump({"jobs": jobs, "sampler": info, "seconds": seconds, "tokens": tokens}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
