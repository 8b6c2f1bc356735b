"""Temperature controllers and the prompt sampler: the per-step state a resumed run must restore."""

from __future__ import annotations

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
    s = PromptSampler(6, seed=0, prompts_per_step=6)
    batch = s.next_batch(retire_solved=True)
    for i in batch:
        s.record(i, all_solved=i < 2)
    nxt = s.next_batch(4, retire_solved=True)
    assert s.epoch == 1 and not {0, 1} & set(nxt)
    assert s.retired == {0, 1}


def test_steps_for_epochs():
    assert steps_for(SimpleNamespace(steps=7, epochs=None, prompts_per_step=4), 100) == 7
    assert steps_for(SimpleNamespace(steps=None, epochs=2, prompts_per_step=4), 10) == 6
    with pytest.raises(ValueError, match="no prompts"):
        PromptSampler(0, 0, 4)
