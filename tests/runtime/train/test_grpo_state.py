"""Temperature controllers and the prompt sampler: the per-step state a resumed run must restore."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from rlspec.runtime.grpo.sampler import PromptSampler, steps_for
from pydantic import TypeAdapter

from rlspec.compiler.spec import GroupSize, Temperature
from rlspec.runtime.grpo.temperature import TemperatureController

TARGET = TypeAdapter(Temperature).validate_python(
    {"kind": "entropy_target", "target": 0.3, "initial": 0.6, "min": 0.3, "max": 1.2, "gain": 0.5})


def _temp(data) -> TemperatureController:
    return TemperatureController(TypeAdapter(Temperature).validate_python(data))


def _group(data) -> int:
    return TypeAdapter(GroupSize).validate_python(data)


def test_entropy_target_moves_temperature_the_right_way():
    t = TemperatureController(TARGET)
    assert t.at(0) == 0.6
    t.observe(0.1)  # entropy below target -> hotter
    assert t.at(0) > 0.6
    hot = t.at(0)
    t.observe(0.9)  # above target -> cooler
    assert t.at(0) < hot
    for _ in range(100):
        t.observe(10.0)
    assert t.at(0) == 0.3  # clipped at min
    for _ in range(100):
        t.observe(0.0)
    assert t.at(0) == 1.2  # clipped at max
    saved = t.state()
    fresh = TemperatureController(TARGET)
    fresh.load(saved)
    assert fresh.at(0) == 1.2


def test_constant_and_per_epoch_schedules():
    assert _temp(0.7).at(5) == 0.7
    sched = _temp({"kind": "per_epoch", "values": [0.6, 0.8, 1.0]})
    assert [sched.at(e) for e in range(5)] == [0.6, 0.8, 1.0, 1.0, 1.0]
    assert _group({"kind": "per_epoch", "values": [8, 16]}).at(3) == 16
    assert _group(8).at(3) == 8


def test_sampler_is_seeded_and_rolls_over_epochs():
    a, b = PromptSampler(10, seed=3, prompts_per_step=4), PromptSampler(10, seed=3, prompts_per_step=4)
    first = [a.next_batch() for _ in range(5)]
    assert first == [b.next_batch() for _ in range(5)]
    flat = [i for batch in first[:2] for i in batch] + first[2][:2]
    assert sorted(flat) == list(range(10))  # epoch 0 covers every prompt once
    assert a.epoch == 1 and a.position == 10  # two full epochs taken; the third starts on demand
    assert PromptSampler(10, seed=4, prompts_per_step=4).next_batch() != first[0]


def test_sampler_state_round_trip():
    a = PromptSampler(10, seed=3, prompts_per_step=4)
    a.next_batch()
    b = PromptSampler(10, seed=3, prompts_per_step=4)
    b.load(a.state())
    assert [a.next_batch() for _ in range(4)] == [b.next_batch() for _ in range(4)]


def test_filter_solved_retires_prompts_solved_every_time():
    s = PromptSampler(6, seed=0, prompts_per_step=6, retire_solved=True)
    batch = s.next_batch()
    for i in batch:
        s.record(i, all_solved=i < 2)
    nxt = s.next_batch(4)
    assert s.epoch == 1 and not {0, 1} & set(nxt)
    assert s.retired == {0, 1}


def test_a_prompt_solved_in_a_batch_across_the_epoch_boundary_is_retired():
    """6 prompts, 4 per step: step 2 takes epoch 0's last 2 and epoch 1's first 2, so the last two
    prompts of epoch 0 are graded after epoch 1 began. Before, they were counted in epoch 1 and
    never retired (issue 16)."""
    s = PromptSampler(6, seed=1, prompts_per_step=4, retire_solved=True)
    first = s.next_batch()
    for i in first:
        s.record(i, all_solved=False)
    second = s.next_batch()
    assert s.epoch == 1
    late = second[:2]  # epoch 0's tail
    for i in second:
        s.record(i, all_solved=i in late)
    assert s.retired == set(late)
    rest = [s.next_batch(1)[0] for _ in range(4)]  # the rest of epoch 1 and into epoch 2
    assert not set(late) & set(rest[:2]), "a retired prompt was drawn again in epoch 1"
    assert not set(late) & set(s.next_batch(4)), "a retired prompt was drawn again in epoch 2"


def test_epochs_with_filter_solved_plan_fewer_steps():
    """`epochs: 2` over 10 prompts, 4 per step: 6 steps; when 4 prompts are solved every time in
    epoch 0, epoch 1 has 6 prompts (2 steps), so the stage takes 5 steps, not 6 that would run
    into a third epoch (issue 16)."""
    s = PromptSampler(10, seed=2, prompts_per_step=4, retire_solved=True)
    assert s.planned_steps(2) == steps_for(SimpleNamespace(steps=None, epochs=2, prompts_per_step=4), 10) == 6
    drawn = [s.next_batch() for _ in range(2)]  # 8 of epoch 0
    solved = set(drawn[0])
    for batch in drawn:
        for i in batch:
            s.record(i, all_solved=i in solved)
    third = s.next_batch()  # epoch 0's last 2, then epoch 1 (the 4 solved ones are retired)
    assert s.epoch == 1 and not solved & set(third[2:])
    for i in third:
        s.record(i, all_solved=False)
    assert s.planned_steps(2) == 3 + 2
    without = PromptSampler(10, seed=2, prompts_per_step=4)
    assert without.planned_steps(2) == 6


def test_sampler_state_round_trip_keeps_late_retirements():
    a = PromptSampler(6, seed=1, prompts_per_step=4, retire_solved=True)
    a.next_batch()
    second = a.next_batch()
    for i in second:
        a.record(i, all_solved=True)
    b = PromptSampler(6, seed=1, prompts_per_step=4, retire_solved=True)
    b.load(a.state())
    assert [a.next_batch(1) for _ in range(3)] == [b.next_batch(1) for _ in range(3)]


def test_steps_for_epochs():
    assert steps_for(SimpleNamespace(steps=7, epochs=None, prompts_per_step=4), 100) == 7
    assert steps_for(SimpleNamespace(steps=None, epochs=2, prompts_per_step=4), 10) == 6
    with pytest.raises(ValueError, match="no prompts"):
        PromptSampler(0, 0, 4)


def test_prompt_sampler_tallies_scores_in_its_state():
    """The per-prompt score tallies (for prompt_stats.json and POLARIS pruning) survive a resume."""
    a = PromptSampler(4, seed=0, prompts_per_step=2)
    for i in a.next_batch():
        a.record(i, False, 1.5, 4)
    b = PromptSampler(4, seed=0, prompts_per_step=2)
    b.load(json.loads(json.dumps(a.state())))
    assert b.accuracy.tally == a.accuracy.tally and len(b.accuracy.tally) == 2
