"""The preference record as a JSON Schema (launcher/check/data/record_schema.py) against the fast paths of
launcher/check/data/records.py, over records hypothesis generates:

- on records that satisfy every rule the schema leaves to code (roles alternate from the user, the turn count's
  parity, a system message only first, chosen != rejected, tools valid JSON, no template markers), the schema
  (validated by python-jsonschema) and the fast path agree on every record;
- on any record, the schema never rejects a record the fast path accepts.
The mutations generated are those of the schema's words: types, required keys, role values, empty contents.
"""

from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from launcher.check.data.record_schema import SHIPPED, SchemaUnavailable, record_schema, shipped_schema
from launcher.check.data.records import RecordChecker
from launcher.check.data.verdicts import Attr
from launcher.check.schemas import schema_dir

CUSTOM = ({"formatting": "sharegpt", "ranking": True,
           "columns": {"messages": "messages", "chosen": "better", "rejected": "worse", "system": "sys",
                       "tools": "tools"},
           "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                    "observation_tag": "tool", "function_tag": "call"}}, "pairwise")  # no system_tag
ALPACA_KTO = ({"columns": {"prompt": "instruction", "query": "input", "response": "output", "kto_tag": "label"}},
              "kto")
ENTRIES = {name.removesuffix(".schema.json"): SHIPPED[name] for name in SHIPPED} | {
    "custom-sharegpt": CUSTOM, "alpaca-kto": ALPACA_KTO}
TEXT = st.text(alphabet="abcdefghij XYZ 0123456789.?!", min_size=1, max_size=12)  # no '<' or '[': no markers
# Role names seen in the wild: those an entry does not declare are invalid anywhere, the declared ones in an
# answer unless they are the assistant's or function's.
ROLE_WORDS = ("user", "assistant", "human", "gpt", "system", "tool", "function", "observation", "function_call",
              "bot", "model", "ipython")
JUNK = st.one_of(st.none(), st.integers(), st.booleans(), st.just(""), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.just("k"), st.integers(), max_size=1), st.just("bogus-role"))


class Shape:
    """Builds records of one entry, valid for the code-only rules, and mutates them."""

    def __init__(self, entry: dict, mode: str):
        self.attr, self.mode = Attr.from_entry(entry), mode
        self.c, self.t = self.attr.columns, self.attr.tags
        self.sharegpt = self.attr.formatting == "sharegpt"
        declared = [v for n, v in self.t.items() if v and n not in ("role_tag", "content_tag")]
        self.undeclared = [word for word in ROLE_WORDS if word not in declared]
        self.not_answers = [v for v in declared if v not in (self.t["assistant_tag"], self.t["function_tag"])]

    def message(self, role: str, text: str) -> dict:
        return {self.t["role_tag"]: role, self.t["content_tag"]: text}


@st.composite
def sharegpt_record(draw, shape: Shape) -> dict:
    t, c = shape.t, shape.c
    turns = draw(st.integers(0, 2)) * 2 + (1 if shape.mode == "pairwise" else 2)
    even = [t[n] for n in ("user_tag", "observation_tag") if t[n]]
    odd = [t[n] for n in ("assistant_tag", "function_tag") if t[n]]
    messages = [shape.message(draw(st.sampled_from(odd if i % 2 else even)), draw(TEXT)) for i in range(turns)]
    if t["system_tag"] and draw(st.booleans()):
        messages.insert(0, shape.message(t["system_tag"], draw(st.sampled_from(["", "Be brief."]))))
    record = {c["messages"]: messages}
    if shape.mode == "kto":
        record[c["kto_tag"]] = draw(st.booleans())
    else:
        chosen = draw(TEXT)
        record[c["chosen"]] = shape.message(draw(st.sampled_from(odd)), chosen)
        record[c["rejected"]] = shape.message(draw(st.sampled_from(odd)), draw(TEXT.filter(lambda x: x != chosen)))
    return record | draw(extras(shape))


@st.composite
def alpaca_record(draw, shape: Shape) -> dict:
    c = shape.c
    record: dict = {}
    for col in (c["prompt"], c["query"]):
        if col and draw(st.booleans()):
            record[col] = draw(st.one_of(st.none(), TEXT))
    if not any(isinstance(v, str) for v in record.values()):
        record[c["prompt"]] = draw(TEXT)
    if c["history"] and draw(st.booleans()):
        record[c["history"]] = draw(st.one_of(st.none(), st.lists(st.tuples(TEXT, TEXT).map(list), max_size=2)))
    if shape.mode == "kto":
        record |= {c["response"]: draw(TEXT), c["kto_tag"]: draw(st.booleans())}
    else:
        chosen = draw(TEXT)
        record |= {c["chosen"]: chosen, c["rejected"]: draw(TEXT.filter(lambda x: x != chosen))}
    return record | draw(extras(shape))


@st.composite
def extras(draw, shape: Shape) -> dict:
    found = {"extra_column": draw(st.integers())} if draw(st.booleans()) else {}
    if shape.c["system"] and draw(st.booleans()):
        found[shape.c["system"]] = draw(st.one_of(st.none(), TEXT))
    if shape.c["tools"] and draw(st.booleans()):
        found[shape.c["tools"]] = draw(st.sampled_from([None, "", '[{"name": "f"}]']))
    return found


def paths(value: object, prefix: tuple = ()) -> list[tuple]:
    """Every key/index path inside a record (the places a mutation may hit)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, prefix + (index,))
    return found


@st.composite
def mutated(draw, shape: Shape, record: dict, code_only: bool) -> dict:
    """Up to three mutations of the schema's words (types, required keys, role values, empty contents); with
    code_only also roles moved to another valid slot, turns deleted, identical answers, invalid tools JSON and
    template markers. The kind is drawn first, then a place it applies to."""
    record = json.loads(json.dumps(record))
    kinds = ["replace", "delete", "empty", "role-word"] + (["valid-role", "marker", "tools", "same"] if code_only
                                                           else [])
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):  # one change most often: the rest stays valid
        kind = draw(st.sampled_from(kinds))
        targets = [path for path in paths(record) if applies(shape, kind, path, code_only)]
        if not targets:
            continue
        path = draw(st.sampled_from(targets))
        parent = record
        for step in path[:-1]:
            parent = parent[step]
        answer = len(path) == 2 and path[0] in (shape.c["chosen"], shape.c["rejected"])
        mutate(draw, shape, record, parent, path[-1], kind, answer)
    return record


def applies(shape: Shape, kind: str, path: tuple, code_only: bool) -> bool:
    if kind in ("role-word", "valid-role"):
        return shape.sharegpt and path[-1] == shape.t["role_tag"]
    if kind == "delete":  # deleting a turn changes the turn count's parity: a rule of the code's
        return code_only or isinstance(path[-1], str)
    return True


def mutate(draw, shape: Shape, record: dict, parent, key, kind: str, answer: bool) -> None:
    if kind == "role-word" and shape.sharegpt and key == shape.t["role_tag"]:
        parent[key] = draw(st.sampled_from(shape.undeclared + (shape.not_answers if answer else [])))
    elif kind == "delete":
        del parent[key]
    elif kind == "replace":
        parent[key] = draw(JUNK)
    elif kind == "empty":
        parent[key] = "" if isinstance(parent[key], str) else [] if isinstance(parent[key], list) else {}
    elif kind == "valid-role":
        parent[key] = draw(st.sampled_from([v for n, v in shape.t.items() if v and n.endswith("_tag")
                                            and n not in ("role_tag", "content_tag")]))
    elif kind == "marker" and isinstance(parent[key], str):
        parent[key] += " <|im_start|>"
    elif kind == "tools" and shape.c["tools"]:
        record[shape.c["tools"]] = "[{"
    elif kind == "same" and not shape.sharegpt and shape.mode == "pairwise":
        record[shape.c["rejected"]] = record.get(shape.c["chosen"])


def breaks_a_code_only_rule(shape: Shape, record: dict) -> bool:
    """Two mutations can still reach a rule the schema leaves to code: equal answers, tools that are not JSON."""
    c, content = shape.c, shape.t["content_tag"]
    answers = [record.get(c[key]) for key in ("chosen", "rejected") if c[key]]
    if shape.sharegpt:
        answers = [a.get(content) if isinstance(a, dict) else None for a in answers]
    if len(answers) == 2 and isinstance(answers[0], str) and answers[0] == answers[1]:
        return True
    tools = record.get(c["tools"]) if c["tools"] else None
    if isinstance(tools, str) and tools:
        try:
            json.loads(tools)
        except ValueError:
            return True
    return False


def schema_of(name: str) -> dict:
    entry, mode = ENTRIES[name]
    return record_schema(entry, mode, name)


def shape_of(name: str) -> Shape:
    entry, mode = ENTRIES[name]
    return Shape(entry, mode)


def agree(name: str, record: dict) -> tuple[bool, bool]:
    entry, mode = ENTRIES[name]
    fast = RecordChecker(Attr.from_entry(entry), mode).fast(record)
    return fast, jsonschema.Draft202012Validator(schema_of(name)).is_valid(record)


def records(name: str, code_only: bool):
    entry, mode = ENTRIES[name]
    shape = Shape(entry, mode)
    base = sharegpt_record(shape) if shape.sharegpt else alpaca_record(shape)
    return base.flatmap(lambda record: mutated(shape, record, code_only))


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_the_schema_and_the_fast_path_agree_on_records_that_pass_the_code_only_rules(name):
    @SETTINGS
    @given(records(name, code_only=False))
    def check(record):
        assume(not breaks_a_code_only_rule(shape_of(name), record))
        fast, valid = agree(name, record)
        assert fast == valid, record

    check()


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_the_schema_never_rejects_a_record_the_fast_path_accepts(name):
    @SETTINGS
    @given(records(name, code_only=True))
    def check(record):
        fast, valid = agree(name, record)
        assert valid or not fast, record

    check()


# Every value a single change puts in a place of a valid record (besides deleting the key).
VALUES = (None, 0, 1.5, True, False, "", "text", [], [1], ["a", "b"], {}, {"k": 1}) + ROLE_WORDS


def valid_records(shape: Shape) -> list[dict]:
    """Valid records of an entry: one turn and three (after a system prompt where the tags have one), with all
    the optional columns."""
    c, t = shape.c, shape.t
    found = []
    for turns in ((["Q"], ["Q", "A", "Q2"]) if shape.mode == "pairwise" else (["Q", "A"], ["Q", "A", "Q2", "A2"])):
        if shape.sharegpt:
            roles = [t["user_tag"] if i % 2 == 0 else t["assistant_tag"] for i in range(len(turns))]
            messages = [shape.message(role, text) for role, text in zip(roles, turns, strict=True)]
            if t["system_tag"]:
                messages.insert(0, shape.message(t["system_tag"], "S"))
            record = {c["messages"]: messages}
            answers = (shape.message(t["assistant_tag"], "good"), shape.message(t["assistant_tag"], "bad"))
        else:
            record = {c["prompt"]: turns[0], c["query"]: "x"} | (
                {c["history"]: [["h", "a"]]} if c["history"] else {})
            answers = ("good", "bad")
        if shape.mode == "kto":
            record |= {c["kto_tag"]: True} | ({} if shape.sharegpt else {c["response"]: "good"})
        else:
            record |= {c["chosen"]: answers[0], c["rejected"]: answers[1]}
        record |= {col: value for col, value in ((c["system"], "S"), (c["tools"], "[]")) if col}
        found.append(record)
    return found


def single_changes(shape: Shape, record: dict):
    """Every record one change away: a value of VALUES anywhere, a key deleted, an item appended to a list; a
    turn's role only to names the entry does not declare, and no turn added or deleted (alternation and parity
    are the code's)."""
    for path in paths(record):
        parent = record
        for step in path[:-1]:
            parent = parent[step]
        turn_role = shape.sharegpt and path[-1] == shape.t["role_tag"] and path[0] == shape.c["messages"]
        values = [v for v in VALUES if not (turn_role and isinstance(v, str) and v not in shape.undeclared)]
        grows = isinstance(parent[path[-1]], list) and path != (shape.c["messages"],)
        for value in values + ["<delete>"] + (["<append>"] if grows else []):
            if value == "<delete>" and isinstance(parent, list):
                continue
            changed = json.loads(json.dumps(record))
            target = changed
            for step in path[:-1]:
                target = target[step]
            if value == "<delete>":
                del target[path[-1]]
            elif value == "<append>":
                target[path[-1]].append("more")
            else:
                target[path[-1]] = value
            yield path, value, changed


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_every_single_change_of_a_valid_record_is_judged_alike_by_the_schema_and_the_fast_path(name):
    shape = shape_of(name)
    disagreements, judged = [], 0
    for record in valid_records(shape):
        assert agree(name, record) == (True, True), record
        for path, value, changed in single_changes(shape, record):
            if breaks_a_code_only_rule(shape, changed):
                continue
            judged += 1
            fast, valid = agree(name, changed)
            if fast != valid:
                disagreements.append((path, value, fast, valid))
    assert disagreements == [] and judged > 100


@pytest.mark.parametrize("file_name", sorted(SHIPPED))
def test_the_shipped_schema_files_are_the_generated_ones(file_name):
    """scripts/generate_record_schemas.py writes them; regenerate after changing record_schema.py."""
    shipped = json.loads((schema_dir() / file_name).read_text(encoding="utf-8"))
    assert shipped == shipped_schema(file_name)
    jsonschema.Draft202012Validator.check_schema(shipped)


def test_the_demo_records_are_valid_against_the_shipped_schemas():
    from support.cli import REPO

    validator = jsonschema.Draft202012Validator(shipped_schema("record-sharegpt-ranking.schema.json"))
    rows = [json.loads(line) for line in (REPO / "data/demo_dpo.jsonl").read_text().splitlines() if line.strip()]
    assert rows and [list(validator.iter_errors(row)) for row in rows] == [[] for _ in rows]


def test_an_entry_without_its_needed_columns_has_no_schema():
    with pytest.raises(SchemaUnavailable, match="the entry maps no chosen, rejected column"):
        record_schema({"formatting": "sharegpt", "columns": {"messages": "conversations"}}, "pairwise", "x")


# ------------------------------------------------------------------ dpo-launch schema

def write_info(root, entries: dict) -> None:
    (root / "data").mkdir(exist_ok=True)
    (root / "data/dataset_info.json").write_text(json.dumps(entries, indent=2))


def test_schema_prints_the_schema_of_an_entry_with_its_own_columns_and_tags(tmp_path):
    from support.cli import run_main

    entry, _ = CUSTOM
    write_info(tmp_path, {"prefs": dict(entry, file_name="prefs.jsonl")})
    done = run_main("schema", "--dataset", "prefs", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    schema = json.loads(done.stdout)
    assert schema == record_schema(dict(entry, file_name="prefs.jsonl"), "pairwise",
                                   "A record of dataset 'prefs' (data/dataset_info.json), read as pairwise data")
    validator = jsonschema.Draft202012Validator(schema)
    good = {"messages": [{"role": "user", "content": "Q"}], "better": {"role": "assistant", "content": "A"},
            "worse": {"role": "call", "content": "{}"}}
    assert validator.is_valid(good)
    assert [e.message for e in validator.iter_errors(dict(good, better={"role": "gpt", "content": "A"}))] == [
        "'gpt' is not one of ['assistant', 'call']"]


def test_schema_reads_the_dataset_dir_and_the_stage_from_a_config(tmp_path):
    from support.cli import run_main

    (tmp_path / "sets").mkdir()
    (tmp_path / "sets/dataset_info.json").write_text(json.dumps({"fb": {
        "file_name": "fb.jsonl", "formatting": "sharegpt", "ranking": True,
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "kto_tag": "label"}}}))
    (tmp_path / "kto.yaml").write_text("stage: kto\ndataset: fb\ndataset_dir: sets\n")
    done = run_main("schema", "--dataset", "fb", "--config", "kto.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["required"] == ["conversations", "label"]  # the config's stage: KTO


@pytest.mark.parametrize("args, code, message", [
    (["--dataset", "prefz"], 1, "dpo-launch schema: error: dataset 'prefz' is not defined in data/dataset_info.json "
                                "(did you mean 'prefs'?)\n"),
    (["--dataset", "plain"], 1, "dpo-launch schema: error: data/dataset_info.json: entry 'plain': the entry has "
                                "neither \"ranking\": true (pairs) nor a kto_tag column (KTO); say which with --stage "
                                "dpo or --stage kto, or --config with the config that trains it\n"),
    (["--dataset", "plain", "--stage", "dpo"], 1, "dpo-launch schema: error: data/dataset_info.json: entry 'plain': "
                                                  "the entry maps no chosen, rejected column, so no record can be "
                                                  "read in pairwise mode\n"),
    (["--dataset", "prefs", "--config", "c.yaml", "--dataset-dir", "data"], 2,
     "dpo-launch: error: --config and --dataset-dir both say where dataset_info.json is: give one\n"),
    (["--dataset", "prefs", "--dataset-dir", "nowhere"], 1, None),
])
def test_schema_refuses_what_has_no_record_schema_with_the_reason(args, code, message, tmp_path):
    from support.cli import run_main

    write_info(tmp_path, {"prefs": {"file_name": "p.jsonl", "ranking": True}, "plain": {"file_name": "p.jsonl"}})
    done = run_main("schema", *args, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (code, "")
    if message is None:
        assert done.stderr.startswith("dpo-launch schema: error: nowhere/dataset_info.json: "
                                      "error[dataset-info-missing]")
    else:
        assert done.stderr == message
