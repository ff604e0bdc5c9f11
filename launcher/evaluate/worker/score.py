"""Task `score`: reward-model scores of prompt + response texts.

Request: {"model": {"model_name_or_path", "template", ...}, "kind": "valuehead" | "classifier", "items":
[{"key", "messages", "system", "response"}, ...], "batch_size": B}. Result: {"scores": {key: float}}.

- `valuehead`: a LLaMA-Factory `stage: rm` output. Loaded by `ChatModel` with `stage: rm` (a causal LM with
  trl's value head, chat/hf_engine.py) and scored by its `get_scores`: the value at the last token of the text.
  The text is the prompt and response encoded by the run's template exactly as LLaMA-Factory's pairwise
  processor encodes them for reward-model training (`template.encode_oneturn`), decoded back to a string.
- `classifier`: a HuggingFace sequence-classification reward model (`AutoModelForSequenceClassification`,
  one logit): the tokenizer's own chat template renders the conversation; the score is logit 0.
"""

from __future__ import annotations

from launcher.evaluate.worker.common import TaskError, load_failure


def valuehead_scorer(model_args: dict):
    from llamafactory.chat import ChatModel

    try:
        chat_model = ChatModel({**model_args, "stage": "rm"})
    except (OSError, ValueError) as exc:
        raise load_failure(f"the reward model {model_args.get('model_name_or_path')!r}", exc,
                           "pass the output_dir of a LLaMA-Factory `stage: rm` run") from exc
    engine = chat_model.engine

    def text(item: dict) -> str:
        messages = [*item["messages"], {"role": "assistant", "content": item["response"]}]
        prompt_ids, response_ids = engine.template.encode_oneturn(engine.tokenizer, messages, item.get("system"))
        return engine.tokenizer.decode(prompt_ids + response_ids, skip_special_tokens=False)

    def score(items: list[dict]) -> list[float]:
        return [float(v) for v in chat_model.get_scores([text(item) for item in items]).reshape(-1).tolist()]

    return score


def classifier_scorer(model_args: dict):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = model_args["model_name_or_path"]
    remote = bool(model_args.get("trust_remote_code"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=remote)
        model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=remote)
    except (OSError, ValueError) as exc:
        raise load_failure(f"the reward model {path!r}", exc, "a sequence-classification model folder") from exc
    model.eval()  # inference mode for dropout and norms
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    @torch.inference_mode()
    def score(items: list[dict]) -> list[float]:
        texts = [tokenizer.apply_chat_template(
            ([{"role": "system", "content": i["system"]}] if i.get("system") else []) + i["messages"]
            + [{"role": "assistant", "content": i["response"]}], tokenize=False) for i in items]
        batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, add_special_tokens=False)
        return [float(v) for v in model(**batch).logits[:, 0].tolist()]

    return score


def run(request: dict) -> dict:
    kind = request.get("kind", "valuehead")
    if kind not in ("valuehead", "classifier"):
        raise TaskError(f"unknown reward model kind {kind!r}")
    scorer = valuehead_scorer(request["model"]) if kind == "valuehead" else classifier_scorer(request["model"])
    items, size = request["items"], max(1, int(request.get("batch_size") or 8))
    scores: dict[str, float] = {}
    for start in range(0, len(items), size):
        batch = items[start:start + size]
        scores.update(zip((i["key"] for i in batch), scorer(batch), strict=True))
    return {"scores": scores}
