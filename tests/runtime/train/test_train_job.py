"""The real train job on a tiny model: DeepSpeed (gloo, CPU), a real rollout engine, the real grader.

Each test compiles a small spec, runs the real curate job, then `python -m rlspec.runtime.train`.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import ENV, compile_and_curate, job_dir, metrics, run_train, spec_text

# Several real train runs per test: on a busy 2-core machine more than the suite's 600 s per test; every
# run has its own subprocess timeout, so a hang still fails.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def weights(folder) -> dict:
    return load_file(str(folder / "model.safetensors"))


def test_one_stage_trains_every_parameter_strictly_on_policy(tmp_path, tiny_model_dir):
    build, job = compile_and_curate(tmp_path, spec_text(tiny_model_dir, steps=3))
    out = run_train(build, job)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "reference model: none (kl.coef = 0)" in out.stdout
    folder = job_dir(build, job)
    done = json.loads((folder / "done.json").read_text())
    assert done["steps"] == done["steps_asked"] == 3
    before, after = weights(tiny_model_dir), weights(folder / "model")
    # k_proj.bias adds q.b to every key's score of a query: softmax ignores that shift, so its
    # gradient is exactly zero in any transformer; every other parameter must move.
    unchanged = [k for k in before if k in after and before[k].equal(after[k]) and not k.endswith("k_proj.bias")]
    assert not unchanged, f"parameters not updated: {unchanged}"
    assert any(r["reward_mean"] > 0 for r in metrics(build, job)), "no learning signal: the warm-up failed"
    rows = metrics(build, job)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert r["ratio_max_dev"] == 0.0  # one update per batch: the importance ratio is exactly 1
        assert r["kl"] == 0.0 and r["clip_frac"] == 0.0
        assert r["logprob_mad"] < 1e-4  # engine log-probs agree with the trainer's (float32)
        assert 0.0 <= r["reward_mean"] <= 1.0 and r["response_len_max"] <= 16
    assert (folder / "checkpoints").is_dir()


def test_kl_loads_a_reference_model(tmp_path, tiny_model_dir):
    # the entropy bonus moves the policy even if every reward of step 1 is equal (zero advantages)
    build, job = compile_and_curate(tmp_path, spec_text(tiny_model_dir, steps=2,
                                                        extra_algorithm="kl: {coef: 0.1, estimator: k3}\n"
                                                                        "entropy_coef: 0.05"))
    out = run_train(build, job)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "reference model: loaded" in out.stdout
    rows = metrics(build, job)
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # policy == reference before the first update
    assert rows[1]["kl"] > 0.0


def test_overlong_mask_removes_truncated_responses_from_the_loss(tmp_path, tiny_model_dir):
    # 16-token budget: the untrained tiny model rarely stops, so most responses are truncated
    build, job = compile_and_curate(tmp_path, spec_text(tiny_model_dir, steps=1,
                                                        extra_algorithm="overlong: {kind: mask}"))
    out = run_train(build, job)
    assert out.returncode == 0, out.stderr[-3000:]
    row = metrics(build, job)[0]
    if row["truncation_rate"] == 1.0:
        assert row["loss"] == 0.0 and row["grad_norm"] == 0.0  # nothing left to learn from
    else:
        assert row["truncation_rate"] > 0


@pytest.mark.parametrize("engine", ["hf", "vllm"])
def test_killed_run_resumes_bit_identical(tmp_path, tiny_model_dir, engine):
    """SIGKILL mid-step and mid-checkpoint; rerunning the same job ends with the same weights."""
    text = spec_text(tiny_model_dir, engine=engine, steps=5, every=2)
    ref_build, ref_job = compile_and_curate(tmp_path / "ref", text)
    assert run_train(ref_build, ref_job).returncode == 0
    reference = (job_dir(ref_build, ref_job) / "model" / "model.safetensors").read_bytes()
    ref_metrics = metrics(ref_build, ref_job)
    for fault in ("train:step:4", "train:checkpoint:4"):
        build, job = compile_and_curate(tmp_path / fault.replace(":", "-"), text)
        killed = run_train(build, job, {"RLSPEC_FAULT": fault})
        assert killed.returncode == -9
        folder = job_dir(build, job)
        assert not (folder / "done.json").exists() and not (folder / "model").exists()
        resumed = run_train(build, job)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "resumed from step-000002" in resumed.stdout
        assert (folder / "model" / "model.safetensors").read_bytes() == reference, f"weights differ after {fault}"
        got = metrics(build, job)
        assert [r["step"] for r in got] == [1, 2, 3, 4, 5]
        assert [r["reward_mean"] for r in got] == [r["reward_mean"] for r in ref_metrics]


@pytest.mark.parametrize("engine", ["vllm", "hf"])
def test_two_deepspeed_ranks_match_one(tmp_path, tiny_model_dir, engine):
    """Same global batch on 2 gloo ranks (the job relaunches itself under torchrun) as on 1: the same
    prompts and samples (per-prompt seeds, with either engine: the transformers engine's samples
    depended on the split before, issue 16), so the same rewards and, within float tolerance, the
    same loss curve and weights."""
    runs = {}
    for ranks in (1, 2):
        build, job = compile_and_curate(tmp_path / f"r{ranks}", spec_text(tiny_model_dir, engine=engine, steps=3,
                                                                          ranks=ranks, every=10))
        out = run_train(build, job, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        assert f"world {ranks}" in out.stdout
        runs[ranks] = (metrics(build, job), weights(job_dir(build, job) / "model"))
        placement = json.loads((job_dir(build, job) / "done.json").read_text())["engine_placement"]
        assert [(p["rank"], p["local_rank"], p["engine"]["device"]) for p in placement] == \
            [(r, r, "cpu") for r in range(ranks)]
        if engine == "vllm" and ranks == 2:
            # each rank's engine is its own worker inside the training world (vLLM's external launcher),
            # as the worker itself reports: stands in for one engine per GPU of a node
            assert [(p["engine"]["rank"], p["engine"]["local_rank"], p["engine"]["tp_size"], p["engine"]["dp_rank"],
                     p["engine"]["executor"]) for p in placement] == [(0, 0, 1, 0, "external_launcher"),
                                                                     (1, 1, 1, 1, "external_launcher")]
    (m1, w1), (m2, w2) = runs[1], runs[2]
    assert [r["reward_mean"] for r in m1] == [r["reward_mean"] for r in m2]
    assert [r["loss"] for r in m2] == pytest.approx([r["loss"] for r in m1], rel=1e-4, abs=1e-6)
    for name in w1:
        assert torch.allclose(w1[name], w2[name], atol=1e-5), name


def test_off_policy_minibatches_dynamic_sampling_and_schedules(tmp_path, tiny_model_dir):
    """The other knobs on a real job: 2 updates per batch over 2 mini-batches (the second pass is
    off-policy, so the ratio moves and clipping can bind), dynamic sampling, DAPO's soft overlong
    penalty, an entropy-target temperature and a per-epoch group size."""
    text = spec_text(tiny_model_dir, steps=4, extra_algorithm=(
        "updates_per_batch: 2\nmini_batch_size: 2\ndynamic_sampling: {enabled: true, max_rounds: 2}\n"
        "overlong: {kind: soft_penalty, buffer: 8, factor: 0.5}"))
    text = text.replace("  temperature: 1.0\n", "  temperature: {kind: entropy_target, target: 0.3, initial: 1.0, min: 0.5, max: 1.5}\n")
    text = text.replace("n=64&difficulty=1", "n=12&difficulty=1").replace(
        "group_size: 4}", "group_size: {kind: per_epoch, values: [4, 6]}}")
    build, job = compile_and_curate(tmp_path, text)
    out = run_train(build, job)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = metrics(build, job)
    assert len(rows) == 4
    assert any(r["ratio_max_dev"] > 0 for r in rows)  # the second update sees a changed policy
    # dynamic sampling drops groups: rates are over every sampled group, so never above 1 (issue 16)
    assert all(0.0 <= r["zero_variance_frac"] <= 1.0 and 0.0 <= r["pass_rate"] <= 1.0 for r in rows)
    temps = [r["temperature"] for r in rows]
    assert temps[0] == 1.0 and len(set(temps)) > 1 and all(0.5 <= t <= 1.5 for t in temps)
    assert [r["group_size"] for r in rows if r["epoch"] >= 1] and all(
        r["group_size"] == (4 if r["epoch"] == 0 else 6) for r in rows)


def test_health_rule_stops_a_hopeless_run(tmp_path, tiny_model_dir):
    # a response budget of 1 token can never contain a boxed answer: accuracy is 0 on every step
    text = spec_text(tiny_model_dir, steps=5, extra_algorithm="health: {max_zero_reward_steps: 2}")
    text = text.replace("max_response_tokens: 16", "max_response_tokens: 1")
    build, job = compile_and_curate(tmp_path, text)
    out = run_train(build, job)
    assert out.returncode == 1
    assert "mean accuracy (the grader's score) was 0 for 2 steps in a row" in out.stderr and "Traceback" not in out.stderr
    assert not (job_dir(build, job) / "done.json").exists()


@pytest.mark.parametrize("zero", [2, 3])
def test_optimizer_offload_matches_no_offload(tmp_path, tiny_model_dir, zero):
    """`resources.deepspeed.offload_optimizer: true` (and ZeRO-3 `offload_params`) train with torch's
    AdamW kept on the host (DeepSpeed raised ZeRORuntimeException before) and end with the weights
    of the same run without offload. On CPU the "device" is the host too, so this checks DeepSpeed's
    offload code path and the maths, not the transfer a GPU run makes."""
    runs = {}
    for offload in (False, True):
        ds = f"deepspeed: {{zero_stage: {zero}, offload_optimizer: {str(offload).lower()}"
        ds += f", offload_params: {str(offload).lower()}}}" if zero == 3 else "}"
        text = spec_text(tiny_model_dir, steps=2, every=10).replace("resources:\n", f"resources:\n  {ds}\n")
        build, job = compile_and_curate(tmp_path / f"o{int(offload)}", text)
        out = run_train(build, job)
        assert out.returncode == 0, out.stderr[-3000:]
        runs[offload] = weights(job_dir(build, job) / "model")
    for name in runs[False]:
        assert torch.allclose(runs[False][name], runs[True][name], atol=1e-6), name


def test_zero3_on_two_ranks_matches_one_rank(tmp_path, tiny_model_dir):
    """ZeRO-3 partitions the weights over 2 gloo ranks: every layer call gathers collectively, so both
    ranks must make the same calls (the chunked log-probs agree on a chunk count; a rank with no
    sequences runs dummy forwards). Stands in for NCCL ranks on GPUs; ends with 1 rank's weights."""
    runs = {}
    for ranks, zero in ((1, 2), (2, 3)):
        text = spec_text(tiny_model_dir, engine="vllm", steps=2, ranks=ranks, every=10,
                         extra_algorithm="logprob_chunk_tokens: 8\nmini_batch_size: 2")
        text = text.replace("resources:\n", f"resources:\n  deepspeed: {{zero_stage: {zero}}}\n")
        build, job = compile_and_curate(tmp_path / f"z{zero}", text)
        out = run_train(build, job, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        runs[ranks] = (metrics(build, job), weights(job_dir(build, job) / "model"))
    (m1, w1), (m2, w2) = runs[1], runs[2]
    assert [r["reward_mean"] for r in m1] == [r["reward_mean"] for r in m2]
    for name in w1:
        assert torch.allclose(w1[name], w2[name], atol=1e-5), name


def test_one_update_over_several_mini_batches_is_off_policy_after_the_first(tmp_path, tiny_model_dir):
    """updates_per_batch 1 with mini_batch_size 2 of 4 prompts: the second mini-batch is optimised
    after the first moved the weights, so its importance ratio is not 1 (old log-probs are the
    batch's, taken before the first optimiser step). Before, every mini-batch used its own forward
    as the old policy: ratio exactly 1, clipping could never bind (issue 16)."""
    # the entropy bonus moves the weights even when a mini-batch's rewards are all equal
    build, job = compile_and_curate(tmp_path, spec_text(tiny_model_dir, steps=2, every=10,
                                                        extra_algorithm="mini_batch_size: 2\nentropy_coef: 0.05"))
    out = run_train(build, job)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = metrics(build, job)
    assert all(r["ratio_max_dev"] > 0 for r in rows)
    # and clipping binds: the first mini-batch's step moved the policy past 1 ± clip for some tokens
    # of the second (measured 2.4% and 3.7% of tokens; before the fix it was 0.0 on every step)
    assert all(r["clip_frac"] > 0 for r in rows)


def test_token_budget_and_packed_micro_batches_train_like_fixed_ones(tmp_path, tiny_model_dir):
    """Micro-batch shape never changes the maths (issue 14): fixed micro-batches of 2 sequences, a
    token budget of padded micro-batches, and on 2 gloo ranks with ZeRO-3 a budget of packed
    (padding-free) micro-batches, whose ranks plan different micro-batch counts and pad to the
    largest with dummy forwards, all end with the same weights. vLLM samples independently of the
    rank split, so every run trains on the same responses."""
    configs = {
        "fixed": (1, "micro_batch_size: 2", ""),
        "budget": (1, "micro_batch_size: 16\nmax_tokens_per_micro_batch: 256", ""),
        "packed": (2, "micro_batch_size: 16\nmax_tokens_per_micro_batch: 256\npack_sequences: true",
                   "  deepspeed: {zero_stage: 3}\n"),
    }
    runs = {}
    for name, (ranks, alg, ds) in configs.items():
        text = spec_text(tiny_model_dir, engine="vllm", steps=2, ranks=ranks, every=10, extra_algorithm=alg)
        text = text.replace("  micro_batch_size: 4\n", "", 1).replace("resources:\n", "resources:\n" + ds)
        build, job = compile_and_curate(tmp_path / name, text)
        out = run_train(build, job, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        runs[name] = (metrics(build, job), weights(job_dir(build, job) / "model"))
    m_fixed, w_fixed = runs["fixed"]
    for name in ("budget", "packed"):
        m, w = runs[name]
        assert [r["reward_mean"] for r in m] == [r["reward_mean"] for r in m_fixed]
        assert [r["loss"] for r in m] == pytest.approx([r["loss"] for r in m_fixed], rel=1e-5, abs=1e-7)
        assert [r["grad_norm"] for r in m] == pytest.approx([r["grad_norm"] for r in m_fixed], rel=1e-5)
        for key in w_fixed:
            assert torch.allclose(w[key], w_fixed[key], atol=1e-5), (name, key)
    # the plans really differed: 16 sequences in pairs; 4-5 sequences of ~45 tokens under a 256-token
    # padded budget; packed on 2 ranks (8 sequences each), no padding at all
    budget, packed = runs["budget"][0], runs["packed"][0]
    assert [r["micro_batches"] for r in m_fixed] == [8, 8]
    assert all(2 < r["micro_batches"] < 8 and r["pad_fraction"] > 0.0 for r in budget)
    assert all(r["micro_batches"] <= b["micro_batches"] and r["pad_fraction"] == 0.0 for r, b in zip(packed, budget))


def test_a_stop_signal_checkpoints_at_the_step_boundary_and_the_rerun_resumes(tmp_path, tiny_model_dir):
    """Slurm sends `--signal` (here SIGUSR1) before the time limit, and SIGTERM on `scancel` or
    preemption: the step in flight finishes, a checkpoint of it is written (checkpoint_every is 10,
    so none would exist otherwise), the job exits 1 without done.json, and the rerun resumes from
    that step and ends with the uninterrupted run's weights (issue 13). The signal is sent to the
    job's process as Slurm's step daemon would."""
    import signal
    import time
    text = spec_text(tiny_model_dir, engine="hf", steps=3, every=10)
    ref_build, ref_job = compile_and_curate(tmp_path / "ref", text)
    assert run_train(ref_build, ref_job).returncode == 0
    reference = (job_dir(ref_build, ref_job) / "model" / "model.safetensors").read_bytes()
    for sig in (signal.SIGUSR1, signal.SIGTERM):
        build, job = compile_and_curate(tmp_path / sig.name, text)
        folder = job_dir(build, job)
        proc = subprocess.Popen([sys.executable, "-m", "rlspec.runtime.train", "--job", str(job.relative_to(build)),
                                 "--context", "context.json"], cwd=build, env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 600
        log = folder / "metrics.jsonl"
        while not (log.exists() and log.read_text().strip()) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(sig)  # during step 2 at the latest: step 1 is logged, the job goes on
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 1, err[-3000:]
        assert f"stopped by {sig.name} after step" in err and "Traceback" not in err
        stopped_at = int(err.split("after step ")[1].split()[0])
        assert stopped_at < 3 and not (folder / "done.json").exists()
        assert (folder / "checkpoints" / f"step-{stopped_at:06d}").is_dir()
        resumed = run_train(build, job)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert f"resumed from step-{stopped_at:06d}" in resumed.stdout
        assert (folder / "model" / "model.safetensors").read_bytes() == reference, sig.name


def test_tensor_parallel_rollout_on_two_ranks_matches_one(tmp_path, tiny_model_dir):
    """`rollout.vllm.tensor_parallel_size: 2` on 2 gloo ranks: one engine split over a TP group of both
    training ranks (vLLM's external launcher over the torch world DeepSpeed made), both ranks asking it
    for the group's prompts and keeping their own share. Stands in for TP groups of a node's GPUs over
    NCCL. The TP shards' partial sums change float rounding only, so the samples, rewards and the
    trained weights are those of 1 rank with an unsplit engine."""
    runs = {}
    for ranks, tp in ((1, 1), (2, 2)):
        text = spec_text(tiny_model_dir, engine="vllm", steps=2, ranks=ranks, every=10).replace(
            "vllm: {kv_cache_memory_bytes:", f"vllm: {{tensor_parallel_size: {tp}, kv_cache_memory_bytes:")
        build, job = compile_and_curate(tmp_path / f"tp{tp}", text)
        assert json.loads(job.read_text())["config"]["inference"]["rollout"]["vllm"]["tensor_parallel_size"] == tp
        out = run_train(build, job, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        done = json.loads((job_dir(build, job) / "done.json").read_text())
        runs[tp] = (metrics(build, job), weights(job_dir(build, job) / "model"), done["engine_placement"])
    (m1, w1, _), (m2, w2, placement) = runs[1], runs[2]
    assert [(p["engine"]["rank"], p["engine"]["tp_rank"], p["engine"]["tp_size"], p["engine"]["dp_size"])
            for p in placement] == [(0, 0, 2, 1), (1, 1, 2, 1)]
    assert [r["reward_mean"] for r in m1] == [r["reward_mean"] for r in m2]
    assert [r["loss"] for r in m2] == pytest.approx([r["loss"] for r in m1], rel=1e-4, abs=1e-6)
    for name in w1:
        assert torch.allclose(w1[name], w2[name], atol=1e-5), name


def test_sleep_mode_frees_the_engine_and_changes_no_number(tmp_path, tiny_model_dir):
    """`rollout.sleep_mode: true` with the transformers engine (real, on CPU): every step the engine
    frees its weights after generating and gets them back through the weight push; the run's rewards,
    losses and weights are bit-identical to the run without sleep mode. (vLLM's sleep mode needs CUDA;
    the trainer makes the same calls on it.)"""
    runs = {}
    for sleep in (False, True):
        text = spec_text(tiny_model_dir, engine="hf", steps=3, every=10).replace(
            "  temperature: 1.0\n", f"  temperature: 1.0\n  sleep_mode: {str(sleep).lower()}\n", 1)
        build, job = compile_and_curate(tmp_path / f"sleep-{sleep}", text)
        assert json.loads(job.read_text())["config"]["sleep_mode"] is sleep
        out = run_train(build, job)
        assert out.returncode == 0, out.stderr[-3000:]
        assert f"engine sleep mode: {'on' if sleep else 'off'}" in out.stdout
        runs[sleep] = (metrics(build, job), weights(job_dir(build, job) / "model"))
    (m_off, w_off), (m_on, w_on) = runs[False], runs[True]
    keys = ("reward_mean", "loss", "response_len_mean", "entropy")
    assert [[r[k] for k in keys] for r in m_on] == [[r[k] for k in keys] for r in m_off]
    assert all(r["time_engine_sleep_s"] > 0 for r in m_on) and all(r["time_engine_sleep_s"] == 0 for r in m_off)
    for name in w_off:
        assert torch.equal(w_off[name], w_on[name]), name
