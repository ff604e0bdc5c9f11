"""The committed JSON Schemas: generated from LLaMA-Factory without drift, tied to the loss registry,
resolved locally, and in agreement with the fast path that `validate` uses for clean configs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from launcher.check import schemas
from launcher.check.config import load_config
from launcher.check.data import dataset_info
from launcher.lf.losses import PREF_LOSS_NAMES

from support.cli import CASES, REPO, cli_env

SHIPPED_CONFIGS = sorted((REPO / "config").glob("*.yaml")) + sorted((REPO / "config").glob("*.yml"))
CASE_CONFIGS = sorted(path for path in (CASES / "config").glob("*/*/config.*"))
MODELINE = "# yaml-language-server: $schema=../schemas/dpo-config.schema.json"
INIT_FALSE_AND_COMPUTED = {"compute_dtype", "device_map", "model_max_length", "block_diag_attn", "use_ref_model"}


def schema_errors(values: dict) -> list[str]:
    return [error.message for error in schemas.validator().iter_errors(values)]


@pytest.mark.subprocess
def test_committed_schemas_match_a_fresh_generation_from_the_installed_llamafactory(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "generate_schema.py"), "--output-dir",
                             str(tmp_path)], capture_output=True, text=True, timeout=600, env=cli_env(), check=False)

    assert result.returncode == 0, result.stderr
    for name in (schemas.LF_SCHEMA, schemas.DPO_SCHEMA):
        committed = (REPO / "schemas" / name).read_text(encoding="utf-8")
        assert (tmp_path / name).read_text(encoding="utf-8") == committed, f"{name} drifted: rerun the script"


def test_pref_loss_enum_in_both_schemas_is_the_loss_registry():
    dpo_rules = schemas.load_schema(schemas.DPO_SCHEMA)["allOf"][1]

    assert dpo_rules["properties"]["pref_loss"]["enum"] == list(PREF_LOSS_NAMES)
    assert schemas.lf_properties()["pref_loss"]["enum"] == list(PREF_LOSS_NAMES)


def test_schema_covers_all_five_argument_groups_and_forbids_other_keys():
    lf = schemas.load_schema(schemas.LF_SCHEMA)

    assert set(lf["x-groups"]) == {"ModelArguments", "DataArguments", "TrainingArguments",
                                   "FinetuningArguments", "GeneratingArguments"}
    assert sum(lf["x-groups"].values()) == len(lf["properties"])
    assert lf["additionalProperties"] is False
    assert {"pref_beta", "learning_rate", "overwrite_output_dir", "cutoff_len", "max_length"} <= set(lf["properties"])


def test_computed_names_are_recorded_as_not_settable_and_are_not_properties():
    assert INIT_FALSE_AND_COMPUTED <= set(schemas.not_settable())
    assert not INIT_FALSE_AND_COMPUTED & set(schemas.lf_properties())


@pytest.mark.parametrize("key", ["adapter_name_or_path", "ref_model_adapters"])
def test_keys_llamafactory_splits_with_str_split_reject_lists(key):
    base = {"model_name_or_path": "m", "stage": "dpo"}

    assert schema_errors({**base, key: "a,b"}) == []
    assert schema_errors({**base, key: ["a", "b"]}) == ["['a', 'b'] is not of type 'null', 'string'"]


def test_comma_split_keys_that_llamafactory_passes_through_accept_lists():
    config = {"model_name_or_path": "m", "stage": "dpo", "dataset": ["a", "b"], "lora_target": ["q_proj"],
              "interleave_probs": [0.5, "0.5"]}

    assert schema_errors(config) == []


def test_quantization_bits_depend_on_the_method():
    base = {"model_name_or_path": "m", "stage": "dpo"}

    assert schema_errors({**base, "quantization_bit": 4}) == []
    assert schema_errors({**base, "quantization_bit": 3}) == ["3 is not one of [4, 8, None]"]
    assert schema_errors({**base, "quantization_bit": 3, "quantization_method": "hqq"}) == []
    assert schema_errors({**base, "quantization_bit": 4, "quantization_method": "eetq"}) == [
        "4 is not one of [8, None]"]


def test_template_enum_lists_the_registered_templates():
    templates = schemas.lf_properties()["template"]["enum"]

    assert {"llama3", "qwen3", "chatml", "default", "empty", None} <= set(templates)


def test_references_resolve_from_local_files_and_nothing_is_fetched():
    from referencing.exceptions import Unresolvable

    assert schemas.registry().contents(schemas.LF_SCHEMA)["additionalProperties"] is False
    with pytest.raises(Unresolvable):
        schemas.registry().resolver().lookup("https://example.com/not-local.schema.json")


@pytest.mark.parametrize("config", SHIPPED_CONFIGS, ids=lambda path: path.name)
def test_every_shipped_config_validates_against_the_schema_and_names_it_in_a_modeline(config):
    loaded = load_config(config)

    assert schema_errors(loaded.values) == []
    assert MODELINE in config.read_text(encoding="utf-8").splitlines()
    assert (config.parent / "../schemas/dpo-config.schema.json").resolve().is_file()


@pytest.mark.parametrize("config", CASE_CONFIGS + SHIPPED_CONFIGS,
                         ids=lambda path: str(path.relative_to(REPO)))
def test_fast_path_agrees_with_jsonschema_on_every_case_config(config):
    values = load_config(config).values

    assert schemas.is_valid(values) == (schema_errors(values) == [])


@pytest.mark.parametrize("value", [True, 1, 4.0, 0, -1, "4", None, [4], {"a": 4}])
def test_fast_path_agrees_with_jsonschema_on_json_type_corner_cases(value):
    for key in ("quantization_bit", "pref_beta", "do_train", "dataset", "val_size", "stage", "deepspeed"):
        values = {"model_name_or_path": "m", "stage": "dpo", key: value}

        assert schemas.is_valid(values) == (schema_errors(values) == []), (key, value)


def test_schema_files_are_deterministic_json_with_sorted_keys():
    for name in (schemas.LF_SCHEMA, schemas.DPO_SCHEMA):
        text = (REPO / "schemas" / name).read_text(encoding="utf-8")

        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@pytest.mark.subprocess
def test_a_clean_config_is_checked_without_importing_jsonschema():
    config = CASES / "config" / "valid" / "dpo-lora" / "config.yaml"
    probe = ("import sys; from launcher.check.config import load_config; from launcher.check.config_schema import "
             f"check_config_schema; found = check_config_schema(load_config({str(config)!r})); "
             "print(len(found), 'jsonschema' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=cli_env(), timeout=60,
                            check=False)

    assert result.stdout == "0 False\n", result.stderr


def test_non_finite_numbers_are_range_errors():
    from launcher.check.config_schema import non_finite_numbers

    loaded = load_config(CASES / "config" / "valid" / "dpo-lora" / "config.yaml",
                         ["pref_beta=.inf", "learning_rate=.nan"])

    assert [d.render() for d in non_finite_numbers(loaded)] == [
        "<command line>: error[range]: pref_beta: expected a finite number but got .inf (write a number)",
        "<command line>: error[range]: learning_rate: expected a finite number but got .nan (write a number)",
    ]


DATASET_INFOS = sorted(path for path in REPO.glob("**/dataset_info.json") if ".venv" not in path.parts)
ENTRY_FIELDS = list(schemas.load_schema("dataset_info.schema.json")["$defs"]["entry"]["properties"])


def dataset_info_errors(info: object) -> list[str]:
    return [error.message for error in dataset_info.validator().iter_errors(info)]


@pytest.mark.parametrize("path", DATASET_INFOS, ids=lambda path: str(path.relative_to(REPO)))
def test_fast_path_agrees_with_jsonschema_on_every_dataset_info_in_the_repository(path):
    info = json.loads(path.read_text(encoding="utf-8"))

    assert schemas.is_valid(info, "dataset_info.schema.json") == (dataset_info_errors(info) == [])


@pytest.mark.parametrize("value", [True, 1, 0.5, "x", "s3://bucket/a.jsonl", "http://a", None, [], ["x"], {},
                                   {"prompt": "p"}, {"prompt": 1}, {"role_tag": "from"}, {"role_tag": None}])
def test_fast_path_agrees_with_jsonschema_on_dataset_info_corner_cases(value):
    """Every field of an entry with values of every JSON type (the `$ref`s into $defs, the cloud_file_name
    pattern, the enums), and entries that are not objects."""
    for info in [{"d": {"file_name": "a.json", field: value}} for field in ENTRY_FIELDS] + [{"d": value}, value]:
        assert schemas.is_valid(info, "dataset_info.schema.json") == (dataset_info_errors(info) == []), info
    assert DATASET_INFOS and any(schemas.is_valid(json.loads(path.read_text(encoding="utf-8")),
                                                  "dataset_info.schema.json") for path in DATASET_INFOS)


def test_fast_path_resolves_a_pointer_in_the_schema_file_a_reference_led_to(monkeypatch):
    """A "#/..." $ref points into the file it is written in: after a $ref to another file, that file's own
    definitions, and back in the first file its own again (no shipped schema nests them so)."""
    files = {
        "outer.json": {"properties": {"inner": {"$ref": "inner.json"}, "mode": {"$ref": "#/$defs/mode"}},
                       "$defs": {"mode": {"enum": ["a", "b"]}}},
        "inner.json": {"properties": {"beta": {"$ref": "#/$defs/beta"}}, "$defs": {"beta": {"type": "number"}}},
        # points at a definition only outer.json has: not resolved (False: jsonschema then says what is wrong)
        "stray.json": {"$ref": "outer.json", "properties": {"mode": {"$ref": "#/$defs/mode"}}},
    }
    monkeypatch.setattr(schemas, "load_schema", files.__getitem__)
    assert schemas.is_valid({"inner": {"beta": 0.1}, "mode": "a"}, "outer.json")
    assert not schemas.is_valid({"inner": {"beta": "high"}, "mode": "a"}, "outer.json")
    assert not schemas.is_valid({"inner": {"beta": 0.1}, "mode": "c"}, "outer.json")
    assert not schemas.is_valid({"mode": "a"}, "stray.json")
