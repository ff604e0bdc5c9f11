"""Token lengths of one record, exactly as LLaMA-Factory 0.9.5's pairwise/feedback processors compute them.

Runs inside the stats worker process: the caller passes in LF's own `template` (from
`get_template_and_fix_tokenizer`), converter and `infer_seqlen`; nothing heavy is imported here.

Speed comes from three things, none of which changes a token count:
- `CachedTokenizer` memoises `encode(text, add_special_tokens=False)`, the only tokenizer call LF's templates
  make per element (`Template._convert_elements_to_ids`). A template renders each message as fixed strings around
  the content, so the fixed parts ("\\nAssistant:", "<|im_start|>assistant\\n", ...) hit the cache every time,
  and the prompt, which LF encodes twice per pair (once with chosen, once with rejected), is tokenized once.
- For byte-level BPE tokenizers it caches per word (launcher.stats.tokens); for others it calls the Rust
  tokenizer directly, skipping transformers' Python wrapper. The worker checks on a sample that the chosen mode
  gives LF's exact lengths (the real tokenizer through `encode_oneturn`) and falls back to the next mode if not.
- No `datasets` map, no Arrow writes, no attention masks or labels: only the lengths are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from launcher.stats.tokens import piece_encoder

CACHE_LIMIT = 20_000  # strings; a pair's prompt is encoded twice (with chosen, with rejected)
# Near-identical threshold on the templated response tokens (see `span_similarity`).
NEAR_IDENTICAL = 0.9


MODES = ("pieces", "backend", "exact")


class CachedTokenizer:
    """Stands in for the tokenizer in `template.encode_oneturn`: the same ids, memoised per string.

    mode "pieces": launcher.stats.tokens's per-word cache (byte-level BPE only); "backend": the Rust
    tokenizer's encode; "exact": the tokenizer's own `encode`. `available_modes` lists what this tokenizer has.
    """
    def __init__(self, tokenizer, mode: str = "exact"):
        self._tokenizer, self.mode = tokenizer, mode
        self._encode = self._pick(mode)
        self._cache: dict[str, list[int]] = {}
        self.bos_token_id, self.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id

    def _pick(self, mode: str):
        backend = getattr(self._tokenizer, "_tokenizer", None)
        if mode == "pieces":
            return piece_encoder(backend)
        if mode == "backend" and backend is not None and hasattr(backend, "encode"):
            return lambda text: backend.encode(text, add_special_tokens=False).ids
        if mode == "exact":
            return lambda text: self._tokenizer.encode(text, add_special_tokens=False)
        return None

    @classmethod
    def available_modes(cls, tokenizer) -> list[str]:
        return [mode for mode in MODES if cls(tokenizer, mode)._encode is not None]

    def encode(self, text, add_special_tokens: bool = True, **kwargs) -> list[int]:
        if add_special_tokens or kwargs or not isinstance(text, str):
            return self._tokenizer.encode(text, add_special_tokens=add_special_tokens, **kwargs)
        ids = self._cache.get(text)
        if ids is None:
            ids = self._encode(text)
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()  # the fixed template strings come back at the next record
            self._cache[text] = ids
        # Not a copy: LF's templates only ever extend their own lists with it (`token_ids += ...`), and the
        # sample check against the uncached tokenizer would catch a template that mutated it.
        return ids

    def __getattr__(self, name: str):  # convert_tokens_to_ids, chat_template, ... as the real tokenizer has them
        return getattr(self._tokenizer, name)


def key(*parts: object) -> int:
    """A 64-bit digest of the parts: Python's string hash (computed once per string object and cached by it).
    The same in every process of one run, as the pool forks; the statistics never compare keys across runs."""
    return hash(tuple("" if p is None else str(p) for p in parts))


def prompt_key(example: dict) -> int:
    return key(example["_system"], example["_tools"], *(f"{m['role']}\x1d{m['content']}" for m in example["_prompt"]))


def same_words(a: object, b: object) -> bool:
    """Equal after collapsing whitespace and case (list equality stops at the first differing word)."""
    return str(a).casefold().split() == str(b).casefold().split()


def span_similarity(a: list[int], b: list[int]) -> float:
    """(common prefix + common suffix) / longer length: 1 - the share of the longer sequence taken by the single
    contiguous span where they differ. O(n), unlike difflib's ratio, and it is what "one small edit" means."""
    longer = max(len(a), len(b))
    if not longer:
        return 1.0
    if min(len(a), len(b)) < NEAR_IDENTICAL * longer:
        return min(len(a), len(b)) / longer  # an upper bound, already under the threshold
    limit = min(len(a), len(b))
    prefix = 0
    while prefix < limit and a[prefix] == b[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and a[-1 - suffix] == b[-1 - suffix]:
        suffix += 1
    return (prefix + suffix) / longer


def has_media(example: dict) -> bool:
    return bool(example.get("_images") or example.get("_videos") or example.get("_audios"))


@dataclass
class Columns:
    """Per-record measurements, one list per field, in record order (kept columnar: 200k records stay small)."""
    names: tuple[str, ...]
    data: dict[str, list] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data = {name: [] for name in self.names}

    def add(self, row: tuple) -> None:
        for name, value in zip(self.names, row, strict=True):
            self.data[name].append(value)

    def __len__(self) -> int:
        return len(self.data[self.names[0]])


PAIR_FIELDS = ("index", "prompt", "chosen", "rejected", "source", "target", "identical", "near", "same_after_cut",
               "prompt_key", "chosen_key", "rejected_key", "media")
KTO_FIELDS = ("index", "prompt", "response", "source", "target", "desirable", "prompt_key", "response_key", "media")


class Measurer:
    """Measures converted records (LF's `_prompt`/`_response`/...) with LF's template and truncation rule."""
    def __init__(self, template, tokenizer, cutoff_len: int, infer_seqlen, kto: bool):
        self.template, self.tokenizer, self.cutoff_len = template, tokenizer, cutoff_len
        self.infer_seqlen, self.kto = infer_seqlen, kto
        self.eos = [tokenizer.eos_token_id] if template.efficient_eos else []

    def fields(self) -> tuple[str, ...]:
        return KTO_FIELDS if self.kto else PAIR_FIELDS

    def dropped(self, example: dict) -> bool:
        """LF's processors drop these ("Dropped invalid example")."""
        return len(example["_prompt"]) % 2 != 1 or len(example["_response"]) < 2

    def encode(self, example: dict, answer: dict) -> tuple[list[int], list[int]]:
        """`encode_oneturn` as the processors call it (media placeholders are counted as their text)."""
        prompt_ids, response_ids = self.template.encode_oneturn(
            self.tokenizer, example["_prompt"] + [answer], example["_system"], example["_tools"])
        return prompt_ids, response_ids + self.eos

    def measure(self, index: int, example: dict) -> tuple:
        return self._feedback(index, example) if self.kto else self._pairwise(index, example)

    def _pairwise(self, index: int, example: dict) -> tuple:
        chosen, rejected = example["_response"][0], example["_response"][1]
        prompt_ids, chosen_ids = self.encode(example, chosen)
        _, rejected_ids = self.encode(example, rejected)
        source, target = self.infer_seqlen(len(prompt_ids), max(len(chosen_ids), len(rejected_ids)), self.cutoff_len)
        identical = chosen["content"] == rejected["content"]
        near = not identical and (span_similarity(chosen_ids, rejected_ids) >= NEAR_IDENTICAL
                                  or same_words(chosen["content"], rejected["content"]))
        same_after_cut = not identical and chosen_ids[:target] == rejected_ids[:target]
        return (index, len(prompt_ids), len(chosen_ids), len(rejected_ids), source, target, identical, near,
                same_after_cut, prompt_key(example), key(chosen["role"], chosen["content"]),
                key(rejected["role"], rejected["content"]), has_media(example))

    def _feedback(self, index: int, example: dict) -> tuple:
        response = example["_response"]
        desirable = bool(response[0]["content"])  # LF reads desirability from the non-empty slot (feedback.py)
        answer = response[0] if desirable else response[1]
        prompt_ids, response_ids = self.encode(example, answer)
        source, target = self.infer_seqlen(len(prompt_ids), len(response_ids), self.cutoff_len)
        return (index, len(prompt_ids), len(response_ids), source, target, desirable, prompt_key(example),
                key(answer["role"], answer["content"]), has_media(example))
