"""Training data: text windows, chat JSONL with and without a chat template, pre-tokenised
JSONL, regeneration by the target, padding and the resumable data order."""
import json

import pytest
import torch

from dspark_ext.train import DataOrder, Example, collate, load_examples, regenerate

import train_cases as tc


class CharTokenizer:
    """One id per character (ord % 50 + 1); EOS = 0; an optional toy chat template."""

    eos_token_id = 0

    def __init__(self, template: bool):
        self.chat_template = "toy" if template else None

    def encode(self, text, add_special_tokens=False):
        return [ord(c) % 50 + 1 for c in text]

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        text = "".join(f"<{m['role'][0]}>{m['content']}|" for m in messages)
        return text + ("<a>" if add_generation_prompt else "")

    def __len__(self):
        return 51


def _write(path, lines):
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return str(path)


def test_text_files_are_windows_of_supervised_tokens(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.txt"
    a.write_text("x" * 7)
    b.write_text("y" * 5)
    ex = load_examples([str(a), str(b)], CharTokenizer(False), max_length=6)
    ids = sum((e.input_ids for e in ex), [])
    assert ids == [ord("x") % 50 + 1] * 7 + [0] + [ord("y") % 50 + 1] * 5 + [0]
    assert [len(e.input_ids) for e in ex] == [6, 6, 2]
    assert all(all(e.loss_mask) for e in ex)


@pytest.mark.parametrize("template", [True, False])
def test_chat_jsonl_supervises_the_response_only(tmp_path, template):
    tok = CharTokenizer(template)
    path = _write(tmp_path / "chat.jsonl", [{"prompt": "hi", "response": "yo"},
                                            {"messages": [{"role": "user", "content": "a"},
                                                          {"role": "assistant", "content": "b"},
                                                          {"role": "user", "content": "c"},
                                                          {"role": "assistant",
                                                           "content": "dd"}]}])
    first, second = load_examples([path], tok, max_length=100)
    resp = [i for i, m in zip(first.input_ids, first.loss_mask) if m]
    if template:
        assert resp == tok.encode("yo|")  # the template's end-of-turn is the target's too
        assert second.input_ids == tok.encode("<u>a|<a>b|<u>c|<a>dd|")
        sup = [i for i, m in zip(second.input_ids, second.loss_mask) if m]
        assert sup == tok.encode("b|dd|")
    else:
        assert first.input_ids == tok.encode("hiyo") + [0]
        assert resp == tok.encode("yo") + [0]


def test_pretokenised_jsonl_and_collate(tmp_path):
    path = _write(tmp_path / "t.jsonl", [{"input_ids": [5, 6, 7], "loss_mask": [0, 1, 1]},
                                         {"input_ids": [8, 9]}])
    ex = load_examples([path], None, max_length=10)
    ids, mask = collate(ex, pad_id=3)
    assert ids.tolist() == [[5, 6, 7], [8, 9, 3]]
    assert mask.tolist() == [[0, 1, 1], [1, 1, 0]]
    with pytest.raises(ValueError, match="tokenizer"):
        load_examples([str(tmp_path / "t.txt")], None)


def test_data_order_is_a_pure_function_of_the_step():
    order = DataOrder(10, 4, seed=3)
    seen = [i for s in range(5) for _, i in order.slots(s)]
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    assert DataOrder(10, 4, seed=3).slots(3) == order.slots(3)  # no hidden state
    assert DataOrder(10, 4, seed=4).slots(0) != order.slots(0)
    assert order.slots(2)[2][0] == 1  # stream position 10 opens epoch 1


def test_regenerate_replaces_responses_with_the_targets_continuation():
    with tc.one_thread():
        model = tc.trained_target()
        ex = [Example([1, 2, 3, 4, 5, 6], [0, 0, 0, 1, 1, 1]), Example([7, 8, 9, 10], [1] * 4)]
        new = regenerate(ex, model, max_new_tokens=5, temperature=0.0, batch_size=2)
        for old, fresh, plen in zip(ex, new, (3, 2)):
            assert fresh.input_ids[:plen] == old.input_ids[:plen]
            assert fresh.loss_mask == [0] * plen + [1] * 5
            greedy = model.generate(torch.tensor([old.input_ids[:plen]]), max_new_tokens=5,
                                    do_sample=False, pad_token_id=0)
            assert fresh.input_ids == greedy[0].tolist()


def _hf_tokenizer():
    """A real transformers fast tokenizer (word level, built in memory) with a chat template."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    words = ["<eos>", "<unk>", "<|im_start|>", "<|im_end|>", "user", "assistant", "hi", "yo",
             "\n"]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"<\|im_start\|>|<\|im_end\|>|\n"),
                                            behavior="isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", unk_token="<unk>")
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                         "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}"
                         "<|im_start|>assistant\n{% endif %}")
    return tok


def test_real_hf_tokenizer_chat_template(tmp_path):
    from dspark_ext.eval import load_prompts
    tok = _hf_tokenizer()
    path = _write(tmp_path / "chat.jsonl", [{"prompt": "hi", "response": "yo"}])
    (ex,) = load_examples([path], tok, max_length=100)
    # <|im_start|> user \n hi <|im_end|> \n <|im_start|> assistant \n | yo <|im_end|> \n
    assert ex.input_ids == [2, 4, 8, 6, 3, 8, 2, 5, 8, 7, 3, 8]
    assert ex.loss_mask == [0] * 9 + [1] * 3
    prompts = load_prompts([_write(tmp_path / "eval.jsonl", [{"turns": ["hi", "later"]}])], tok)
    assert prompts == [[2, 4, 8, 6, 3, 8, 2, 5, 8]]  # first turn + the generation prompt
