"""Old module paths keep working after the package was given its layers (design §12).

Each old path is an alias of the module that now holds the code: importing
``dspark_ext.reference_markov`` returns the very module object ``dspark_ext.reference.markov``
(no copy, so classes and functions are identical under both names), and submodules follow
(``dspark_ext.vllm_plugin.sampler`` is ``dspark_ext.integrations.vllm.sampler``). Aliases are
resolved lazily, on first import, by a finder on ``sys.meta_path``; nothing is imported for
an alias nobody uses (the vLLM plugin imports vLLM, the HF target imports transformers).
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Optional

# old path -> new path; an entry also covers every submodule of the old path.
MOVED = {
    "dspark_ext.markov": "dspark_ext.ops.markov",
    "dspark_ext.sampling": "dspark_ext.ops.sampling",
    "dspark_ext._fake": "dspark_ext.ops.verify_fake",
    "dspark_ext._fake_markov": "dspark_ext.ops.markov_fake",
    "dspark_ext._fake_schedule": "dspark_ext.ops.schedule_fake",
    "dspark_ext.reference_markov": "dspark_ext.reference.markov",
    "dspark_ext.reference_schedule": "dspark_ext.reference.schedule",
    "dspark_ext.reference_drafter": "dspark_ext.reference.drafter",
    "dspark_ext.vllm_plugin": "dspark_ext.integrations.vllm",
    "dspark_ext.targets.hf": "dspark_ext.targets.hf_target",
    "dspark_ext.decoding.profile": "dspark_ext.profiling",
}


def new_name(old: str) -> Optional[str]:
    """The module that now holds ``old``, or None when ``old`` did not move."""
    for prefix, target in MOVED.items():
        if old == prefix or old.startswith(prefix + "."):
            return target + old[len(prefix):]
    return None


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self):
        self._real_specs = {}  # alias name -> the real module's spec, between the two calls

    def find_spec(self, fullname, path=None, target=None):
        if new_name(fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        module = importlib.import_module(new_name(spec.name))
        # The import system stamps the alias spec onto the module next; exec_module puts the
        # module's own spec back, so it keeps its one true name.
        self._real_specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module) -> None:
        module.__spec__ = self._real_specs.pop(module.__spec__.name)


def install() -> None:
    # First on the path: an alias's parent is the new package, whose __path__ the default
    # finder would otherwise search, loading a second copy of the submodule under the old name.
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
