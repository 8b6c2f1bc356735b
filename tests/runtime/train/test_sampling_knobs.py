"""Issue 16's sampling and reward knobs: reward values, overlong zero reward, dynamic sampling's
filter and refill modes, dataset mixing weights and POLARIS' accuracy pruning between stages.

The unit tests drive `grpo.batch` and `grpo.sampler` directly (the rank split is given as lists of
per-rank counts, which is what the trainer gathers); the slow test runs two real train stages.
"""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from rlspec.runtime.grpo.batch import (RolloutBatch, copy_sources, drop_equal_groups, equal_groups, first_kept,
                                       keep_first_groups, training_rewards, with_copies)
from rlspec.runtime.grpo.sampler import (MixedSampler, PromptAccuracy, above_accuracy, merged_stats, read_prompt_stats,
                                         write_prompt_stats)

NONE = SimpleNamespace(kind="none")


def _batch(flags_per_group: list[bool], group: int = 2) -> RolloutBatch:
    """A batch whose group g has prompt ids [g] and the given zero-variance flag."""
    n = len(flags_per_group)
    return RolloutBatch(prompt_ids=[[g] for g in range(n) for _ in range(group)],
                        response_ids=[[g, j] for g in range(n) for j in range(group)],
                        engine_logprobs=[[0.0] for _ in range(n * group)], advantages=[0.0] * (n * group),
                        scores=[0.0] * (n * group), lengths=[1] * (n * group), loss_mask=[True] * (n * group),
                        zero_var_flags=[f for f in flags_per_group for _ in range(group)],
                        groups=n, groups_generated=n, answers=n * group)


# ----------------------------------------------------------------------------------- rewards


def test_reward_values_map_the_score_and_accuracy_stays_the_score():
    r = training_rewards([1.0, 0.0, 0.5], [False] * 3, [4, 4, 4], correct=1.0, incorrect=-1.0, overlong=NONE,
                         max_tokens=16)
    assert r.tolist() == [1.0, -1.0, 0.0]  # DAPO's +-1; half a score is halfway
    default = training_rewards([1.0, 0.0], [False, False], [4, 4], correct=1.0, incorrect=0.0, overlong=NONE,
                               max_tokens=16)
    assert default.tolist() == [1.0, 0.0]  # the default map is the identity


def test_overlong_zero_reward_zeroes_truncated_responses_after_the_map():
    r = training_rewards([1.0, 0.0, 0.0], [True, True, False], [16, 16, 3], correct=1.0, incorrect=-1.0,
                         overlong=SimpleNamespace(kind="zero_reward"), max_tokens=16)
    assert r.tolist() == [0.0, 0.0, -1.0]  # truncated: 0 whatever the grader said; finished: mapped


def test_soft_penalty_adds_to_the_mapped_reward():
    soft = SimpleNamespace(kind="soft_penalty", buffer=8, factor=0.5)
    r = training_rewards([1.0, 0.0], [False, False], [16, 4], correct=1.0, incorrect=-1.0, overlong=soft,
                         max_tokens=16)
    assert r.tolist() == [0.5, -1.0]  # at the maximum length: -factor; below the buffer: none


def test_equal_groups():
    assert equal_groups(torch.tensor([1.0, 1.0, 0.0, 1.0, -0.5, -0.5]), 2) == [True, False, True]


# ----------------------------------------------------------------------------------- dynamic sampling


def test_drop_equal_groups_keeps_counters_of_every_rollout():
    b = _batch([True, False, True, False])
    kept = drop_equal_groups(b, 2)
    assert kept.groups == 2 and [p[0] for p in kept.prompt_ids] == [1, 1, 3, 3]
    assert kept.groups_dropped == 2 and kept.groups_generated == 4 and kept.answers == 8


def test_first_kept_takes_groups_in_global_order_until_the_step_is_full():
    assert first_kept([3, 2], 4) == [3, 1]
    assert first_kept([0, 5], 2) == [0, 2]
    assert first_kept([1, 1], 0) == [0, 0]
    assert first_kept([1, 1], 5) == [1, 1]
    cut = keep_first_groups(_batch([False] * 3), 2, 1)
    assert cut.groups == 1 and cut.groups_unused == 2


def test_copy_sources_fill_the_step_in_turn_across_ranks():
    # kept: rank 0 has 1 group, rank 1 has 2 (global order r0g0, r1g0, r1g1); 6 wanted: 3 copies
    assert copy_sources([1, 2], 6) == [[0], [0, 1]]
    assert copy_sources([1, 2], 8) == [[0, 0], [0, 1, 0]]  # 5 copies: the 4th and 5th go round again
    assert copy_sources([0, 0], 4) == [[], []]  # nothing informative: nothing to copy
    assert copy_sources([2, 2], 4) == [[], []]
    b = with_copies(_batch([False, False]), 2, [1, 1])
    assert b.groups == 4 and b.groups_copied == 2 and [p[0] for p in b.prompt_ids[4:]] == [1, 1, 1, 1]


def test_batch_extend_sums_counters_and_merges_dataset_counts():
    a, b = _batch([False]), _batch([True, False])
    a.prompts_by_dataset, b.prompts_by_dataset = {"x": 1}, {"x": 1, "y": 1}
    a.length_max, b.length_max = 7, 3
    a.extend(b)
    assert a.groups == 3 and a.prompts_by_dataset == {"x": 2, "y": 1} and a.length_max == 7


# ----------------------------------------------------------------------------------- mixing


def test_mixed_sampler_counts_follow_the_weights_at_every_step():
    s = MixedSampler([10, 30, 5], [2.0, 1.0, 1.0], seed=0, prompts_per_step=8)
    totals = Counter()
    for step in range(1, 21):
        totals.update(s.dataset_of(i) for i in s.next_batch())
        drawn = 8 * step
        for d, w in enumerate([0.5, 0.25, 0.25]):
            assert abs(totals[d] - w * drawn) <= 1, (step, totals)
    assert s.epoch == 160 // 45  # an epoch of the stage is its prompt count, drawn in the weights' shares


def test_mixed_sampler_is_independent_of_batch_boundaries_and_resumable():
    def run(sizes_of_batches):
        s = MixedSampler([6, 4], [1.0, 3.0], seed=7, prompts_per_step=4)
        return [i for n in sizes_of_batches for i in s.next_batch(n)]
    assert run([4, 4, 4, 4]) == run([1, 7, 3, 5]) == run([16])
    a = MixedSampler([6, 4], [1.0, 3.0], seed=7, prompts_per_step=4)
    a.next_batch(5)
    a.record(0, True, 2.0, 2)
    b = MixedSampler([6, 4], [1.0, 3.0], seed=7, prompts_per_step=4)
    b.load(json.loads(json.dumps(a.state())))  # the checkpoint holds it as JSON
    assert [a.next_batch() for _ in range(5)] == [b.next_batch() for _ in range(5)]
    assert b.accuracy.tally == {0: [2.0, 2]}
    assert MixedSampler([6, 4], [1.0, 3.0], seed=8, prompts_per_step=4).next_batch(10) != run([10])


def test_mixed_sampler_draws_every_dataset_in_its_own_epochs_and_retires_within_it():
    s = MixedSampler([3, 6], [1.0, 1.0], seed=1, prompts_per_step=6, retire_solved=True)
    first = s.next_batch()
    small = [i for i in first if i < 3]
    assert sorted(small) == [0, 1, 2]  # the small dataset's whole first epoch
    for i in first:
        s.record(i, all_solved=i == small[0])
    later = [i for _ in range(3) for i in s.next_batch()]
    assert small[0] not in later and set(small[1:]) <= set(later)  # retired in its dataset's next epochs
    assert s.planned_steps(2) == 2 * 2  # fixed by the stage's size with weights
    with pytest.raises(ValueError, match="no prompts"):
        MixedSampler([3, 0], [1.0, 1.0], seed=1, prompts_per_step=2)


# ----------------------------------------------------------------------------------- prompt stats


def test_prompt_stats_merge_across_stages_and_prune_above_the_threshold(tmp_path):
    records = [{"source": "s", "id": "a"}, {"source": "s", "id": "b"}, {"source": "t", "id": "a"}]
    acc = PromptAccuracy()
    acc.add(0, 4.0, 4)
    acc.add(1, 1.0, 4)
    acc.add(0, 3.0, 4)
    stage1 = merged_stats({}, records, acc)
    assert stage1 == {("s", "a"): (7.0, 8), ("s", "b"): (1.0, 4)}
    write_prompt_stats(tmp_path / "prompt_stats.json", stage1)
    assert read_prompt_stats(tmp_path) == stage1
    assert read_prompt_stats(tmp_path / "missing") == {}
    acc2 = PromptAccuracy()
    acc2.add(1, 4.0, 4)  # stage 2 solves b every time
    stage2 = merged_stats(stage1, records, acc2)
    assert stage2[("s", "b")] == (5.0, 8) and stage2[("s", "a")] == (7.0, 8)
    # a: 7/8 = 0.875 > 0.8 dropped; b: 0.625 kept; (t, a) never trained on: kept
    assert above_accuracy(records, stage2, 0.8) == [True, False, False]
    assert above_accuracy(records, stage2, 0.875) == [False, False, False]  # "above", not "at"


# ----------------------------------------------------------------------------------- checks

BAD_KNOBS = """\
name: t
model: {path: model}
datasets:
  a: {domain: math, sources: [{uri: "builtin://math?n=8"}]}
  b: {domain: math, sources: [{uri: "builtin://math?n=8&seed=2"}]}
benchmarks: {}
stages:
  - name: s1
    datasets: [a, b]
    dataset_weights: {a: 1, c: 2}
    drop_prompts_above_accuracy: 0.9
    max_response_tokens: 16
    steps: 1
    prompts_per_step: 4
    group_size: 4
    algorithm:
      dynamic_sampling: {enabled: true, generation_batch_size: 2}
  - name: s2
    datasets: [a]
    dataset_weights: {a: 1}
    filter_before: {k: 2}
    max_response_tokens: 16
    steps: 1
    prompts_per_step: 4
    group_size: 4
"""


def test_check_refuses_the_knobs_misused_at_their_lines(tmp_path, capsys):
    """`rlspec check` on a spec with every misuse: a generation batch below the step, weights that
    do not name the stage's datasets, weights after a stage filter, pruning on the first stage."""
    from rlspec.compiler.cli import main
    path = tmp_path / "spec.yaml"
    path.write_text(BAD_KNOBS)
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    found = {line.split(" ", 2)[1].rstrip(":"): line.split(" ", 1)[0] for line in err.splitlines()
             if line.startswith(str(path))}
    assert found == {"benchmarks": f"{path}:6:13",  # the usual warning of a spec without benchmarks
                     "stages[0].dataset_weights": f"{path}:10:22",
                     "stages[0].drop_prompts_above_accuracy": f"{path}:11:34",
                     "stages[0].algorithm.dynamic_sampling.generation_batch_size": f"{path}:17:64",
                     "stages[1].dataset_weights": f"{path}:20:22"}
    assert "generation_batch_size 2 is below prompts_per_step 4" in err
    assert "c not among them; no weight for b" in err
    assert "stage 's1' is the first stage" in err
    assert "dataset_weights with filter_before on stage 's2'" in err
    weightless = BAD_KNOBS.replace("{a: 1, c: 2}", "{a: 1, b: 0}")
    path.write_text(weightless)
    assert main(["check", str(path)]) == 1
    assert "stages[0].dataset_weights.b" in capsys.readouterr().err  # weights > 0


# ----------------------------------------------------------------------------------- real train jobs

TWO_STAGES = """\
datasets:
  easy: {{domain: math, sources: [{{uri: "builtin://math?n=12&difficulty=1"}}]}}
  other: {{domain: math, sources: [{{uri: "builtin://math?n=12&difficulty=1&seed=3"}}]}}
algorithm:
  optimizer: {{lr: 1.0e-3, weight_decay: 0.0}}
  micro_batch_size: 4
  mini_batch_size: 2
  entropy_coef: 0.05
  checkpoint_every: 10
  reward_values: {{correct: 1.0, incorrect: -1.0}}
  overlong: {{kind: zero_reward}}
rollout:
  engine: hf
  temperature: 1.0
  max_prompt_tokens: 96
stages:
  - name: s1
    datasets: [easy, other]
    dataset_weights: {{easy: 3, other: 1}}
    max_response_tokens: 16
    steps: 3
    prompts_per_step: 4
    group_size: 4
    algorithm:
      dynamic_sampling: {{enabled: true, metric: accuracy, refill: resample, generation_batch_size: 6, max_rounds: 1}}
  - name: s2
    datasets: [easy]
    drop_prompts_above_accuracy: {threshold}
    max_response_tokens: 16
    steps: 2
    prompts_per_step: 4
    group_size: 4
    algorithm:
      dynamic_sampling: {{enabled: true, refill: copy}}
evaluate_initial: false
tracking: {{mode: offline}}
resources:
  train: {{ranks_per_node: 2}}
"""


def _train_jobs(build) -> dict:
    return {json.loads(p.read_text())["config"]["stage"]: p for p in (build / "jobs" / "train").glob("*.json")}


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_two_stages_on_two_ranks_count_dropped_refilled_mixed_and_pruned_prompts(tmp_path, tiny_model_dir):
    """Stage 1: two datasets mixed 3:1, DAPO's dynamic sampling on accuracy with a generation batch
    of 6 for 4 trained groups and one resample round, rewards +-1, truncated responses reward 0.
    Stage 2: POLARIS' pruning by stage 1's accuracy, refill by copying. 2 gloo ranks, so groups are
    dropped, cut and copied across ranks (a rank may train on no group)."""
    from conftest import compile_and_curate, job_dir, metrics, run_train, spec_text
    threshold = 0.2
    head = spec_text(tiny_model_dir).split("datasets:\n")[0]  # the tiny model and its prompt, as every train test
    build, _ = compile_and_curate(tmp_path, head + TWO_STAGES.format(threshold=threshold))
    jobs = _train_jobs(build)
    for stage in ("s1", "s2"):
        out = run_train(build, jobs[stage], timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "world 2" in out.stdout
    s1, s2 = metrics(build, jobs["s1"]), metrics(build, jobs["s2"])
    for r in s1 + s2:
        # every generated group is trained, dropped or cut; copies come on top
        assert r["groups_generated"] == r["groups_trained"] - r["groups_copied"] + r["groups_dropped"] + r["groups_unused"]
        assert r["groups_trained"] <= 4 and 0.0 <= r["pass_rate"] <= 1.0 and 0.0 <= r["zero_variance_frac"] <= 1.0
        # rewards +-1 with truncated responses at 0: reward = 2 acc(finished) - finished share
        finished = 1.0 - r["truncation_rate"]
        assert 2 * r["accuracy_mean"] - finished - 2 * r["truncation_rate"] - 1e-9 <= r["reward_mean"]
        assert r["reward_mean"] <= 2 * r["accuracy_mean"] - finished + 1e-9
    assert any(r["reward_mean"] < 0 for r in s1 + s2)  # the map to -1 happened
    # stage 1: rounds of 6 prompts, counts 3:1 over the stage within one prompt
    total = Counter()
    for r in s1:
        assert r["groups_generated"] == 6 * r["sampling_rounds"] and r["sampling_rounds"] in (1, 2)
        assert r["prompts_easy"] + r.get("prompts_other", 0) == r["groups_generated"]
        assert r["groups_copied"] == 0 and (r["groups_trained"] == 4 or r["sampling_rounds"] == 2)
        total.update(easy=r["prompts_easy"], other=r.get("prompts_other", 0))
        assert abs(total["easy"] - 0.75 * sum(total.values())) <= 1
    assert sum(r["groups_dropped"] for r in s1) > 0, "no group was equal on accuracy: the filter was not exercised"
    # stage 2: copies fill the step whenever a group was kept
    for r in s2:
        informative = r["groups_generated"] - r["groups_dropped"]
        assert r["sampling_rounds"] == 1 and r["groups_trained"] == (4 if informative else 0)
    # pruning: exactly the easy prompts whose stage-1 accuracy was above the threshold
    stats1 = json.loads((job_dir(build, jobs["s1"]) / "prompt_stats.json").read_text())["prompts"]
    expected = sum(1 for p in stats1 if "seed=3" not in p["source"] and p["accuracy"] > threshold)
    done2 = json.loads((job_dir(build, jobs["s2"]) / "done.json").read_text())
    assert done2["prompts_dropped_above_accuracy"] == expected and done2["prompts"] == 12 - expected
    assert sum(p["rollouts"] for p in stats1) == 4 * sum(r["groups_generated"] for r in s1)
    stats2 = json.loads((job_dir(build, jobs["s2"]) / "prompt_stats.json").read_text())["prompts"]
    assert sum(p["rollouts"] for p in stats2) == sum(p["rollouts"] for p in stats1) + 4 * sum(
        r["groups_generated"] for r in s2)
    print(f"pruned {expected} of 12; s1 dropped {[r['groups_dropped'] for r in s1]} rounds "
          f"{[r['sampling_rounds'] for r in s1]}; s2 copied {[r['groups_copied'] for r in s2]}")
