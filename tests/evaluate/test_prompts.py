"""Prompts from ShareGPT, alpaca, plain JSON Lines, AlpacaEval and MT-Bench files."""

from __future__ import annotations

import json

import pytest

from launcher.errors import UserError
from launcher.evaluate.prompts import read_prompts


def write_lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_sharegpt_ranking_records_give_the_prompt_without_the_answers(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [
        {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},
                           {"from": "gpt", "value": "Hello"}, {"from": "human", "value": "2+2?"}],
         "chosen": {"from": "gpt", "value": "4"}, "rejected": {"from": "gpt", "value": "5"}},
        {"messages": [{"role": "user", "content": "Name a colour"}, {"role": "assistant", "content": "red"}]}])
    first, second = read_prompts(path)
    assert first.to_dict() == {"index": 0, "id": "0", "system": "Be brief.", "messages": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "2+2?"}]}
    assert second.messages == ({"role": "user", "content": "Name a colour"},)


def test_alpaca_and_alpacaeval_records_join_instruction_and_input(tmp_path):
    path = tmp_path / "alpaca_eval.json"  # AlpacaEval ships a JSON array
    path.write_text(json.dumps([
        {"instruction": "Translate", "input": "bonjour", "output": "hello", "generator": "x", "dataset": "helpful"},
        {"instruction": "Say hi", "system": "Be kind.", "history": [["q", "a"]]}]), encoding="utf-8")
    first, second = read_prompts(path)
    assert first.messages == ({"role": "user", "content": "Translate\n\nbonjour"},)
    assert second.messages == ({"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                               {"role": "user", "content": "Say hi"})
    assert second.system == "Be kind."


def test_mt_bench_questions_keep_their_ids_and_first_turn(tmp_path):
    path = write_lines(tmp_path / "question.jsonl", [
        {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Now shorter."]}])
    (prompt,) = read_prompts(path)
    assert (prompt.id, prompt.messages) == ("81", ({"role": "user", "content": "Write a poem."},))


def test_plain_prompt_and_string_lines_are_prompts_and_limit_stops_early(tmp_path):
    path = tmp_path / "plain.jsonl"
    path.write_text('{"prompt": "one"}\n"two"\n{"question": "three", "id": "q3"}\n', encoding="utf-8")
    assert [(p.id, p.text) for p in read_prompts(path)] == [("0", "one"), ("1", "two"), ("q3", "three")]
    assert len(read_prompts(path, limit=2)) == 2


def test_every_record_that_is_not_a_prompt_is_reported_with_its_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "ok", "id": "a"}\n{"answer": "x"}\n{"prompt": ""}\n{"prompt": "ok", "id": "a"}\n'
                    '{"conversations": [{"from": "gpt", "value": "only an answer"}]}\n[1]\n', encoding="utf-8")
    with pytest.raises(UserError) as caught:
        read_prompts(path)
    assert str(caught.value) == (
        f"5 record(s) of {path} are not prompts:\n"
        f"  {path}:2: record 1: no prompt found: expected conversations/messages (ShareGPT), instruction (alpaca, "
        "AlpacaEval), turns (MT-Bench), prompt or question\n"
        f"  {path}:3: record 2: prompt is empty\n"
        f"  {path}:4: record 3: id 'a' appears twice (ids name the prompts in the output)\n"
        f"  {path}:5: record 4: 'conversations' has no user turn\n"
        f"  {path}:6: record 5: expected an object or a string, got list")


def test_a_missing_or_empty_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such prompts file"):
        read_prompts(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(UserError, match="holds no prompts"):
        read_prompts(tmp_path / "empty.jsonl")
