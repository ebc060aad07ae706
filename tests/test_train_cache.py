"""The optional on-disk hidden-state cache: size printed before writing, bf16 copies of what
the online target computes, and training from it."""
import os

import torch

from dspark_ext.train import (CachedTarget, HiddenStateCache, OnlineTarget, TrainConfig,
                              Trainer, build_cache, cache_bytes)

import train_cases as tc


class Log:
    def __init__(self, directory):
        self.directory, self.lines = directory, []

    def write(self, text):  # the estimate must come before any file exists
        self.lines.append((text, sorted(os.listdir(self.directory))))

    def flush(self):
        pass


def test_cache_matches_online_target_and_trains(tmp_path):
    with tc.one_thread():
        model = tc.trained_target()
        online = OnlineTarget(model, tc.LAYER_IDS)
        ex = tc.examples(10, 24)[:9] + tc.examples(1, 17)
        log = Log(str(tmp_path))
        written = build_cache(str(tmp_path), online, ex, batch_size=4, shard_tokens=100, log=log)
        assert written == cache_bytes(sum(len(e.input_ids) for e in ex), 2, tc.HIDDEN)
        (text, files_then), = log.lines
        assert f"{written / 1e9:.3f} GB" in text and files_then == []
        sizes = sum(os.path.getsize(tmp_path / f) for f in os.listdir(tmp_path)
                    if f.endswith(".bin"))
        assert sizes == written
        cache = HiddenStateCache(str(tmp_path))
        assert len(cache.index["shards"]) > 1 and len(cache) == 10
        cache.check(ex)
        cached = CachedTarget.from_online(cache, online)
        ids = torch.tensor([ex[3].input_ids, ex[7].input_ids])
        a, b = online(ids), cached(ids, indices=[3, 7])
        torch.testing.assert_close(b.features.float(), a.features.to(torch.bfloat16).float())
        torch.testing.assert_close(b.last_hidden.float(),
                                   a.last_hidden.to(torch.bfloat16).float())
        cfg = TrainConfig(out_dir=str(tmp_path / "run"), steps=3, micro_batch=2,
                          progress=False, save_final=False)
        recs = Trainer(cached, tc.fresh_drafter(model), ex, cfg).train()
        ref = Trainer(online, tc.fresh_drafter(model), ex, cfg).train()
    for r, s in zip(recs, ref):  # bf16 features: close to the online run, not equal
        assert abs(r["loss"] - s["loss"]) < 0.05 * s["loss"]
