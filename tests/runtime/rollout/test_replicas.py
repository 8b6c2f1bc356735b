"""Data-parallel sampling (`rlspec.runtime.rollout.replicas`): global-index seeds in both engines, the
placement of replicas on devices and nodes, real replica processes on the tiny model (device slices,
a killed replica, a multi-node launch through a fake srun), and the launch lines of a replica that
spans nodes.

Stand-ins, where the real thing cannot run here: GPUs are CUDA_VISIBLE_DEVICES values only (the
replicas run on CPU; what is checked is the slice each process is given), and Slurm is a fake
`scontrol` + `srun` on PATH (srun runs each node's task as a local process with its SLURM_PROCID).
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
from pathlib import Path

import pytest

from rlspec.compiler.jobs import EngineSettings, Inference, Replicas
from rlspec.runtime.rollout import SamplingParams, make_engine
from rlspec.runtime.rollout import replicas as rep

MAX_MODEL_LEN = 256


def rollout(engine: str) -> dict:
    """An inference job's engine block (EngineSettings) as the compiler writes it."""
    return {"engine": engine, "max_prompt_tokens": 128, "hf": {"batch_size": 8},
            "vllm": {"tensor_parallel_size": 1, "pipeline_parallel_size": 1, "quantization": None,
                     "gpu_memory_utilization": 0.5, "kv_cache_memory_bytes": 64 << 20, "enforce_eager": True,
                     "max_num_seqs": 64}}


def inference(engine: str) -> Inference:
    prompt = {"default": {"chat_template_args": {}, "code_suffix": "", "math_suffix": "", "system": None,
                          "template": "{question}", "use_chat_template": None}, "domains": {}}
    return Inference.model_validate({"rollout": rollout(engine), "dtype": "float32",
                                     "max_model_len": MAX_MODEL_LEN, "prompt": prompt})


def replicas(count: int, *, gpus: int = 0, nodes: int = 1, gpus_per_node: int = 0, cpus: int = 1) -> Replicas:
    return Replicas(count=count, gpus=gpus, nodes=nodes, gpus_per_node=gpus_per_node, cpus=cpus)


PROMPTS = [[5 + i, 7, 9 + i % 3] * (1 + i % 4) for i in range(9)]  # different lengths
SAMPLING = SamplingParams(n=3, temperature=1.0, top_p=1.0, top_k=-1, max_tokens=12, seed=11)


def as_data(groups) -> list:
    return [[(s.token_ids, s.text, s.finish_reason) for s in g] for g in groups]


def flat_logprobs(groups) -> list[float]:
    return [lp for g in groups for s in g for lp in s.logprobs]


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    """Every prompt's samples from one in-process hf engine (count 1): what any split must give."""
    return rep.sample(tiny_model_dir, PROMPTS, SAMPLING, inference=inference("hf"), replicas=replicas(1), label="t")


# ---------------------------------------------------------------------------------------------
# seeds by global index
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["hf", pytest.param("vllm", marks=pytest.mark.slow)])
def test_a_prompt_samples_the_same_in_any_call_given_its_global_index(tiny_model_dir, engine):
    """Prompt g gets seed + g*n whichever call, shard or order it is in; without indices the seed is
    its position in the call, so moving it changes its samples (the test can fail)."""
    if engine == "vllm":
        pytest.importorskip("vllm")
    settings = EngineSettings.model_validate(rollout(engine))
    with make_engine(tiny_model_dir, settings, dtype="float32", seed=0, max_model_len=MAX_MODEL_LEN) as e:
        whole = as_data(e.generate(PROMPTS, SAMPLING))
        odd = list(range(1, len(PROMPTS), 2))[::-1]  # a strided shard, in reverse order
        shard = as_data(e.generate([PROMPTS[g] for g in odd], SAMPLING, indices=odd))
        unindexed = as_data(e.generate([PROMPTS[g] for g in odd], SAMPLING))
    assert shard == [whole[g] for g in odd]
    assert unindexed != [whole[g] for g in odd]
    assert whole[0][0] != whole[0][1]  # the n samples of a prompt have streams of their own


def test_generate_refuses_indices_that_do_not_match_the_prompts(tiny_model_dir):
    settings = EngineSettings.model_validate(rollout("hf"))
    with make_engine(tiny_model_dir, settings, dtype="float32", seed=0, max_model_len=MAX_MODEL_LEN) as e:
        with pytest.raises(ValueError, match="2 prompts but 1 indices"):
            e.generate(PROMPTS[:2], SAMPLING, indices=[0])
        with pytest.raises(ValueError, match=r"index, length: \[\(7, 200\)\]"):
            e.generate([[5] * 200], SAMPLING, indices=[7])


def test_hf_engine_refuses_pipeline_parallel_and_quantization(tiny_model_dir):
    for key, value in (("pipeline_parallel_size", 2), ("quantization", "fp8")):
        block = rollout("hf")
        block["vllm"][key] = value
        with pytest.raises(ValueError, match=f"engine hf cannot run {key}"):
            make_engine(tiny_model_dir, EngineSettings.model_validate(block), dtype="float32", seed=0,
                        max_model_len=MAX_MODEL_LEN)


def test_vllm_gets_pipeline_parallel_quantization_and_multi_node_arguments():
    """The arguments `vllm.LLM` (and the headless nodes' `EngineArgs`) get: the job's PP and
    quantization, and vLLM's multi-node mp-executor arguments for a replica that spans nodes."""
    from rlspec.runtime.rollout.vllm_engine import MultiNode, llm_kwargs
    block = rollout("vllm")
    block["vllm"].update(tensor_parallel_size=8, pipeline_parallel_size=2, quantization="fp8")
    settings = EngineSettings.model_validate(block)
    kwargs = llm_kwargs("/m", settings, dtype="bfloat16", seed=3, max_model_len=4096,
                        multinode=MultiNode(nnodes=2, node_rank=1, master_addr="node-a", master_port=30007))
    assert {k: kwargs[k] for k in ("tensor_parallel_size", "pipeline_parallel_size", "quantization", "nnodes",
                                   "node_rank", "master_addr", "master_port", "distributed_executor_backend",
                                   "max_model_len")} == {
        "tensor_parallel_size": 8, "pipeline_parallel_size": 2, "quantization": "fp8", "nnodes": 2, "node_rank": 1,
        "master_addr": "node-a", "master_port": 30007, "distributed_executor_backend": "mp", "max_model_len": 4096}
    assert "nnodes" not in llm_kwargs("/m", settings, dtype="bfloat16", seed=3, max_model_len=4096, multinode=None)


# ---------------------------------------------------------------------------------------------
# placement and launch lines
# ---------------------------------------------------------------------------------------------


def test_placement_gives_each_replica_its_own_devices():
    procs = rep.placement(replicas(4, gpus=2, nodes=1, gpus_per_node=8), ["0", "1", "2", "3", "4", "5", "6", "7"])
    assert [p.devices for p in procs] == [("0", "1"), ("2", "3"), ("4", "5"), ("6", "7")]
    # a job given a device slice (CUDA_VISIBLE_DEVICES=4,5,6,7) splits that slice, not the node
    procs = rep.placement(replicas(2, gpus=2, nodes=1, gpus_per_node=4),
                          rep.visible_devices({"CUDA_VISIBLE_DEVICES": "4,5,6,7"}, replicas(2)))
    assert [p.devices for p in procs] == [("4", "5"), ("6", "7")]
    # 64 one-GPU replicas on 8 nodes (the 7B spec's filter job): 8 per node, node by node
    procs = rep.placement(replicas(64, gpus=1, nodes=8, gpus_per_node=8), [str(i) for i in range(8)])
    assert [(p.node, p.devices) for p in procs[7:9]] == [(0, ("7",)), (1, ("0",))]
    assert {p.node for p in procs} == set(range(8)) and all(p.span == 1 for p in procs)
    # CPU replicas: no devices at all (the replica hides the GPUs), one per node when spread
    assert [(p.node, p.devices) for p in rep.placement(replicas(2, nodes=2), [])] == [(0, ()), (1, ())]
    with pytest.raises(rep.ReplicaError, match="need 8 GPUs; this job sees 4"):
        rep.placement(replicas(4, gpus=2, nodes=1, gpus_per_node=8), ["0", "1", "2", "3"])


def test_a_replica_bigger_than_a_node_spans_nodes_with_its_leader_host():
    """The 7B spec's R1 sample job: 2 replicas of TP 8 x PP 2 = 16 GPUs on 4 nodes of 8 GPUs."""
    r1 = replicas(2, gpus=16, nodes=4, gpus_per_node=8, cpus=64)
    procs = rep.placement(r1, [str(i) for i in range(8)])
    assert [(p.replica, p.node, p.node_rank, p.span) for p in procs] == [
        (0, 0, 0, 2), (0, 1, 1, 2), (1, 2, 0, 2), (1, 3, 1, 2)]
    assert all(p.devices == tuple(str(i) for i in range(8)) for p in procs)
    hosts = ["n1", "n2", "n3", "n4"]
    lines = [rep.proc_command(Path("/b/task.json"), p, hosts, "4711", python="py") for p in procs]
    assert lines[3] == ["py", "-m", "rlspec.runtime.rollout.replica", "--task", "/b/task.json", "--replica", "1",
                        "--node-rank", "1", "--master-addr", "n3", "--master-port", str(rep.master_port("4711", 1))]
    assert lines[0][lines[0].index("--master-addr") + 1] == "n1"
    assert rep.master_port("4711", 0) != rep.master_port("4711", 1)
    with pytest.raises(rep.ReplicaError, match="need 6 nodes; the job has 4"):
        rep.placement(replicas(3, gpus=16, nodes=4, gpus_per_node=8), [])
    with pytest.raises(rep.ReplicaError, match="cannot span whole nodes"):
        rep.span(replicas(1, gpus=12, nodes=2, gpus_per_node=8))


def test_srun_line_follows_the_train_jobs_conventions():
    line = rep.srun_command(Path("/b/task.json"), replicas(2, gpus=16, nodes=4, gpus_per_node=8),
                            job_id="4711", cpus_per_task="64", python="py")
    assert line == ["srun", "--jobid=4711", "--overlap", "--nodes=4", "--ntasks=4", "--ntasks-per-node=1",
                    "--cpus-per-task=64", "--mem=0", "--gres=gpu:8", "--kill-on-bad-exit=1", "--label",
                    "--export=ALL", "py", "-m", "rlspec.runtime.rollout.replica", "--task", "/b/task.json",
                    "--node-from-env"]
    with pytest.raises(rep.ReplicaError, match="no SLURM_CPUS_PER_TASK"):
        rep.srun_command(Path("t"), replicas(2, nodes=2), job_id="1", cpus_per_task="")


def test_sample_needs_a_seed_and_starts_no_engine_for_no_prompts(tmp_path):
    missing = tmp_path / "no-model"  # an engine on it would fail: none may start
    out = rep.sample(missing, [], SAMPLING, inference=inference("hf"), replicas=replicas(2), label="t")
    assert list(out.groups) == [] and out.replicas == []
    unseeded = SamplingParams(n=1, temperature=1.0, top_p=1.0, top_k=-1, max_tokens=4)
    with pytest.raises(ValueError, match="needs a seed"):
        rep.sample(missing, PROMPTS, unseeded, inference=inference("hf"), replicas=replicas(1), label="t")


def test_engine_calls_of_a_few_rows_give_the_one_call_samples_and_stream_to_the_consumer(tiny_model_dir, reference,
                                                                                         monkeypatch):
    """A shard is sampled in calls of up to ROWS_PER_CALL rows (bounded memory); with 2 prompts per
    call instead of all 9 in one, every prompt still gets its samples (seeded by global index), and
    `consume` receives them in global order without the call keeping any."""
    monkeypatch.setattr(rep, "ROWS_PER_CALL", 2 * SAMPLING.n)
    seen = []
    out = rep.sample(tiny_model_dir, PROMPTS, SAMPLING, inference=inference("hf"), replicas=replicas(1), label="t",
                     consume=lambda g, group: seen.append((g, group)))
    assert [g for g, _ in seen] == list(range(len(PROMPTS))) and list(out.groups) == []
    assert as_data([group for _, group in seen]) == as_data(reference.groups)
    assert out.groups.timing.generated_tokens == reference.groups.timing.generated_tokens > 0


def test_merge_reads_shards_in_global_order_and_refuses_missing_or_extra_prompts(tmp_path):
    def shard(r: int, rows: list[int]) -> None:
        (tmp_path / f"shard-{r}.json").write_text(json.dumps({"replica": r}))
        (tmp_path / f"shard-{r}.jsonl").write_text("".join(
            json.dumps({"g": g, "samples": [[[g], [0.0], "stop", str(g)]]}) + "\n" for g in rows))
    shard(0, [0, 2, 4])
    shard(1, [1, 3])
    seen = []
    assert rep.merge(tmp_path, 2, 5, 1, lambda g, group: seen.append((g, group[0].text))) == [
        {"replica": 0}, {"replica": 1}]
    assert seen == [(g, str(g)) for g in range(5)]  # one prompt at a time, in global order
    with pytest.raises(rep.ReplicaError, match=r"replica 1's shard lacks the 1 samples of prompt 5 .* ends early"):
        rep.merge(tmp_path, 2, 7, 1, lambda g, group: None)
    with pytest.raises(rep.ReplicaError, match=r"the shards of replicas \[0\] hold more prompts"):
        rep.merge(tmp_path, 2, 4, 1, lambda g, group: None)
    shard(1, [3, 1])
    with pytest.raises(rep.ReplicaError, match="lacks the 1 samples of prompt 1 .* found 3"):
        rep.merge(tmp_path, 2, 5, 1, lambda g, group: None)


# ---------------------------------------------------------------------------------------------
# real replica processes (hf engine on the tiny model)
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_replicas_see_their_device_slice_and_give_the_single_engine_samples(tiny_model_dir, reference, monkeypatch):
    """2 replicas of 2 'GPUs' out of CUDA_VISIBLE_DEVICES=0,1,2,3: each process sees its own slice
    (as its environment; the CPU-only torch ignores it) and one thread, and the merged samples equal
    the in-process engine's, prompt by prompt."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    out = rep.sample(tiny_model_dir, PROMPTS, SAMPLING, inference=inference("hf"),
                     replicas=replicas(2, gpus=2, gpus_per_node=4), label="t")
    assert [(s["replica"], s["devices"], s["threads"], s["prompts"]) for s in out.replicas] == [
        (0, "0,1", 1, 5), (1, "2,3", 1, 4)]
    assert as_data(out.groups) == as_data(reference.groups)
    assert flat_logprobs(out.groups) == pytest.approx(flat_logprobs(reference.groups), abs=1e-5)
    assert out.groups.timing.generated_tokens == reference.groups.timing.generated_tokens


@pytest.mark.slow
def test_a_killed_replica_fails_the_call_and_leaves_no_shards(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the scratch folder goes on one node
    monkeypatch.setenv("RLSPEC_FAULT", "replica:1")
    with pytest.raises(rep.ReplicaError, match=r"replica 1 of 2 failed \(killed by signal SIGKILL\); no samples"):
        rep.sample(tiny_model_dir, PROMPTS, SAMPLING, inference=inference("hf"), replicas=replicas(2), label="t")
    assert list(tmp_path.iterdir()) == []


FAKE_SCONTROL = """#!/bin/sh
# fake `scontrol show hostnames <list>`: the test's two nodes
echo node-a; echo node-b
"""
FAKE_SRUN = f"""#!{sys.executable}
# fake srun: records its arguments, then runs the command once per task (SLURM_PROCID = the task),
# all on this machine; the step fails when a task does, like --kill-on-bad-exit=1.
import json, os, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_SRUN_LOG"], "w") as fh:
    json.dump(args, fh)
at = next(i for i, a in enumerate(args) if not a.startswith("--"))
tasks = int(next(a for a in args if a.startswith("--ntasks=")).split("=")[1])
procs = [subprocess.Popen(args[at:], env={{**os.environ, "SLURM_PROCID": str(k)}}) for k in range(tasks)]
sys.exit(max(p.wait() for p in procs))
"""


@pytest.mark.slow
def test_multi_node_replicas_start_through_srun_in_the_allocation(tiny_model_dir, reference, tmp_path, monkeypatch):
    """Two CPU replicas on two 'nodes' of a fake Slurm allocation: one srun task per node starts that
    node's replica; the samples equal the single engine's and the scratch folder (in the current
    folder, which the nodes share) is removed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("scontrol", FAKE_SCONTROL), ("srun", FAKE_SRUN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SRUN_LOG", str(tmp_path / "srun.json"))
    for key, value in {"SLURM_JOB_ID": "4711", "SLURM_JOB_NODELIST": "node-[a-b]", "SLURM_CPUS_PER_TASK": "1",
                       "SLURM_NTASKS": "1"}.items():
        monkeypatch.setenv(key, value)
    work = tmp_path / "build"
    work.mkdir()
    monkeypatch.chdir(work)
    out = rep.sample(tiny_model_dir, PROMPTS, SAMPLING, inference=inference("hf"),
                     replicas=replicas(2, nodes=2), label="t")
    assert as_data(out.groups) == as_data(reference.groups)
    line = json.loads((tmp_path / "srun.json").read_text())
    assert line[:9] == ["--jobid=4711", "--overlap", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1",
                        "--cpus-per-task=1", "--mem=0", "--kill-on-bad-exit=1", "--label"]
    assert line[-3] == "--task" and line[-2].endswith("task.json") and line[-1] == "--node-from-env"
    assert list(work.iterdir()) == []
