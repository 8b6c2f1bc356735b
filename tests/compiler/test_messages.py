"""How validation errors are worded: what was expected and why (the field's docstring), what was
written, and what to write instead; a "did you mean" only for a close spelling; keys spelled the way
veRL / TRL / OpenRLHF spell them point at rlspec's name.

Each test runs `rlspec check` (the real CLI) on conftest.MINI with one mistake added.
"""

from __future__ import annotations

import re
import types
import typing

import pytest
import yaml
from pydantic import BaseModel

from rlspec.compiler.cli import main
from rlspec.compiler.spec import Algorithm, Optimizer, Rollout, Spec, Stage

from conftest import MINI


def messages(write_spec, capsys, text: str) -> dict[str, str]:
    """dotted path -> message, for every line `rlspec check` printed."""
    path = write_spec(text)
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    found = {}
    for line in err.splitlines():
        m = re.match(rf"^{re.escape(str(path))}:\d+:\d+ (\S+): (.*)$", line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


def one(write_spec, capsys, text: str, dotted: str) -> str:
    found = messages(write_spec, capsys, text)
    assert dotted in found, found
    return found[dotted]


# --- did you mean -----------------------------------------------------------------------------


def test_close_typo_gets_a_guess(write_spec, capsys):
    msg = one(write_spec, capsys, MINI + "rollout:\n  temprature: 0.7\n", "rollout.temprature")
    assert "(did you mean 'temperature'?)" in msg


def test_unrelated_key_gets_no_guess_but_the_valid_keys(write_spec, capsys):
    msg = one(write_spec, capsys, MINI + "rollout:\n  tp: 2\n", "rollout.tp")
    assert "did you mean" not in msg  # 'tp' shares letters with 'top_p' but is not a typo of it
    assert "valid keys here: engine, hf, max_prompt_tokens, sleep_mode, stop, temperature, top_k, top_p, vllm" in msg


def test_key_of_another_block_says_where_it_belongs(write_spec, capsys):
    text = MINI + "rollout:\n  gpu_memory_utilization: 0.5\nalgorithm:\n  temperature: 0.9\n"
    found = messages(write_spec, capsys, text)
    assert "belongs at `rollout.vllm.gpu_memory_utilization` (or `inference.bench.gpu_memory_utilization`" in \
        found["rollout.gpu_memory_utilization"]
    assert found["rollout.gpu_memory_utilization"].endswith("; write `vllm: {gpu_memory_utilization: 0.5}` here")
    assert "it belongs at `rollout.temperature`" in found["algorithm.temperature"]


# --- keys as other frameworks spell them --------------------------------------------------------


@pytest.mark.parametrize("block,key,value,expected", [
    ("algorithm", "kl_loss_coef", "0.001", "veRL's name; rlspec's is `algorithm.kl.coef`: write `kl: {coef: 0.001}` here"),
    ("algorithm", "beta", "0.04", "TRL's name; rlspec's is `algorithm.kl.coef`: write `kl: {coef: 0.04}` here"),
    ("algorithm", "epsilon_high", "0.28", "rlspec's is `algorithm.clip.high`: write `clip: {high: 0.28}` here"),
    ("algorithm", "ppo_mini_batch_size", "8", "rlspec's is `algorithm.mini_batch_size`: write `mini_batch_size: 8` here"),
    ("algorithm", "ppo_micro_batch_size_per_gpu", "2", "rlspec's is `algorithm.micro_batch_size`"),
    ("algorithm", "ppo_epochs", "2", "rlspec's is `algorithm.updates_per_batch`"),
    ("algorithm", "num_iterations", "2", "TRL's name; rlspec's is `algorithm.updates_per_batch`"),
    ("algorithm", "entropy_coeff", "0.001", "rlspec's is `algorithm.entropy_coef`"),
    ("algorithm", "loss_agg_mode", "token-mean", "rlspec's is `algorithm.loss_agg`"),
    ("rollout", "n", "8", "veRL's name; rlspec's is `stages[*].group_size`: set `group_size: 8` in each stage"),
    ("rollout", "tensor_model_parallel_size", "2", "rlspec's is `rollout.vllm.tensor_parallel_size`: write "
     "`vllm: {tensor_parallel_size: 2}` here"),
    ("rollout", "max_prompt_length", "512", "rlspec's is `rollout.max_prompt_tokens`: write `max_prompt_tokens: 512` here"),
    ("algorithm", "clip_ratio_c", "3.0", "veRL's name; rlspec's is `algorithm.clip.dual`: write `clip: {dual: 3.0}` here"),
    ("algorithm", "lr_warmup_steps", "10", "veRL counts it in batches (train steps): add `warmup_unit: batches`"),
    ("algorithm", "use_kl_loss", "true", "the KL loss is on exactly when `algorithm.kl.coef` > 0"),
])
def test_foreign_keys_point_at_rlspec_names(write_spec, capsys, block, key, value, expected):
    msg = one(write_spec, capsys, MINI + f"{block}:\n  {key}: {value}\n", f"{block}.{key}")
    assert msg.startswith(f"unknown key {key!r}: ") and expected in msg, msg


@pytest.mark.parametrize("key,expected", [
    ("num_generations", "TRL's name; rlspec's is `stages[*].group_size`: write `group_size: 8` here"),
    ("n_samples_per_prompt", "OpenRLHF's name; rlspec's is `stages[*].group_size`"),
    ("max_completion_length", "rlspec's is `stages[*].max_response_tokens`: write `max_response_tokens: 8` here"),
    ("total_epochs", "rlspec's is `stages[*].epochs`: write `epochs: 8` here"),
    ("learning_rate", "rlspec's is `algorithm.optimizer.lr`: write `algorithm: {optimizer: {lr: 8}}` here"),
])
def test_foreign_keys_in_a_stage(write_spec, capsys, key, expected):
    text = MINI.replace("    group_size: 4\n", f"    group_size: 4\n    {key}: 8\n", 1)
    msg = one(write_spec, capsys, text, f"stages[0].{key}")
    assert expected in msg, msg


def test_foreign_keys_at_the_top_and_in_a_sub_block(write_spec, capsys):
    text = MINI + "train_batch_size: 64\nalgorithm:\n  clip: {clip_ratio_low: 0.2}\n  kl: {kl_coef: 0.1}\n"
    found = messages(write_spec, capsys, text)
    assert "rlspec's is `stages[*].prompts_per_step`: set `prompts_per_step: 64` in each stage" in found["train_batch_size"]
    assert "write `low: 0.2` here" in found["algorithm.clip.clip_ratio_low"]
    assert "write `coef: 0.1` here" in found["algorithm.kl.kl_coef"]


def test_foreign_table_targets_exist():
    """Every rlspec path the table points at is a real setting (so a pointer cannot rot)."""
    from rlspec.compiler.errors import FOREIGN_KEYS
    from rlspec.compiler.walk import key_paths
    paths = {p for ps in key_paths(Spec).values() for p in ps}
    for key, entry in FOREIGN_KEYS.items():
        if entry.target:
            assert entry.target in paths, (key, entry.target)


# --- wrong types and ranges ---------------------------------------------------------------------

@pytest.mark.parametrize("yaml_text,dotted,fragments", [
    ("algorithm:\n  optimizer: {lr: {a: 1}}\n", "algorithm.optimizer.lr",
     ["expected a number in (0, 1]", "got a map {a: 1}", "write e.g. `lr: 1.0e-6`"]),
    ("algorithm:\n  optimizer: {lr: true}\n", "algorithm.optimizer.lr", ["expected a number", "got true"]),
    ("algorithm:\n  updates_per_batch: 0\n", "algorithm.updates_per_batch",
     ["expected a whole number in [1, 64] (Optimiser passes over each rollout batch", "got 0",
      "write e.g. `updates_per_batch: 1`"]),
    ("algorithm:\n  updates_per_batch: 1.5\n", "algorithm.updates_per_batch", ["expected a whole number", "got 1.5"]),
    ("algorithm:\n  filter_solved: maybe\n", "algorithm.filter_solved",
     ["expected true or false (Drop from later epochs", "got the text 'maybe'", "write e.g. `filter_solved: false`"]),
    ("description: 3\n", "description", ["expected a text", "got 3", 'write e.g. `description: "3"`']),
    ("tracking: {tags: nightly}\n", "tracking.tags", ["expected a list (Extra tags", "write e.g. `tags: [nightly]`"]),
    ("algorithm:\n  kl: 0.1\n", "algorithm.kl", ["expected a map of keys (coef, estimator, reference)", "got 0.1",
                                                  "write e.g. `kl: {coef: 0.1}`"]),
    ("algorithm:\n  loss_agg: mean\n", "algorithm.loss_agg",
     ["'mean' is not allowed; use 'token_mean', 'seq_mean_token_mean' or 'seq_mean_token_sum_norm'",
      "(How token losses become one number"]),
    ("rollout:\n  top_p: 1.5\n", "rollout.top_p", ["expected a number in (0, 1]", "got 1.5", "write e.g. `top_p: 1.0`"]),
    ("rollout:\n  temperature: 0\n", "rollout.temperature",
     ["expected a number in (0, 5] (Sampling temperature for every step)", "got 0", "write e.g. `temperature: 0.6`"]),
    ("rollout:\n  temperature: hot\n", "rollout.temperature",
     ["expected a number or a map with `kind:` one of constant, entropy_target, per_epoch", "got the text 'hot'"]),
    ("algorithm:\n  mini_batch_size: 0\n", "algorithm.mini_batch_size",
     ["expected a whole number ≥ 1 or null (Prompts per optimiser step", "got 0"]),
    ("algorithm:\n  optimizer: {betas: [0.9]}\n", "algorithm.optimizer.betas",
     ["expected a list of 2 values, got a list [0.9]", "write e.g. `betas: [0.9, 0.999]`"]),
    ("algorithm:\n  optimizer: {betas: [0.9, 1.5]}\n", "algorithm.optimizer.betas[1]", ["expected a number in [0, 1)"]),
])
def test_type_and_range_errors_say_what_to_write(write_spec, capsys, yaml_text, dotted, fragments):
    msg = one(write_spec, capsys, MINI + yaml_text, dotted)
    for fragment in fragments:
        assert fragment in msg, msg


def test_stage_range_error_names_the_bound_and_the_field(write_spec, capsys):
    text = MINI.replace("    prompts_per_step: 8\n", "    prompts_per_step: 0\n", 1)
    msg = one(write_spec, capsys, text, "stages[0].prompts_per_step")
    assert msg == "expected a whole number ≥ 1 (Prompts per rollout batch (AceReason: 128)), got 0; write e.g. " \
                  "`prompts_per_step: 128`"


def test_empty_list_says_how_many(write_spec, capsys):
    text = MINI.replace("    sources:\n      - uri: builtin://math?n=100\n", "    sources: []\n")
    msg = one(write_spec, capsys, text, "datasets.math.sources")
    assert msg.startswith("expected at least 1 item (Concatenated in order, then filtered), got none")


def _scalar_fields(model: type[BaseModel]) -> list[str]:
    """Fields whose type is int, float, bool or str (also inside Annotated / Optional)."""
    def bare(tp):
        while typing.get_origin(tp) in (typing.Annotated, typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1 and typing.get_origin(tp) is not typing.Annotated:
                return tp
            tp = args[0]
        return tp
    return [n for n, f in model.model_fields.items() if bare(f.annotation) in (int, float, bool, str)]


BLOCKS = [("algorithm", Algorithm), ("algorithm.optimizer", Optimizer), ("rollout", Rollout)]


@pytest.mark.parametrize("block,name", [(b, n) for b, m in BLOCKS for n in _scalar_fields(m)])
def test_every_scalar_setting_gets_a_worded_type_error(write_spec, capsys, block, name):
    """No setting falls back to pydantic's bare wording ("Input should be ...")."""
    nested = f"{name}: {{bad: 1}}"
    for part in reversed(block.split(".")):
        nested = f"{part}: {{{nested}}}"
    msg = one(write_spec, capsys, MINI + nested + "\n", f"{block}.{name}")
    assert msg.startswith("expected ") and "got a map {bad: 1}" in msg and "Input should" not in msg, msg


@pytest.mark.parametrize("name", _scalar_fields(Stage))
def test_every_scalar_stage_setting_gets_a_worded_type_error(write_spec, capsys, name):
    data = yaml.safe_load(MINI)
    data["stages"][0][name] = [1, 2]
    msg = one(write_spec, capsys, yaml.safe_dump(data, sort_keys=False), f"stages[0].{name}")
    assert msg.startswith("expected ") and "got a list [1, 2]" in msg, msg


@pytest.mark.parametrize("value", [1e-6, 3e-4, 1.0, 0.5, 2.5e10, 12, True, None, "org/model", "3", "yes"])
def test_written_examples_read_back_as_the_same_value(value):
    from rlspec.compiler.errors import yaml_value
    assert yaml.safe_load(f"k: {yaml_value(value)}")["k"] == value


def test_show_names_values_plainly():
    from rlspec.compiler.errors import show
    assert show({"a": 1}) == "a map {a: 1}"
    assert show([1, 2]) == "a list [1, 2]"
    assert show("fast") == "the text 'fast'"
    assert show(None) == "null"
