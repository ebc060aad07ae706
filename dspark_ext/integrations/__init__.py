"""Integrations with the stacks users run: transformers (:mod:`.hf_generate`, the
``custom_generate`` hook, public as ``dspark_ext.hf.generate``) and vLLM (:mod:`.vllm`, the
plugin that runs vLLM's rejection sampler on dspark's ops; public as
``dspark_ext.vllm_plugin``). Each imports its stack lazily (optional extras)."""
