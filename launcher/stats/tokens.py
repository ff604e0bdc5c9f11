"""A per-word cache in front of a Hugging Face fast tokenizer, for the common byte-level BPE family.

Why: tokenizing is most of the cost of measuring a dataset, and a byte-level BPE (GPT-2, Llama 3, Qwen2/3,
DeepSeek, the tiny test model) tokenizes each pre-token (a word with its leading space, a number, a run of
punctuation) on its own. So a string's ids are the concatenation of its pre-tokens' ids, and natural text
repeats its words: after the first few thousand records nearly every word is a cache hit.

The pipeline reproduced here, from the tokenizer's own tokenizer.json: added tokens split out first (longest
match), no normalizer, then the pre-tokenizer's regex splits (`Split` with behaviour Isolated, or ByteLevel with
its GPT-2 regex), then the model on each piece (`backend.encode(piece)`, cached). Anything else (a normalizer,
Metaspace/sentencepiece, BPE dropout, added tokens with lstrip/rstrip/single_word, ...) gets `None` and the worker
uses the plain backend. The worker also checks the result against LF's exact path on a sample before using it.
"""

from __future__ import annotations

import json
import re
from itertools import chain

# tokenizers' ByteLevel pre-tokenizer regex (tokenizers/src/pre_tokenizers/byte_level.rs).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# The same regex for ASCII-only text, in the stdlib's `re` (about twice as fast as `regex` on \p{..} classes):
# in ASCII, \p{L} is [A-Za-z], \p{N} is [0-9] and \s (Unicode White_Space, as the Rust side uses) is [\t\n\v\f\r ];
# Python's own \s would add \x1c-\x1f, so the class is spelled out.
_WS, _NOT_WS = "[\t\n\x0b\x0c\r ]", "[^\t\n\x0b\x0c\r ]"
GPT2_ASCII_PATTERN = (r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\t\n\x0b\x0c\r A-Za-z0-9]+|"
                      + _WS + "+(?!" + _NOT_WS + ")|" + _WS + "+")
CACHE_LIMIT = 500_000


def piece_encoder(backend):
    """encode(text) -> list[int] with a per-piece cache, or None when this tokenizer is not one we reproduce."""
    try:
        import regex
    except ImportError:
        return None
    spec = json.loads(backend.to_str())
    patterns = split_patterns(spec.get("pre_tokenizer"))
    model = spec.get("model") or {}
    if spec.get("normalizer") is not None or patterns is None or model.get("type") != "BPE" or model.get("dropout"):
        return None
    added = spec.get("added_tokens") or []
    if any(t.get("lstrip") or t.get("rstrip") or t.get("single_word") for t in added):
        return None
    splitters = [regex.compile(p) for p in patterns]
    contents = sorted({t["content"] for t in added}, key=len, reverse=True)  # longest first, as tokenizers matches
    added_split = re.compile("(" + "|".join(map(re.escape, contents)) + ")").split if contents else None
    added_ids = {t["content"]: t["id"] for t in added}
    return _encoder(backend.encode, splitters, added_split, added_ids)


def split_patterns(pre: dict | None) -> list[str] | None:
    """The regexes a pre-tokenizer splits with (Isolated behaviour), or None if it does anything else."""
    if not pre:
        return None
    steps = pre["pretokenizers"] if pre.get("type") == "Sequence" else [pre]
    patterns = []
    for step in steps:
        if step.get("type") == "ByteLevel" and not step.get("add_prefix_space"):
            if step.get("use_regex", True):
                patterns.append(GPT2_PATTERN)
        elif step.get("type") == "Split" and step.get("behavior") == "Isolated" and not step.get("invert"):
            pattern = step.get("pattern") or {}
            if "Regex" in pattern:
                patterns.append(pattern["Regex"])
            elif "String" in pattern:
                import regex

                patterns.append(regex.escape(pattern["String"]))
            else:
                return None
        else:
            return None
    byte_level = any(step.get("type") == "ByteLevel" for step in steps)
    return patterns if patterns and byte_level else None


def split(text: str, splitter) -> list[str]:
    """Isolated: each match is a piece, and so is each stretch between matches."""
    pieces, last = [], 0
    for match in splitter.finditer(text):
        start, end = match.span()
        if start > last:
            pieces.append(text[last:start])
        if end > start:
            pieces.append(text[start:end])
        last = end
    if last < len(text):
        pieces.append(text[last:])
    return pieces


def _encoder(backend_encode, splitters, added_split, added_ids):
    cache: dict[str, list[int]] = {}
    first, rest = splitters[0], splitters[1:]
    single = not rest and first.pattern == GPT2_PATTERN  # the GPT-2 regex matches everything: findall is the split

    ascii_findall = re.compile(GPT2_ASCII_PATTERN).findall

    def words(segment: str) -> list[str]:
        if single:
            return ascii_findall(segment) if segment.isascii() else first.findall(segment)
        pieces = split(segment, first)
        for splitter in rest:
            pieces = [p for piece in pieces for p in split(piece, splitter)]
        return pieces

    def encode_plain(segment: str, out: list[int]) -> None:
        pieces = words(segment)
        found = list(map(cache.get, pieces))  # the loop runs in C; misses are rare after the first records
        if None in found:
            if len(cache) >= CACHE_LIMIT:
                cache.clear()
            for i, piece in enumerate(pieces):
                if found[i] is None:
                    found[i] = cache[piece] = backend_encode(piece, add_special_tokens=False).ids
        out.extend(chain.from_iterable(found))

    def encode(text: str) -> list[int]:
        out: list[int] = []
        if added_split is None:
            encode_plain(text, out)
            return out
        parts = added_split(text)  # [plain, added token, plain, ...]: one C call for the common no-token case
        for i, part in enumerate(parts):
            if i % 2:
                out.append(added_ids[part])
            elif part:
                encode_plain(part, out)
        return out

    return encode


__all__ = ["piece_encoder", "split_patterns"]
