"""Cross-field checks on the training layout: the trainer splits a step's prompts (and each
mini-batch) across the data-parallel ranks, so both must divide evenly; DeepSpeed offload is
honoured and only its shape rules are checked."""

from __future__ import annotations

import pytest

from rlspec.compiler.errors import SpecError
from rlspec.compiler.validate import check_file

from conftest import MINI


def issues_of(write_spec, text: str) -> dict[tuple, tuple[int, str]]:
    """path -> (line, message) of every error; {} when the spec checks."""
    try:
        check_file(write_spec(text))
    except SpecError as exc:
        return {i.path: (i.loc.line, i.message) for i in exc.errors}
    return {}


def line_of(text: str, needle: str) -> int:
    return next(i + 1 for i, line in enumerate(text.splitlines()) if needle in line)


def with_prompts(prompts: int, resources: str, extra: str = "") -> str:
    return MINI.replace("    prompts_per_step: 8\n", f"    prompts_per_step: {prompts}\n{extra}", 1) + resources


def test_fewer_prompts_than_ranks_is_an_error(write_spec):
    # 4 prompts x 8 responses = 32 responses divide over 8 ranks, yet 4 ranks would get no prompt
    text = with_prompts(4, "resources:\n  train: {gpus: 8}\n").replace("    group_size: 4\n", "    group_size: 8\n", 1)
    line, msg = issues_of(write_spec, text)[("stages", 0, "prompts_per_step")]
    assert line == line_of(text, "prompts_per_step: 4")
    assert "prompts_per_step 4 is not divisible by the 8 training ranks" in msg
    assert "splits a step's prompts across ranks, so 4 ranks would sit idle" in msg
    assert "multiple of 8 (e.g. 8)" in msg


def test_uneven_prompt_split_is_an_error(write_spec):
    text = with_prompts(12, "resources:\n  train: {gpus: 4, nodes: 2}\n")
    _, msg = issues_of(write_spec, text)[("stages", 0, "prompts_per_step")]
    assert "not divisible by the 8 training ranks" in msg and "unequal batches" in msg and "(e.g. 16)" in msg


def test_even_split_passes(write_spec):
    assert issues_of(write_spec, with_prompts(16, "resources:\n  train: {gpus: 8}\n")) == {}


def test_mini_batch_must_split_over_ranks(write_spec):
    text = with_prompts(16, "resources:\n  train: {gpus: 8}\n", "    algorithm: {mini_batch_size: 4}\n")
    line, msg = issues_of(write_spec, text)[("stages", 0, "algorithm", "mini_batch_size")]
    assert line == line_of(text, "mini_batch_size: 4")
    assert "mini_batch_size 4 is not divisible by the 8 training ranks" in msg and "multiple of 8" in msg
    text = with_prompts(16, "resources:\n  train: {gpus: 8}\n", "    algorithm: {mini_batch_size: 8}\n")
    assert issues_of(write_spec, text) == {}


@pytest.mark.parametrize("deepspeed,bad", [
    ("{zero_stage: 2, offload_optimizer: true}", None),  # honoured by the trainer: not refused
    ("{zero_stage: 3, offload_optimizer: true, offload_params: true}", None),
    ("{zero_stage: 2, offload_params: true}", "offload_params"),
    ("{zero_stage: 0, offload_optimizer: true}", "offload_optimizer"),
])
def test_deepspeed_offload_shape_rules(write_spec, deepspeed, bad):
    found = issues_of(write_spec, MINI + f"resources:\n  deepspeed: {deepspeed}\n")
    assert set(found) == ({("resources", "deepspeed", bad)} if bad else set()), found


def test_from_scratch_llama_with_chat_template_is_not_refused(write_spec):
    """The model job honours both; `rlspec check` must not refuse them."""
    text = MINI.replace("  path: org/model\n", """\
  from_scratch:
    architecture: {family: llama}
    warmup:
      sources: [{uri: "builtin://math?n=50&worked=true"}]
  prompt: {use_chat_template: true}
""")
    assert issues_of(write_spec, text) == {}


@pytest.mark.parametrize("group, bad", [("{name}-{stage}", "{stage}"), ("{name}-{cell}-{seed}", "{seed}")])
def test_tracking_group_names_only_its_placeholders(write_spec, group, bad):
    text = MINI + f'tracking:\n  group: "{group}"\n'
    line, msg = issues_of(write_spec, text)[("tracking", "group")]
    assert line == line_of(text, "group:")
    assert f"{bad} is not a placeholder of tracking.group" in msg and "use `{name}`" in msg
    assert issues_of(write_spec, MINI + 'tracking:\n  group: "{name}/{cell}"\n') == {}
