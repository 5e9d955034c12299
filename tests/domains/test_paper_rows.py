"""`data --protocol paper`: rows in the format of the authors' processed hub subsets, built as the paper did."""

import json
import subprocess

import pytest

from nemo_beyond_nll.domains.paper import (build_paper, family_of, figfont_items, llama_prompt, paper_example,
                                           sorted_fonts)

from ..data.fixtures import read_jsonl, write_jsonl

SOLUTION = "We add: $1+1=2$. So the answer is $\\boxed{2}$."
MATH_ROW = {"data_source": "AI-MO/NuminaMath-CoT-processed",
            "prompt": [{"role": "user", "content": "What is 1+1? Let's think step by step and output the final "
                                                   "answer within \\boxed{}."}],
            "ability": "math", "reward_model": {"style": "rule", "ground_truth": "2"},
            "extra_info": {"split": "train", "index": 0, "answer": SOLUTION, "question": "What is 1+1?"}}
MEDICAL_Q = "Which drug is an anticoagulant?\nA. Heparin\nB. Insulin\nC. Aspirin\nD. Metformin"
MEDICAL_ROW = {"data_source": "UCSC-VLAA/m23k-tokenized",
               "prompt": [{"role": "user", "content": MEDICAL_Q + "\nPlease reason step by step."}],
               "ability": "math", "reward_model": {"style": "rule", "ground_truth": "A"},
               "extra_info": {"split": "train", "index": 0, "answer_letter": "A", "answer_string": "Heparin",
                              "answer_thinking": "Heparin inhibits thrombin...", "answer_raw": "A. Heparin",
                              "question": MEDICAL_Q,
                              "qwen_prompt": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                                             "<|im_start|>user\n" + MEDICAL_Q + "\n...boxed{}.<|im_end|>\n"
                                             "<|im_start|>assistant\n",
                              "llama_prompt": "<|begin_of_text|>...user...\n\n" + MEDICAL_Q,
                              "qwen_reponse_no_thinking": "A. Heparin", "llama_reponse_no_thinking": "A. Heparin"}}
FIG_Q = " _   _ \n| | | |\n|_| |_|\nWhat word does this say?"
FIG_ROW = {"ability": "figlet_font", "prompt": [{"role": "user", "content": FIG_Q}], "answer": "HI",
           "qwen_prompt": "<|im_start|>system\nfiglet<|im_end|>\n<|im_start|>user\n" + FIG_Q,
           "llama_prompt": "<|begin_of_text|>figlet " + FIG_Q,
           "extra_info": {"split": "train", "index": 0, "question": FIG_Q, "answer": "HI",
                          "qwen_prompt": "<|im_start|>system\nfiglet<|im_end|>\n<|im_start|>user\n" + FIG_Q,
                          "llama_prompt": "<|begin_of_text|>figlet " + FIG_Q}}


def chat(text):
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def test_math_rows_by_family():
    qwen = paper_example("math", MATH_ROW, "qwen", chat)
    assert qwen.prompt == chat("What is 1+1?") and qwen.completion == SOLUTION and qwen.fields == {"answer": "2"}
    llama = paper_example("math", MATH_ROW, "llama")
    assert llama.prompt.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>")
    assert "What is 1+1?\nPlease reason step by step, and put your final answer within \\boxed{}.<|eot_id|>" in llama.prompt
    assert llama.prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    deepseek = paper_example("math", MATH_ROW, "deepseek")
    assert deepseek.prompt.startswith("<｜begin▁of▁sentence｜>User: What is 1+1?\n") and deepseek.prompt.endswith("Assistant:")
    with pytest.raises(ValueError, match="chat template"):
        paper_example("math", MATH_ROW, "qwen")


def test_medical_target_is_the_answer_only():
    qwen = paper_example("medical", MEDICAL_ROW, "qwen")
    assert qwen.completion == "A. Heparin" and qwen.prompt == MEDICAL_ROW["extra_info"]["qwen_prompt"]
    assert qwen.fields["answer"] == "A" and qwen.fields["options"]["A"] == "Heparin"
    llama = paper_example("medical", MEDICAL_ROW, "llama")
    assert llama.prompt == llama_prompt(MEDICAL_ROW["extra_info"]["llama_prompt"])


def test_figfont_rows_and_family():
    assert paper_example("figfont", FIG_ROW, "qwen").prompt == FIG_ROW["extra_info"]["qwen_prompt"]
    assert paper_example("figfont", FIG_ROW, "qwen").completion == "HI"
    assert family_of("meta-llama/Llama-3.2-3B") == "llama" and family_of("deepseek-ai/deepseek-math-7b-base") == "deepseek"
    assert family_of("Qwen/Qwen2.5-Math-7B") == "qwen"


def test_build_keeps_every_row(tmp_path):
    rows = [MATH_ROW, {**MATH_ROW, "extra_info": {**MATH_ROW["extra_info"], "answer": "no box here"}}, MATH_ROW]
    write_jsonl(tmp_path / "math.jsonl", rows)
    report = build_paper("math", tmp_path / "math.jsonl", tmp_path / "out", family="llama", progress=False)
    assert report["train"] == 3 and report["validation"] == 0  # unfiltered, not deduplicated, no held-out split
    assert [r["completion"] for r in read_jsonl(tmp_path / "out" / "train.jsonl")][1] == "no box here"


class CharTokenizer:
    """Stands in for a Hugging Face tokenizer: one id per character."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


def test_long_rows_are_cut_at_their_end(tmp_path):
    write_jsonl(tmp_path / "math.jsonl", [MATH_ROW])
    prompt_len = len(paper_example("math", MATH_ROW, "deepseek").prompt)
    report = build_paper("math", tmp_path / "math.jsonl", tmp_path / "out", family="deepseek",
                         tokenizer=CharTokenizer(), max_length=prompt_len + 11, progress=False)
    row = read_jsonl(tmp_path / "out" / "train.jsonl")[0]
    assert row["completion"] == SOLUTION[:10] and report["notes"] == {"truncated": 1}


def test_figfont_from_hub_format_writes_the_test_set(tmp_path):
    (tmp_path / "hub").mkdir()
    write_jsonl(tmp_path / "hub" / "train.jsonl", [FIG_ROW] * 3)
    write_jsonl(tmp_path / "hub" / "test.jsonl", [{**FIG_ROW, "answer": "HO"}])
    report = build_paper("figfont", tmp_path / "hub", tmp_path / "out", family="qwen", progress=False)
    assert report["train"] == 3
    assert read_jsonl(tmp_path / "out" / "test.jsonl") == [{"question": FIG_Q, "answer": "HI"}]


def test_generated_figfont_is_reproducible_and_disjoint(tmp_path):
    from reasoning_gym.cognition import figlet_fonts

    before = list(figlet_fonts.OK_FONTS)
    with sorted_fonts():
        assert figlet_fonts.OK_FONTS == sorted(before)
    assert figlet_fonts.OK_FONTS == before
    items = list(figfont_items(0, 3))
    assert items == list(figfont_items(0, 3)) and [i["index"] for i in items] == [0, 1, 2]
    assert all(2 <= len(i["answer"]) <= 5 for i in items)
    report = build_paper("figfont", "generate", tmp_path / "out", family="llama", limit=6, test_limit=4, progress=False)
    test = read_jsonl(tmp_path / "out" / "test.jsonl")
    assert len(test) == 4 and report["train"] + report["dropped"]["in_test_set"] == 6
    pairs = {(t["answer"], t["font"]) for t in test}
    assert not pairs & {(r["answer"], r["font"]) for r in read_jsonl(tmp_path / "out" / "train.jsonl")}


def test_cli_paper_protocol(tmp_path):
    write_jsonl(tmp_path / "medical.jsonl", [MEDICAL_ROW])
    proc = subprocess.run(["nemo-beyond-nll", "data", "medical", "--protocol", "paper", "--family", "qwen",
                           "--source", str(tmp_path / "medical.jsonl"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["train"] == 1
    assert read_jsonl(tmp_path / "out" / "train.jsonl")[0]["completion"] == "A. Heparin"
    proc = subprocess.run(["nemo-beyond-nll", "data", "math", "--protocol", "paper", "--source",
                           str(tmp_path / "medical.jsonl")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--family" in proc.stderr


def test_cli_figfont_test_size(tmp_path):
    proc = subprocess.run(["nemo-beyond-nll", "data", "figfont", "--protocol", "paper", "--family", "qwen", "--source",
                           "generate", "--limit", "3", "--test-size", "7", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    test = read_jsonl(tmp_path / "out" / "test.jsonl")
    assert len(test) == 7 and test[:4] == list(map(lambda i: {k: i[k] for k in ("question", "answer", "font")},
                                                     figfont_items(40000, 40004)))  # the same stream, from item 40000
    proc = subprocess.run(["nemo-beyond-nll", "data", "medical", "--protocol", "paper", "--family", "qwen",
                           "--test-size", "7"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "applies to figfont only" in proc.stderr
