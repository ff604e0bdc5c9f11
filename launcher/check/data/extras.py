"""The checks of a record's extra columns, the same for both formats: tools, the system column, and media
items: their count against the placeholders in the text (LF's mm_plugin raises when they differ), and each
path where LF's converter looks for it (`_find_medias`: media_dir/path when that is a file, else the path as
written; PIL, av or torchaudio then open it and raise FileNotFoundError when it is not there). Where to
look is launcher.check.data.files.MediaFinder's, handed in as `ck.media_finder`.
"""

from __future__ import annotations

from launcher.check.data.templated import templated_problem
from launcher.check.data.verdicts import (
    CRASH,
    KEPT,
    PLACEHOLDERS,
    Problem,
    describe,
    tools_problem,
    worst,
)
from launcher.check.diagnostics import ERROR


def explain_extras(ck, rec: dict, out: list) -> str:
    """tools, the system column, media counts and media files: the same for both formats."""
    verdict = KEPT
    c = ck.c
    if c["tools"]:
        found = tools_problem(rec.get(c["tools"]), c["tools"])
        if found:
            out.append(found[0])
            verdict = CRASH
    system = rec.get(c["system"]) if c["system"] else None
    if system is not None and not isinstance(system, str):
        out.append(Problem(ERROR, "value-type", c["system"],
                           f"'{c['system']}' must be a string but got {describe(system)}"))
        verdict = CRASH
    templated = templated_problem(system, c["system"]) if c["system"] else None
    if templated:
        out.append(templated)
    for name, col in ck.media:
        verdict = worst(verdict, _media(ck, rec, name, col, out))
    return verdict


FRAME_ERROR = "'Invalid image found in video frames'"  # mm_plugin's check of a video given as frame files


def _media(ck, rec: dict, name: str, col: str, out: list) -> str:
    value = rec.get(col)
    count = 0 if value is None else len(value) if isinstance(value, list) else 1
    placeholder = PLACEHOLDERS[name]
    prompt, answers = _texts(ck, rec)
    base = sum(text.count(placeholder) for text in prompt if isinstance(text, str))
    for answer in answers or [""]:
        found = base + (answer.count(placeholder) if isinstance(answer, str) else 0)
        if found != count:
            out.append(Problem(ERROR, "media-count", col, f"'{col}' has {count} item(s) but the text has {found} "
                               f"{placeholder} placeholder(s); LLaMA-Factory raises 'The number of {name} does not "
                               f"match the number of {placeholder} tokens'",
                               f"put one {placeholder} in the text per item of '{col}'"))
            return CRASH
    return _media_files(ck, value, name, col, out)


def _media_files(ck, value: object, kind: str, col: str, out: list) -> str:
    """The first media path (video frames included) that is not a file where LF looks for it."""
    if ck.media_finder is None:
        return KEPT
    items = value if isinstance(value, list) else [value]
    for index, item in enumerate(items):
        frames = item if isinstance(item, list) else [item]
        for frame in frames:
            if isinstance(frame, str) and not ck.media_finder.exists(frame, kind):
                where = f"{col}[{index}]" if isinstance(value, list) else col
                out.append(Problem(ERROR, "media-missing", where, f"{where} '{frame}' is not a file in media_dir "
                                   f"({ck.media_finder.media_dir}) or the launch folder; LLaMA-Factory fails when "
                                   f"it opens it ({FRAME_ERROR if frames is item else 'FileNotFoundError'})",
                                   "put the file in media_dir (dataset_dir unless the config sets media_dir), or "
                                   "write its absolute path"))
                return CRASH
    return KEPT


def _texts(ck, rec: dict) -> tuple[list, list]:
    """(prompt texts, one text per answer) of a record, for placeholder counts."""
    c, content = ck.c, ck.t["content_tag"]
    if ck.sharegpt:
        msgs = rec.get(c["messages"]) or []
        prompt = [m.get(content) for m in msgs if isinstance(m, dict)]
        if ck.mode == "kto":
            return prompt[:-1], prompt[-1:]
        answers = [rec.get(c[key]) for key in ("chosen", "rejected") if c[key]]
        return prompt, [a.get(content) if isinstance(a, dict) else a for a in answers]
    prompt = [rec.get(c[key]) for key in ("prompt", "query") if c[key]]
    history = rec.get(c["history"]) if c["history"] else None
    if isinstance(history, list):
        prompt += [text for pair in history if isinstance(pair, list) for text in pair]
    keys = ("response",) if ck.mode == "kto" else ("chosen", "rejected")
    return prompt, [rec.get(c[key]) for key in keys if c[key]]


__all__ = ["explain_extras"]
