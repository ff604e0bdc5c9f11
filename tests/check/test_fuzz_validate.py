"""Property-based fuzzing of `validate`: mutated configs and records never raise, never hang, and every error
is located (file plus line or record, or a file-level problem such as an unreadable file or a missing key).

Fixed seeds (derandomize=True) and bounded example counts keep this under a minute on 2 cores; the long run
with the same generators is bench/fuzz_long.py. The generators take a `random.Random` so both share them.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_adversarial_inputs import CONFIG, GOOD, make_workspace

from launcher.check.diagnostics import ERROR, Diagnostic
from launcher.check.validation import validate

from support.cli import run_main

# Errors about a whole file or a key that is absent have no line to point at.
FILE_LEVEL_CODES = {"config-unreadable", "config-empty", "json-syntax", "yaml-syntax", "required", "data-unreadable",
                    "dataset-info-missing", "duplicate-key"}
FUZZ = settings(derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def examples(per_hundred: int) -> int:
    """`per_hundred` examples per 100 of the active Hypothesis profile: the default profile (`make test`) runs
    them all, `make test-fast` (--hypothesis-profile=fast, tests/conftest.py) a tenth."""
    return max(1, per_hundred * settings.default.max_examples // 100)
BASE = yaml.safe_load(CONFIG)
KEYS = list(BASE) + ["pref_loss", "pref_beta", "lora_target", "eval_dataset", "dataset_dir", "ref_model", "bf16",
                     "deepspeed", "cutoff_len", "num_train_epochs", "trust_remote_code", "pref_ftx", "kto_tag"]
ROLES = ["human", "gpt", "user", "assistant", "system", "observation", "function_call", "", "HUMAN", "tool", None, 1]
JSON_SCALARS = [None, True, False, 0, -1, 1.5, 1e309, "", "x", "dpo", "sigmoid", "\u202e\U0001f600", "${oops}",
                "a" * 300, "data", "../../etc/passwd", "0.1", [], {}]


def check_located(diagnostics: list[Diagnostic]) -> None:
    for d in diagnostics:
        assert isinstance(d, Diagnostic) and d.severity in ("error", "warning", "note")
        if d.severity != ERROR:
            continue
        assert d.file, d
        assert d.line is not None or d.record is not None or d.code in FILE_LEVEL_CODES, d.render()


# ---------------------------------------------------------------- generators (shared with bench/fuzz_long.py)

def random_value(rng: random.Random, depth: int = 0) -> object:
    roll = rng.random()
    if depth > 3 or roll < 0.6:
        return rng.choice(JSON_SCALARS + [rng.uniform(-1e6, 1e6), rng.randint(-2**70, 2**70), random_text(rng)])
    if roll < 0.8:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {random_text(rng, 8) or "k": random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def random_text(rng: random.Random, size: int = 20) -> str:
    alphabet = string.printable + "äß中\u0000\u00a0\ufeff\U0001f4a5:-[]{}&*!|>'\"#%@`"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, size)))


def mutate_bytes(rng: random.Random, data: bytes, edits: int) -> bytes:
    out = bytearray(data)
    for _ in range(edits):
        where = rng.randint(0, len(out))
        action = rng.random()
        if action < 0.4 and out:
            del out[where:where + rng.randint(1, 8)]
        elif action < 0.8:
            out[where:where] = rng.choice([b"{", b"}", b"[", b"]", b":", b",", b'"', b"\n", b"  ", b"\t", b"&a ",
                                           b"*a", b"!!python/object:os.system ", b"\xff", b"\xef\xbb\xbf", b"\x00",
                                           b"- ", b"? ", b"%YAML 1.1\n", b"---\n", b"${x}", b"NaN", b".inf"])
        else:
            out[where:where] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
    return bytes(out)


def config_text(rng: random.Random) -> bytes:
    """One config: a structured mutation of the base, a textual mutation of its YAML, or noise."""
    kind = rng.random()
    if kind < 0.45:
        values = dict(BASE)
        for _ in range(rng.randint(1, 4)):
            key = rng.choice(KEYS + [random_text(rng, 12)])
            if rng.random() < 0.2:
                values.pop(key, None)
            else:
                values[key] = random_value(rng)
        text = json.dumps(values) if rng.random() < 0.2 else yaml.safe_dump(values, allow_unicode=True)
        return text.encode("utf-8", "surrogatepass")
    if kind < 0.85:
        return mutate_bytes(rng, CONFIG.encode(), rng.randint(1, 6))
    if kind < 0.95:
        return random_text(rng, 200).encode("utf-8", "surrogatepass")
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))


def random_message(rng: random.Random) -> object:
    if rng.random() < 0.1:
        return random_value(rng)
    message = {"from": rng.choice(ROLES), "value": rng.choice(["hi", "", None, 3, ["x"], random_text(rng)])}
    if rng.random() < 0.1:
        message = {random_text(rng, 6): v for v in message.values()}
    return message


def random_record(rng: random.Random) -> object:
    record = json.loads(json.dumps(GOOD))
    for _ in range(rng.randint(0, 3)):
        roll = rng.random()
        if roll < 0.3:
            record["conversations"] = [random_message(rng) for _ in range(rng.randint(0, 4))]
        elif roll < 0.5:
            record[rng.choice(["chosen", "rejected"])] = rng.choice([random_message(rng), "text", None, []])
        elif roll < 0.6:
            record.pop(rng.choice(list(record) or ["x"]), None)
        elif roll < 0.7:
            record[rng.choice(["system", "tools", "images", random_text(rng, 6)])] = random_value(rng)
        elif roll < 0.75:
            return random_value(rng)
    return record


def data_bytes(rng: random.Random, count: int) -> bytes:
    """`count` records as JSON Lines or a JSON array, sometimes mangled or re-encoded."""
    records = [random_record(rng) for _ in range(count)]
    if rng.random() < 0.3:
        text = json.dumps(records, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 1]))
    else:
        text = "".join(json.dumps(r, ensure_ascii=rng.random() < 0.5) + "\n" for r in records)
    data = text.encode("utf-8", "surrogatepass")
    roll = rng.random()
    if roll < 0.25:
        data = mutate_bytes(rng, data, rng.randint(1, 4))
    elif roll < 0.3:
        data = text.encode(rng.choice(["utf-16", "latin-1", "utf-8-sig"]), "replace")
    return data


def validate_config_bytes(root: Path, data: bytes, suffix: str = ".yaml") -> list[Diagnostic]:
    path = root / f"fuzz{suffix}"
    path.write_bytes(data)
    return validate(path, cwd=root).diagnostics


def validate_data_bytes(root: Path, data: bytes) -> list[Diagnostic]:
    (root / "data" / "prefs.jsonl").write_bytes(data)
    return validate(root / "c.yaml", cwd=root).diagnostics


# ---------------------------------------------------------------- properties

@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("fuzz"))


@settings(FUZZ, max_examples=examples(500))
@given(st.randoms(use_true_random=False), st.sampled_from([".yaml", ".json"]))
def test_mutated_configs_never_raise_and_every_error_is_located(workspace, rng, suffix):
    check_located(validate_config_bytes(workspace, config_text(rng), suffix))


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                      max_size=4), max_leaves=12)


@settings(FUZZ, max_examples=examples(250))
@given(st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=15), JSON_VALUES, max_size=6))
def test_configs_with_any_keys_and_value_types_never_raise(workspace, changes):
    text = yaml.safe_dump({**BASE, **changes}, allow_unicode=True)
    check_located(validate_config_bytes(workspace, text.encode("utf-8", "surrogatepass")))


@settings(FUZZ, max_examples=examples(200))
@given(st.text(max_size=300))
def test_random_unicode_as_a_config_never_raises(workspace, text):
    check_located(validate_config_bytes(workspace, text.encode("utf-8", "surrogatepass")))


@settings(FUZZ, max_examples=examples(200))
@given(st.binary(max_size=300))
def test_random_bytes_as_a_config_never_raise(workspace, data):
    check_located(validate_config_bytes(workspace, data))


@settings(FUZZ, max_examples=examples(300))
@given(st.randoms(use_true_random=False))
def test_mutated_records_never_raise_and_every_error_is_located(workspace, rng):
    check_located(validate_data_bytes(workspace, data_bytes(rng, rng.randint(1, 20))))


@settings(FUZZ, max_examples=examples(200))
@given(st.lists(JSON_VALUES, max_size=8), st.booleans())
def test_records_of_any_json_type_never_raise(workspace, records, as_array):
    text = json.dumps(records) if as_array else "".join(json.dumps(r) + "\n" for r in records)
    check_located(validate_data_bytes(workspace, text.encode("utf-8", "surrogatepass")))


@settings(FUZZ, max_examples=examples(200))
@given(st.binary(max_size=400))
def test_random_bytes_as_a_data_file_never_raise(workspace, data):
    check_located(validate_data_bytes(workspace, data))


@pytest.mark.parametrize("seed", range(6))
def test_cli_exits_zero_or_one_without_a_traceback_on_fuzzed_files(tmp_path, seed):
    rng = random.Random(seed)
    root = make_workspace(tmp_path)
    (root / "fuzz.yaml").write_bytes(config_text(rng) if seed % 2 else CONFIG.encode())
    (root / "data" / "prefs.jsonl").write_bytes(data_bytes(rng, 10))
    for output_format in ("text", "json"):
        done = run_main("validate", "fuzz.yaml", "--format", output_format, cwd=root, timeout=60)
        assert done.returncode in (0, 1), done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        if output_format == "json":
            assert json.loads(done.stdout)["ok"] is (done.returncode == 0)
