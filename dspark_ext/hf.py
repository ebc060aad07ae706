"""``dspark_ext.hf.generate``: the transformers ``custom_generate`` hook (public path; the
code lives in :mod:`dspark_ext.integrations.hf_generate`)::

    out = model.generate(input_ids, custom_generate=dspark_ext.hf.generate,
                         drafter=dspark_ext.NgramDrafter(), gamma=4)
"""
from .integrations.hf_generate import generate

__all__ = ["generate"]
