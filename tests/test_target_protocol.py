"""The target protocol's helpers and the stats observer (issue 21, mutation testing):
``check_target_layer_ids``, the decoder-layer lookup and forward hooks of a transformers
model, and what ``StatsRecorder`` keeps of a round."""
import pytest
import torch

from dspark_ext.decoding.observers import RoundObserver, StatsRecorder
from dspark_ext.drafters.base import DraftBlock
from dspark_ext.ops import VerifyResult
from dspark_ext.targets.base import Target, TargetStep, check_target_layer_ids
from dspark_ext.targets.hooks import LayerCapture, decoder_layers
from tiny_models import tiny_hf


def _message(fn, *a):
    with pytest.raises(ValueError) as e:
        fn(*a)
    return str(e.value)


def test_check_target_layer_ids():
    assert check_target_layer_ids(None, 4) == []
    assert check_target_layer_ids((-1, 0, 2.0), 4) == [-1, 0, 2]
    assert check_target_layer_ids([], 4) == []
    assert _message(check_target_layer_ids, [1, 3], 4) == (
        "target_layer_ids names the target's final layer 3: its output is the input of the "
        "final norm and LM head, which the drafter must not see (allowed: -1 .. 2)")
    assert _message(check_target_layer_ids, [4], 4) == (
        "target_layer_ids entry 4 is out of range for a target with 4 layers (allowed: "
        "-1 .. 2)")
    assert _message(check_target_layer_ids, [-2], 4).startswith("target_layer_ids entry -2 ")
    assert _message(check_target_layer_ids, [1, 1], 4) == (
        "target_layer_ids must be strictly increasing, got [1, 1]")
    assert _message(check_target_layer_ids, [2, 0], 4).endswith("got [2, 0]")


def test_target_step_and_protocols():
    step = TargetStep(torch.zeros(1, 1, 2))
    assert step.features is None
    assert not isinstance(object(), Target) and not isinstance(object(), RoundObserver)
    assert isinstance(StatsRecorder(2), RoundObserver)


class _Wrapped(torch.nn.Module):
    """No ``.model``: the layers are found through ``get_decoder()``."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def get_decoder(self):
        return self.inner.model

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def forward(self, ids):
        return self.inner(ids)


def test_decoder_layers_and_capture():
    m = tiny_hf(layers=3)
    assert decoder_layers(m) is m.model.layers
    w = _Wrapped(m)
    assert decoder_layers(w) is m.model.layers
    with pytest.raises(TypeError) as e:
        decoder_layers(torch.nn.Linear(2, 2))
    assert str(e.value) == ("Linear: cannot find the decoder layers (expected "
                            "model.model.layers or model.get_decoder().layers)")

    class NotAList:
        class model:
            layers = [1, 2]

        def get_decoder(self):
            raise AttributeError

    with pytest.raises(TypeError, match="NotAList: cannot find"):
        decoder_layers(NotAList())
    class OnlyModel:
        model = m.model  # ``model.layers`` and no ``get_decoder``

    assert decoder_layers(OnlyModel()) is m.model.layers
    ids = torch.tensor([[3, 4, 5]])
    with torch.no_grad():
        hs = m(ids, output_hidden_states=True).hidden_states
    cap = LayerCapture(w, [-1, 1])
    assert cap.layers == [-1, 1]
    with torch.no_grad():
        w(ids)
    feats = cap.features()
    torch.testing.assert_close(feats, torch.cat([hs[0], hs[2]], -1))
    with pytest.raises(KeyError):
        cap.features()  # released after reading
    with torch.no_grad():
        w(ids)
    cap.clear()
    with pytest.raises(KeyError):
        cap.features()
    cap.close()
    assert cap._hooks == []
    with torch.no_grad():
        w(ids)
    assert cap._captured == {}  # no hook left
    assert LayerCapture(m, []).features() is None


class _TupleLayer(torch.nn.Module):
    def forward(self, x):
        return x * 2, "extra"  # like layers that also return attention weights


class _TupleModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.model = torch.nn.Module()
        self.model.layers = torch.nn.ModuleList([_TupleLayer(), _TupleLayer()])
        self.embed = torch.nn.Identity()

    def get_input_embeddings(self):
        return self.embed

    def forward(self, x):
        x = self.embed(x)
        for layer in self.model.layers:
            x = layer(x)[0]
        return x


def test_capture_takes_the_hidden_state_of_tuple_outputs():
    m = _TupleModel()
    cap = LayerCapture(m, [-1, 0, 1])
    x = torch.ones(1, 2, 3)
    m(x)
    torch.testing.assert_close(cap.features(), torch.cat([x, 2 * x, 4 * x], -1))


def _result(flags):
    b = flags.shape[0]
    return VerifyResult(torch.zeros(b, dtype=torch.int64), torch.zeros(b, 3, dtype=torch.int64),
                        torch.ones(b, dtype=torch.int64), flags)


def test_stats_recorder_keeps_a_round():
    rec = StatsRecorder(4)
    assert rec.stats.gamma == 4 and rec.stats.rounds == []
    rows = torch.tensor([2, 0])
    flags = torch.tensor([[1, 0], [1, 1]], dtype=torch.int8)
    conf = torch.tensor([[0.5, -1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]], dtype=torch.bfloat16)
    block = DraftBlock(torch.zeros(2, 4, dtype=torch.int64), confidence_logits=conf)
    rec.on_round(rows, torch.tensor([2, 2]), torch.tensor([1, 2]), _result(flags), block)
    r = rec.stats.rounds[0]
    assert r.rows.tolist() == [2, 0] and r.verified.tolist() == [2, 2]
    assert r.accepted.tolist() == [1, 2] and r.drafted
    assert r.flags.dtype == torch.int8 and r.flags.tolist() == [[1, 0, -1, -1], [1, 1, -1, -1]]
    assert r.confidence_logits.dtype == torch.float32
    assert r.confidence_logits.tolist() == conf.float().tolist()
    rows[0] = 7
    assert r.rows.tolist() == [2, 0]  # a copy
    one = DraftBlock(torch.zeros(1, 1, dtype=torch.int64))  # gamma 1 is a drafted round
    rec.on_round(torch.tensor([1]), torch.tensor([1]), torch.tensor([0]),
                 _result(torch.zeros(1, 1, dtype=torch.int8)), one)
    assert rec.stats.rounds.pop().drafted
    skip = DraftBlock(torch.zeros(1, 0, dtype=torch.int64))
    rec.on_round(torch.tensor([1]), torch.tensor([0]), torch.tensor([0]),
                 _result(torch.zeros(1, 0, dtype=torch.int8)), skip)
    r = rec.stats.rounds[1]
    assert not r.drafted and r.confidence_logits is None and r.flags.tolist() == [[-1] * 4]
