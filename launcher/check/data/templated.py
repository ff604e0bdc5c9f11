"""Text that already went through a chat template: the special tokens one template or another writes around
each turn (`<|im_start|>user`, `[INST]`, `<|begin_of_text|>`, ...). LLaMA-Factory applies the config's
`template` to every message (data/template.py, Template._encode), so such text gets the markers twice: the
model learns to emit the literal markers (a different template's, or its own where they are not special).

The fast paths test `has_marker_char` first: one memchr for '<' and one for '[' per text, ~0.1 µs for a
400-character turn; the regex runs only on texts holding one of those characters.
"""

from __future__ import annotations

import re

from launcher.check.data.verdicts import Problem
from launcher.check.diagnostics import WARNING

# marker -> the template family that writes it: turn markers of LLaMA-Factory's own templates (data/template.py;
# a test checks each is there), which are also those of the models' chat templates.
MARKERS = {
    "<|im_start|>": "ChatML (Qwen, Yi, Hermes)", "<|im_end|>": "ChatML (Qwen, Yi, Hermes)",
    "<|begin_of_text|>": "Llama 3", "<|start_header_id|>": "Llama 3", "<|end_header_id|>": "Llama 3",
    "<|eot_id|>": "Llama 3", "<|header_start|>": "Llama 4", "<|header_end|>": "Llama 4", "<|eot|>": "Llama 4",
    "[INST]": "Llama 2/Mistral", "[/INST]": "Llama 2/Mistral", "<<SYS>>": "Llama 2",
    "[SYSTEM_PROMPT]": "Mistral", "<start_of_turn>": "Gemma", "<end_of_turn>": "Gemma",
    "<|user|>": "Phi-3/Zephyr/GLM", "<|assistant|>": "Phi-3/Zephyr/GLM", "<|system|>": "Phi-3/Zephyr/GLM",
    "<|end|>": "Phi-3/gpt-oss", "<|start|>": "gpt-oss", "<|message|>": "gpt-oss", "<|channel|>": "gpt-oss",
    "<｜User｜>": "DeepSeek", "<｜Assistant｜>": "DeepSeek",
    "<|start_of_role|>": "Granite", "<|end_of_role|>": "Granite",
    "<|START_OF_TURN_TOKEN|>": "Command R", "<|END_OF_TURN_TOKEN|>": "Command R",
}
FIND_MARKER = re.compile("|".join(re.escape(marker) for marker in MARKERS)).search
TEMPLATED_HINT = "store the plain text of each turn; the config's template adds its own markers"


def has_marker(text: str) -> bool:
    """True when `text` holds a chat template's marker (cheap unless it holds '<' or '[')."""
    return ("<" in text or "[" in text) and FIND_MARKER(text) is not None


def templated_problem(text: object, path: str) -> Problem | None:
    """A warning when a string value already went through a chat template."""
    if not isinstance(text, str) or not ("<" in text or "[" in text):
        return None
    found = FIND_MARKER(text)
    if found is None:
        return None
    marker = found.group()
    return Problem(WARNING, "already-templated", path, f"{path} contains {marker!r}, a {MARKERS[marker]} chat "
                   "template marker: the text already went through a chat template, and LLaMA-Factory applies the "
                   "config's template to it again, so the model trains on the markers twice", TEMPLATED_HINT,
                   shape=f"templated:{marker}")
