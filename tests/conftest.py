"""Shared pytest set-up: the native module, output poisoning, CUDA skipping."""
import pytest
import torch

import dspark_ext
from dspark_ext import _C


@pytest.fixture(autouse=True)
def poison_outputs():
    """Every op output a kernel must write in full starts as a sentinel, so a forgotten element
    fails the exactness tests instead of passing by luck (design §9)."""
    _C.set_debug_poison_outputs(True)
    yield
    _C.set_debug_poison_outputs(False)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available() and dspark_ext.build_info()["cuda_enabled"]:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device and a CUDA build of dspark_ext")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
