"""The bundled models' corpus: the running Python's standard-library source.

Every machine with Python has it, and code is where speculative decoding shines. Training
files are the stdlib's ``.py`` files minus tests, generated tables and bulk data, and minus
the held-out modules listed in ``models/heldout_modules.txt`` (whole modules, never seen in
training; the evaluation prompts are cut from them). Files are read in sorted order, so the
corpus is a pure function of the Python installation; :func:`fingerprint` records which one.
"""
from __future__ import annotations

import hashlib
import os
import sysconfig
from dataclasses import dataclass
from typing import List, Optional, Sequence

__all__ = ["Corpus", "stdlib_dir", "heldout_modules", "collect", "HELDOUT_FILE"]

HELDOUT_FILE = os.path.join(os.path.dirname(__file__), "models", "heldout_modules.txt")

# Folders that are not ordinary library code: test suites, third-party installs, generated
# codec tables and the pydoc topic dump (megabytes of prose in one string).
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__",
              "encodings", "pydoc_data", "lib-dynload", "ensurepip", "turtledemo"}
_SKIP_PREFIXES = ("config-",)
# Generated or data-only modules (huge literal tables teach nothing about code).
_SKIP_FILES = {"_sysconfigdata__linux_x86_64-linux-gnu.py", "_pydecimal.py"}


def stdlib_dir() -> str:
    return sysconfig.get_paths()["stdlib"]


def heldout_modules(path: str = HELDOUT_FILE) -> List[str]:
    with open(path) as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]


def _is_heldout(rel: str, heldout: Sequence[str]) -> bool:
    return any(rel == h or (h.endswith("/") and rel.startswith(h)) for h in heldout)


@dataclass
class Corpus:
    root: str
    train: List[str]     # paths relative to root, sorted
    heldout: List[str]

    def read(self, rel: str) -> str:
        with open(os.path.join(self.root, rel), encoding="utf-8", errors="replace") as f:
            return f.read()

    def fingerprint(self) -> dict:
        """Which Python and which bytes: rebuilding elsewhere reports a different corpus."""
        h = hashlib.sha256()
        for rel in self.train + ["--heldout--"] + self.heldout:
            h.update(rel.encode())
            if rel != "--heldout--":
                h.update(self.read(rel).encode())
        import platform
        return {"python": platform.python_version(), "stdlib": self.root,
                "train_files": len(self.train), "heldout_files": len(self.heldout),
                "sha256": h.hexdigest()}


def collect(root: Optional[str] = None, heldout: Optional[Sequence[str]] = None) -> Corpus:
    root = root or stdlib_dir()
    if not os.path.isdir(root):
        raise FileNotFoundError(f"standard library folder {root!r} does not exist")
    heldout = list(heldout) if heldout is not None else heldout_modules()
    train, held = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames
                             if d not in _SKIP_DIRS and not d.startswith(_SKIP_PREFIXES))
        for name in sorted(filenames):
            if not name.endswith(".py") or name in _SKIP_FILES:
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            (held if _is_heldout(rel, heldout) else train).append(rel)
    train.sort()
    held.sort()
    missing = [h for h in heldout if not any(_is_heldout(r, [h]) for r in held)]
    if missing:
        raise FileNotFoundError(f"held-out modules not found under {root}: {missing}")
    return Corpus(root, train, held)
