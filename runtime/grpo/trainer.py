"""The GRPO trainer behind `python -m rlspec.runtime.train` (see that module for the overview).

Everything the stage does is decided by the job config (the spec's resolved stage: `algorithm`,
`rollout`, lengths, schedules); nothing here invents a default. The pieces:

- rollout: `rlspec.runtime.rollout` engine, one seeded `generate` per step (seeds depend only on
  the step and the prompt's place in the global batch, so any rank split and any resume samples the
  same responses);
- rewards: `rlspec.runtime.scoring.score` (math grader / code sandbox), overlong handling;
- loss: `rlspec.runtime.grpo.algos` (group advantages, clipped token loss, KL, aggregation);
- optimisation: DeepSpeed (`grpo.distributed`), torch AdamW, gradient accumulation over
  micro-batches (fixed counts, or a token budget with optional padding-free packing: `grpo.batch`)
  with the whole mini-batch's normaliser, so micro-batching never changes the maths;
- state: `grpo.checkpoint` (atomic, resumable), `grpo.sampler`, `grpo.temperature`, `tracking`.
"""

from __future__ import annotations

import contextlib
import math
import shutil
from collections import Counter
import os
import time
from pathlib import Path
from typing import Any

import torch

from rlspec.compiler.jobs import TrainJob
from rlspec.compiler.spec import Optimizer
from rlspec.runtime.atomic import replace_dir_atomic, temp_path, write_json_atomic
from rlspec.runtime.job import Job, fault_point, model_dir
from rlspec.runtime.peakmem import PhasePeak

from . import algos, attention, checkpoint, distributed, lora, weightsync
from .batch import (RolloutBatch, copy_sources, drop_equal_groups, engine_logprobs, equal_groups, first_kept,
                    keep_first_groups, micro_batches, pack, pack_flat, response_mask, stack, training_rewards,
                    with_copies)
from .chunked import PolicyLogprobs, response_logprobs
from .entropy import EntropyController
from .sampler import (STATS_FILE, MixedSampler, PromptSampler, above_accuracy, merged_stats, read_prompt_stats,
                      steps_for, write_prompt_stats)
from .temperature import TemperatureController

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class TrainError(Exception):
    """A stage that cannot go on; the message says why and what to change."""


class Preempted(TrainError):
    """SIGUSR1 or SIGTERM arrived (Slurm's `--signal` before the time limit, `scancel`, preemption):
    the step in flight finished, a checkpoint was written, and the job exits non-zero so the
    workflow's retry resumes from that checkpoint."""


STOP_SIGNALS = ("SIGUSR1", "SIGTERM")


class _StopSignals:
    """Records the first stop signal instead of dying in the middle of a step."""

    def __init__(self) -> None:
        import signal
        self.received: str | None = None
        self._owner = os.getpid()  # forked children (grader pools) inherit the handler: they must still die
        self._previous = {}
        for name in STOP_SIGNALS:
            sig = getattr(signal, name)
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        import signal
        if os.getpid() != self._owner:  # a forked worker being terminated: the default action
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received = self.received or signal.Signals(signum).name

    def restore(self) -> None:
        import signal
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def load_prompt_records(data_dirs: list[str]) -> list[dict[str, Any]]:
    from rlspec.runtime.data.records import read_prompts
    records: list[dict[str, Any]] = []
    for d in data_dirs:
        path = Path(d) / "prompts.parquet"
        if not path.is_file():
            raise TrainError(f"input prompts {path} are missing; did the curation job finish?")
        records.extend(read_prompts(path))
    return records


class Trainer:
    def __init__(self, job: Job):
        self.job = job
        self.cfg: TrainJob = job.config
        self.alg = self.cfg.algorithm
        self.out = Path(job.output_dir)
        self.step = 0

    # ------------------------------------------------------------------------------- set-up

    def setup(self) -> None:
        """The named steps, in order: the process group, the prompts, the engine (before our own
        seeding: vLLM re-seeds torch), the policy and reference, DeepSpeed, the tracker."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.dist = distributed.init(torch.cuda.is_available(), timeout_minutes=self.cfg.deepspeed.timeout_minutes)
        self.source = str(model_dir(self.job))
        self._setup_prompts()
        self._setup_engine()
        torch.manual_seed(self.cfg.seed)
        model = self._setup_models()
        self._setup_optimisation(model)
        self._setup_tracking()

    def _setup_prompts(self) -> None:
        """The stage's prompts, rendered and tokenised, dataset by dataset (one input folder each, in
        the stage's order). Dropped before training and counted in done.json: prompts over the budget,
        min(rollout.max_prompt_tokens, max_context - max_response_tokens), and with
        `drop_prompts_above_accuracy` those whose accuracy in the earlier stages (the policy input
        folder's prompt_stats.json) is above it. Then the sampler: pooled, or by `dataset_weights`."""
        from transformers import AutoTokenizer

        from rlspec.runtime.prompts import render_prompt
        from rlspec.runtime.scoring import record_domain
        cfg = self.cfg
        self.tokenizer = AutoTokenizer.from_pretrained(self.source)
        limit = min(cfg.inference.rollout.max_prompt_tokens, cfg.inference.max_model_len - cfg.max_response_tokens)
        self.earlier_stats = read_prompt_stats(self.job.inputs["policy"])
        threshold = cfg.drop_prompts_above_accuracy
        self.records, self.prompt_ids, self.domains, self.dataset_of, sizes = [], [], [], [], []
        self.dataset_names = [_dataset_name(folder) for folder in self.job.inputs["data"]]
        self.dropped_long = self.dropped_accurate = 0
        for folder, name in zip(self.job.inputs["data"], self.dataset_names):
            records = load_prompt_records([folder])
            accurate = ([False] * len(records) if threshold is None
                        else above_accuracy(records, self.earlier_stats, threshold))
            self.dropped_accurate += sum(accurate)
            kept = [rec for rec, drop in zip(records, accurate) if not drop]
            for rec in kept:
                domain = record_domain(rec)
                ids = self.tokenizer(render_prompt(rec, domain, cfg.inference.prompt, self.tokenizer),
                                     add_special_tokens=False)["input_ids"]
                if 0 < len(ids) <= limit:
                    self.records.append(rec)
                    self.prompt_ids.append(ids)
                    self.domains.append(domain)
                    self.dataset_of.append(name)
            sizes.append(len(self.records) - sum(sizes))
            self.dropped_long += len(kept) - sizes[-1]
        if threshold is not None:
            print(f"drop_prompts_above_accuracy {threshold}: {self.dropped_accurate} prompts dropped (accuracy in "
                  f"earlier stages above it; {len(self.earlier_stats)} prompts have earlier rollouts)", flush=True)
        self.sampler = self._make_sampler(sizes)
        self.total_steps = steps_for(cfg, len(self.records))
        self.temperature = TemperatureController(cfg.sampling.temperature)
        self.max_group = max(cfg.group_size.all())

    def _make_sampler(self, sizes: list[int]) -> PromptSampler | MixedSampler:
        """One shuffle over every prompt, or with `dataset_weights` one per dataset, mixed."""
        cfg = self.cfg
        if cfg.dataset_weights is None:
            return PromptSampler(len(self.records), cfg.seed, cfg.prompts_per_step, retire_solved=self.alg.filter_solved)
        names = self.dataset_names
        if sorted(names) != sorted(cfg.dataset_weights):
            raise TrainError(f"dataset_weights name {sorted(cfg.dataset_weights)} but the input folders hold the "
                             f"datasets {names}; recompile with `rlspec compile`")
        return MixedSampler(sizes, [cfg.dataset_weights[n] for n in names], cfg.seed, cfg.prompts_per_step,
                            retire_solved=self.alg.filter_solved)

    def _setup_engine(self) -> None:
        from rlspec.runtime.rollout import make_engine
        inf = self.cfg.inference
        # The in-process vLLM engine re-seeds torch and patches set_num_threads: build it before
        # seeding our own generators (the engine module also isolates those side effects).
        world = self.dist.world
        self.tp = inf.rollout.vllm.tensor_parallel_size if inf.rollout.engine == "vllm" else 1
        if world % self.tp:
            raise TrainError(f"rollout.vllm.tensor_parallel_size {self.tp} does not divide the {world} ranks; "
                             "`rlspec check` refuses this spec")
        # more than one rank (or TP): the vLLM engine joins the training world (external launcher), one
        # per rank on the rank's own device, in TP groups of consecutive ranks
        joined = (world, self.tp) if inf.rollout.engine == "vllm" and (world > 1 or self.tp > 1) else None
        # rollout.sleep_mode (null: on where CUDA is): the engine frees its memory while the trainer trains
        self.sleep_mode = torch.cuda.is_available() if self.cfg.sleep_mode is None else self.cfg.sleep_mode
        if self.sleep_mode and inf.rollout.engine == "vllm" and not torch.cuda.is_available():
            raise TrainError("rollout.sleep_mode: true with the vLLM engine on a machine without CUDA: vLLM has no "
                             "sleep mode there; `rlspec check` refuses this spec for a CPU train job")
        self.engine = make_engine(self.source, inf.rollout, dtype=inf.dtype, seed=self.cfg.seed,
                                  max_model_len=inf.max_model_len, train_world=joined, sleep_mode=self.sleep_mode)
        self.placements = distributed.all_gather_objects(
            {"rank": self.dist.rank, "local_rank": self.dist.local_rank, "device": self.dist.device,
             "engine": self.engine.placement()})
        _check_placement(self.placements, self.tp, joined is not None)
        if self.dist.main:
            print("rollout engine placement: " + "; ".join(
                f"rank {p['rank']} -> {p['engine']['device']}" + (
                    f" (tp {p['engine']['tp_rank']}/{p['engine']['tp_size']}, dp {p['engine']['dp_rank']}/"
                    f"{p['engine']['dp_size']}, {p['engine']['executor']})" if "tp_rank" in p["engine"] else "")
                for p in self.placements),
                  flush=True)

    def _setup_models(self):
        from transformers import AutoModelForCausalLM
        # every training forward (policy and reference) attends per sequence (attention.py): no dense mask
        attn = attention.register()
        with _partitioned_load(self.cfg, self.dist.world):
            model = AutoModelForCausalLM.from_pretrained(self.source, dtype=torch.float32, attn_implementation=attn)
        model.config.use_cache = False
        checkpointing = self.alg.gradient_checkpointing
        if checkpointing is None:  # the spec's default: on where memory is scarce (GPUs), off on CPU
            checkpointing = torch.cuda.is_available()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.train()  # HF layers checkpoint only in training mode (dropout stays as configured)
        if self.cfg.lora is not None:  # model.lora: adapters train, the input model's weights stay frozen
            model = lora.wrap(model, self.cfg.lora)
        self.ref_model = None
        ref_note = "none (kl.coef = 0)"
        if self.alg.kl.coef > 0 and self.cfg.lora is not None and self.alg.kl.reference == "stage_input":
            self.ref_model = lora.AdapterOff(model)  # the stage's input model: the policy's frozen base layers
            ref_note = "the policy with its adapter off (LoRA, kl.reference stage_input; no second model)"
        elif self.alg.kl.coef > 0:  # β = 0 loads no reference model (the paper's setting)
            # kl.reference: the stage's input model, or the run's initial model (input `reference`)
            ref_source = str(model_dir(self.job, "reference")) if self.alg.kl.reference == "initial" else self.source
            self.ref_model = AutoModelForCausalLM.from_pretrained(ref_source, attn_implementation=attn,
                                                                  dtype=TORCH_DTYPES[self.cfg.inference.dtype])
            self.ref_model.to(self.dist.device).eval().requires_grad_(False)
            ref_note = f"loaded (kl.coef > 0) from {ref_source} (kl.reference {self.alg.kl.reference})"
        print(f"gradient checkpointing: {'on' if checkpointing else 'off'}; "
              f"engine sleep mode: {'on' if self.sleep_mode else 'off'}; "
              f"reference model: {ref_note}; "
              f"{len(self.records)} prompts ({self.dropped_long} dropped as too long); {self.total_steps} steps; "
              f"world {self.dist.world}", flush=True)
        return model

    def _setup_optimisation(self, model) -> None:
        """Batch shape (prompts split over ranks, mini-batches) and DeepSpeed. Micro-batches are
        planned per mini-batch (`_micro_plan`), so DeepSpeed runs with one accumulation step in its
        config and the trainer marks each mini-batch's last micro-batch as the boundary."""
        import deepspeed
        opt_cfg = self.alg.optimizer
        world = self.dist.world
        prompts = self.cfg.prompts_per_step
        self.n_mini = prompts // (self.alg.mini_batch_size or prompts)
        self.micro = self.alg.micro_batch_size
        optimizer = torch.optim.AdamW(model.parameters(), lr=opt_cfg.lr, betas=tuple(opt_cfg.betas),
                                      eps=opt_cfg.eps, weight_decay=opt_cfg.weight_decay)
        per_batch = self.alg.updates_per_batch * self.n_mini  # optimiser steps per train step
        # the schedule's length follows total_steps, which `epochs` with filter_solved re-plans
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(
            opt_cfg, lambda: self.total_steps * per_batch, per_batch))
        self.entropy = EntropyController(self.alg.entropy_coef, self.alg.adaptive_entropy)
        ds_cfg = distributed.deepspeed_config(self.cfg, micro_batch=self.micro, grad_accum=1, world=world)
        self.ds, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=PolicyLogprobs(model), optimizer=optimizer, lr_scheduler=scheduler, config=ds_cfg)
        self.policy = self.ds.module.policy  # the HF model inside the engine (saved, synced, measured)

    def _setup_tracking(self) -> None:
        from rlspec.runtime.tracking import Tracker

        from .samples import SampleLog
        self.tracker = Tracker(self.job, self.out / "metrics.jsonl", enabled=self.dist.main)
        self.sample_log = SampleLog(self.out / "samples.jsonl", self.cfg.samples, stage=self.cfg.stage,
                                    seed=self.cfg.seed, main=self.dist.main, domain_of=lambda i: self.domains[i],
                                    prompt_text=lambda i: self.tokenizer.decode(self.prompt_ids[i]),
                                    tracker=self.tracker)
        self.health = {"zero_reward": 0, "all_zero_var": 0}

    def resume(self) -> None:
        root = self.out / "checkpoints"
        if self.dist.main:
            checkpoint.clean_partial(root)
        distributed.barrier()
        found = checkpoint.latest(root)
        if found is None:
            self.tracker.truncate_after(0)
            self.sample_log.truncate_after(0)
            return
        state = checkpoint.load(found, self.ds)
        self.step = state["step"]
        self.sampler.load(state["sampler"])
        self._replan()
        self.temperature.load(state["temperature"])
        self.entropy.load(state["entropy"])
        self.health = state["health"]
        self.tracker.truncate_after(self.step)
        self.sample_log.truncate_after(self.step)
        self._push_weights()
        print(f"resumed from {found.name} (step {self.step}/{self.total_steps})", flush=True)

    # ------------------------------------------------------------------------------- loop

    def train(self) -> None:
        """The steps; a stop signal (SIGUSR1, SIGTERM) ends the loop at the next step boundary
        with a checkpoint, on every rank at the same step (they agree through a collective)."""
        every = self.alg.checkpoint_every
        late = [s for s in self.cfg.snapshot_steps if s >= self.total_steps]
        if late:  # the bench jobs of these steps would find no snapshot
            raise TrainError(f"the workflow evaluates snapshots at steps {late} (evaluate_every), but the stage has "
                             f"{self.total_steps} steps with {len(self.records)} prompts: the compiler counted "
                             "epochs over datasets.<name>.expected_size; set expected_size to the curated count "
                             "(the curate job's funnel.json) or the stage's `steps`, and recompile")
        signals = _StopSignals()
        try:
            while self.step < self.total_steps:
                metrics = self.train_step()
                self.step += 1
                self._replan()
                metrics["step"] = self.step
                self.tracker.log(metrics)
                self.sample_log.write(self.step)  # a collective at the steps tracking.samples names
                if self.dist.main:
                    print(_progress(metrics, self.total_steps), flush=True)
                self._check_health(metrics)
                if self.step in self.cfg.snapshot_steps:  # before the checkpoint: one at step N implies snapshot N
                    self._save_snapshot()
                saved = self.step % every == 0 or self.step == self.total_steps
                if saved:
                    self._save_checkpoint()
                if distributed.all_reduce_sum([1.0 if signals.received else 0.0])[0] > 0:
                    if not saved:
                        self._save_checkpoint()
                    raise Preempted(f"stopped by {signals.received or 'a stop signal on another rank'} after step "
                                    f"{self.step} of {self.total_steps}; checkpoint step-{self.step:06d} is written "
                                    "and a rerun of this job (Snakemake's retry) resumes from it")
        finally:
            signals.restore()

    def _replan(self) -> None:
        """With `epochs` and `filter_solved`, later epochs hold only the prompts not yet retired, so
        the stage's step count (and the learning-rate schedule's length) follows the sampler; a
        stage set by `steps` keeps its count."""
        if self.cfg.epochs is not None and self.alg.filter_solved:
            self.total_steps = max(self.step, self.sampler.planned_steps(self.cfg.epochs))

    def train_step(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        epoch = self.sampler.epoch
        group = self.cfg.group_size.at(epoch)
        temp = self.temperature.at(epoch)
        batch, timing = self._collect(group, temp)
        fault_point(f"train:step:{self.step + 1}")  # tests: die in the middle of a step
        if self.sleep_mode:  # the engine's weights and KV cache give their memory to the training phase
            t_sleep = time.perf_counter()
            self.engine.sleep()
            timing["sleep_s"] = time.perf_counter() - t_sleep
        t_roll = time.perf_counter()
        with PhasePeak() as peak:  # the training phase's own peak (the rollout's is reset away)
            stats = self._optimise(batch, group, temp)
        train_tokens = stats.pop("_train_tokens")
        t_train = time.perf_counter()
        self._push_weights()
        t_pushed = time.perf_counter()
        self.temperature.observe(stats["entropy"])
        return {
            "epoch": epoch, "group_size": group, "temperature": temp, **self._rollout_metrics(batch, timing),
            **stats, "lr": self.scheduler.get_last_lr()[0] if self.scheduler else self.alg.optimizer.lr,
            "train_tokens_per_s": train_tokens / max(t_train - t_roll, 1e-9),
            "time_generate_s": timing["gen_s"], "time_grade_s": timing["grade_s"], "time_train_s": t_train - t_roll,
            "time_weight_push_s": t_pushed - t_train, "time_engine_sleep_s": timing.get("sleep_s", 0.0),
            "time_step_s": time.perf_counter() - t0,
            "train_peak_rss_gib": peak.host_gib, "train_peak_gpu_gib": peak.gpu_gib,
            "peak_rss_gib": PhasePeak.process_peak_gib,
        }

    # ------------------------------------------------------------------------------- rollout

    def _rollout_metrics(self, batch: RolloutBatch, timing: dict[str, float]) -> dict[str, Any]:
        """The step's rollout metrics over every generated response and group (dynamic sampling's
        dropped groups included: issue 16), summed over ranks: `reward_mean` of the training reward,
        `accuracy_mean` of the grader's score, `pass_rate` (groups with a response scoring 1),
        `zero_variance_frac` (groups with equal training rewards); the `groups_*` counts
        (generated = trained - copied + dropped + unused); with `dataset_weights`, the prompts
        generated per dataset (`prompts_<name>`)."""
        keys = ("reward_sum", "score_sum", "answers", "truncated", "length_sum", "groups_zero_var", "groups_generated",
                "groups_solved", "sandbox_errors", "code_answers", "grader_errors", "groups", "groups_dropped",
                "groups_unused", "groups_copied")
        tot = dict(zip(keys, distributed.all_reduce_sum([float(getattr(batch, k)) for k in keys])))
        gen_tokens = distributed.all_reduce_sum([timing["gen_tokens"]])[0]
        n, groups = max(tot["answers"], 1.0), max(tot["groups_generated"], 1.0)
        return {
            "reward_mean": tot["reward_sum"] / n, "accuracy_mean": tot["score_sum"] / n,
            "pass_rate": tot["groups_solved"] / groups, "zero_variance_frac": tot["groups_zero_var"] / groups,
            "response_len_mean": tot["length_sum"] / n,
            "response_len_max": max(distributed.all_gather_objects(batch.length_max)),
            "truncation_rate": tot["truncated"] / n, "grader_error_rate": tot["grader_errors"] / n,
            "sandbox_error_rate": tot["sandbox_errors"] / tot["code_answers"] if tot["code_answers"] else 0.0,
            **{k: int(tot[k]) for k in ("groups_generated", "groups_dropped", "groups_unused", "groups_copied")},
            "groups_trained": int(tot["groups"]), "sampling_rounds": batch.sampling_rounds,
            **{f"prompts_{name}": count for name, count in batch.prompts_by_dataset.items()},
            "rollout_tokens_per_s": gen_tokens / max(timing["gen_s"], 1e-9),
        }

    def _collect(self, group: int, temp: float) -> tuple[RolloutBatch, dict[str, float]]:
        """Generate and grade this rank's share of the step's prompts. With dynamic sampling, groups
        equal on its `metric` are dropped and the batch refilled by `refill`: `resample` generates
        further rounds (at most `max_rounds`) until prompts_per_step groups are kept, `none` trains on
        what one round kept, `copy` duplicates kept groups up to prompts_per_step. Kept groups past
        prompts_per_step are not trained on. This follows veRL's DAPO recipe (recipe/dapo,
        dapo_ray_trainer.py `fit`: keep groups whose metric has std > 0, accumulate generation batches
        until train_batch_size prompts are kept, then cut the batch to that size), except that after
        the last round it trains on what it has instead of raising."""
        timing = {"gen_s": 0.0, "grade_s": 0.0, "gen_tokens": 0.0}
        dyn = self.alg.dynamic_sampling
        wanted = self.cfg.prompts_per_step
        rounds = 1 + dyn.max_rounds if dyn.enabled and dyn.refill == "resample" else 1
        batch, kept = RolloutBatch(), 0
        for round_ in range(rounds):
            part = self._round(group, temp, round_, self._round_size(wanted, kept, round_), timing)
            if dyn.enabled:
                part = drop_equal_groups(part, group)
                take = first_kept(distributed.all_gather_objects(part.groups), wanted - kept)
                part = keep_first_groups(part, group, take[self.dist.rank])
                kept += sum(take)
            batch.extend(part)
            if not dyn.enabled or kept >= wanted:
                break
        if dyn.enabled and dyn.refill == "copy":
            sources = copy_sources(distributed.all_gather_objects(batch.groups), wanted)
            batch = with_copies(batch, group, sources[self.dist.rank])
        return batch, timing

    def _round_size(self, wanted: int, kept: int, round_: int) -> int:
        """Prompts generated in a round: `dynamic_sampling.generation_batch_size`, or when null (or
        dynamic sampling off) prompts_per_step in the first round and the missing groups' count after."""
        dyn = self.alg.dynamic_sampling
        if dyn.enabled and dyn.generation_batch_size is not None:
            return dyn.generation_batch_size
        return wanted if round_ == 0 else wanted - kept

    def _round(self, group: int, temp: float, round_: int, count: int, timing: dict) -> RolloutBatch:
        """One generation round: `count` prompts from the sampler, this rank's contiguous share
        generated and graded; every rank records every prompt's outcome, so the samplers (and their
        accuracy tallies) stay identical."""
        global_idx = self.sampler.next_batch(count)
        start, end = _share(len(global_idx), self.dist.rank, self.dist.world)
        # a TP group's engine generates the shares of all its ranks in one call (the same on each rank)
        # (its ranks' shares, contiguous: the share of TP group rank // tp among world // tp groups)
        g_start, g_end = _share(len(global_idx), self.dist.rank // self.tp, self.dist.world // self.tp)
        seed = _step_seed(self.cfg.seed, self.step, round_) + g_start * group
        part, outcomes = self._rollout(global_idx[g_start:g_end], group, temp, seed, timing,
                                       keep=(start - g_start, end - g_start))
        for shard in distributed.all_gather_objects(outcomes):
            for i, all_solved, score_sum in shard:
                self.sampler.record(i, all_solved, score_sum, group)
        part.sampling_rounds = 1
        if self.cfg.dataset_weights is not None:
            part.prompts_by_dataset = dict(Counter(self.dataset_of[i] for i in global_idx))
        return part

    def _rollout(self, gen_idx: list[int], group: int, temp: float, seed: int, timing: dict,
                 keep: tuple[int, int]) -> tuple[RolloutBatch, list[tuple[int, bool, float]]]:
        """Sample `group` responses for each prompt in `gen_idx` (this rank's TP group's prompts), then
        grade the ones this rank keeps (`gen_idx[keep[0]:keep[1]]`, its own share); also, per kept prompt,
        whether every response solved it (for `filter_solved`) and the sum of its grader scores (accuracy)."""
        from rlspec.runtime.rollout import SamplingParams
        from rlspec.runtime.scoring import score
        if not gen_idx:
            if self.tp > 1:  # a collective: the ranks of TP groups with prompts are checking theirs
                _check_tp_agreement([], self.dist.rank, self.tp)
            return RolloutBatch(), []
        cfg = self.cfg
        max_tokens = cfg.max_response_tokens
        t0 = time.perf_counter()
        params = SamplingParams(n=group, temperature=temp, top_p=cfg.sampling.top_p, top_k=cfg.sampling.top_k,
                                max_tokens=max_tokens, stop=tuple(cfg.sampling.stop), seed=seed)
        generations = self.engine.generate([self.prompt_ids[i] for i in gen_idx], params)
        if self.tp > 1:
            _check_tp_agreement(generations, self.dist.rank, self.tp)
        idx = gen_idx[keep[0]:keep[1]]
        kept = list(generations)[keep[0]:keep[1]]
        t1 = time.perf_counter()
        if not idx:
            timing["gen_s"] += t1 - t0
            return RolloutBatch(), []
        samples = [s for g in kept for s in g]
        recs = [self.records[i] for i in idx for _ in range(group)]
        doms = [self.domains[i] for i in idx for _ in range(group)]
        grades = score(recs, [s.text for s in samples], cfg.grading, domains=doms)
        timing["gen_s"] += t1 - t0
        timing["grade_s"] += time.perf_counter() - t1
        timing["gen_tokens"] += sum(len(s.token_ids) for s in samples)  # this rank's share (TP groups share calls)
        scores = [g.reward for g in grades]  # accuracy reads these; the advantage the mapped rewards
        lengths = [len(s.token_ids) for s in samples]
        truncated = [s.finish_reason == "length" for s in samples]
        alg = self.alg
        rewards = training_rewards(scores, truncated, lengths, correct=alg.reward_values.correct,
                                   incorrect=alg.reward_values.incorrect, overlong=alg.overlong, max_tokens=max_tokens)
        adv, zero_var = algos.group_advantages(rewards, group, normalize_std=alg.advantage.normalize_std,
                                               eps=alg.advantage.eps)
        metric = torch.tensor(scores, dtype=torch.float64) if alg.dynamic_sampling.metric == "accuracy" else rewards
        per_prompt = [scores[k * group:(k + 1) * group] for k in range(len(idx))]
        part = RolloutBatch(
            prompt_ids=[self.prompt_ids[i] for i in idx for _ in range(group)],
            response_ids=[list(s.token_ids) for s in samples],
            engine_logprobs=[list(s.logprobs) for s in samples],
            advantages=adv.tolist(), scores=scores, lengths=lengths,
            loss_mask=[not (t and alg.overlong.kind == "mask") for t in truncated],
            zero_var_flags=[z for z in equal_groups(metric, group) for _ in range(group)],
            truncated=sum(truncated), groups=len(idx), groups_generated=len(idx), groups_zero_var=int(zero_var.sum()),
            groups_solved=sum(any(x >= 1.0 for x in p) for p in per_prompt),
            reward_sum=float(rewards.sum()), score_sum=float(sum(scores)), length_sum=sum(lengths),
            length_max=max(lengths),
            sandbox_errors=sum(g.status == "sandbox_error" for g in grades),
            grader_errors=sum(g.status == "error" for g in grades),
            code_answers=sum(d == "code" for d in doms), answers=len(grades))
        self.sample_log.offer(self.step + 1, idx, samples, grades, rewards.tolist())  # tracking.samples
        return part, [(i, all(x >= 1.0 for x in p), float(sum(p))) for i, p in zip(idx, per_prompt)]

    # ------------------------------------------------------------------------------- optimisation

    def _optimise(self, batch: RolloutBatch, group: int, temp: float) -> dict[str, Any]:
        model = self.ds  # the DeepSpeed engine's forward (ZeRO-3 gathers parameters through it)
        n_seq = len(batch)
        seq_groups = [list(range(g * group, (g + 1) * group)) for g in range(n_seq // group)] if n_seq else []
        minis = [[i for g in mini for i in g] for mini in _split(seq_groups, self.n_mini)]
        plan = self._micro_plan(batch, minis)
        # Old log-probs are the policy's before the batch's first optimiser step. Only with one
        # update over one mini-batch is that the policy of every micro-batch's forward, so the
        # ratio is exactly 1 and the forward's own (detached) log-probs serve.
        single_step = self.alg.updates_per_batch == 1 and self.n_mini == 1
        old_lp = None if single_step else self._logprobs_no_grad(model, batch, temp, plan)
        ref_lp = self._logprobs_no_grad(self.ref_model, batch, temp, plan) if self.ref_model is not None else None
        acc = {"entropy": [0.0, 0.0], "kl": [0.0, 0.0], "clip": [0.0, 0.0], "mad": [0.0, 0.0], "lkl": [0.0, 0.0],
               "dual": [0.0, 0.0], "ratio_dev": 0.0, "loss": 0.0, "grad_norm": 0.0, "tokens": 0.0, "computed": 0.0}
        zero_sharded = self.cfg.deepspeed.zero_stage >= 2
        # A mini-batch empty on every rank (dynamic sampling with refill none, or a step whose groups
        # were all dropped) takes no optimiser step: AdamW's momentum would move the weights on zero
        # gradients. Every rank sees the same global sizes, so all skip the same collectives.
        sizes = distributed.all_reduce_sum([float(len(seqs)) for seqs in minis])
        for update in range(self.alg.updates_per_batch):
            for seqs, chunks, size in zip(minis, plan, sizes):
                if size == 0:
                    continue
                norm = self._normaliser(batch, seqs)
                for k, chunk in enumerate(chunks):
                    last = k == len(chunks) - 1
                    self.ds.set_gradient_accumulation_boundary(last)
                    loss = self._micro_loss(model, batch, chunk, temp, norm, old_lp, ref_lp, acc,
                                            first_pass=update == 0)
                    if update == 0:
                        acc["loss"] += float(loss.detach())
                    # The loss carries the mini-batch's global normaliser; DeepSpeed averages
                    # gradients over ranks, which the factor undoes (its accumulation steps are 1).
                    self.ds.backward(loss * self.dist.world)
                    if last and not zero_sharded:  # full gradients sit on the parameters until the step
                        acc["grad_norm"] = self._grad_norm()
                    self.ds.step()
                    if last and zero_sharded:  # DeepSpeed computes the norm inside its step
                        acc["grad_norm"] = self._grad_norm()
        total = distributed.all_reduce_sum([acc[k][i] for k in ("entropy", "kl", "clip", "mad", "lkl") for i in (0, 1)]
                                           + [acc["tokens"], acc["loss"], acc["computed"]] + acc["dual"])
        ent, kl, clip, mad, lkl = [total[2 * i] / max(total[2 * i + 1], 1.0) for i in range(5)]
        coefs = self.entropy.metrics()  # the coefficient this step used, before it moves
        self.entropy.observe(ent)
        return {"entropy": ent, "kl": kl, "clip_frac": clip, "logprob_mad": mad, "logprob_kl": lkl,
                "dual_clip_frac": total[13] / max(total[14], 1.0), **coefs,
                "grad_norm": acc["grad_norm"], "ratio_max_dev": acc["ratio_dev"], "_train_tokens": total[10],
                "loss": total[11] / max(self.n_mini, 1),
                "micro_batches": sum(len(chunks) for chunks in plan),
                "pad_fraction": 1.0 - total[10] / total[12] if total[12] else 0.0}

    def _micro_plan(self, batch: RolloutBatch, minis: list[list[int]]) -> list[list[list[int]]]:
        """Per mini-batch, this rank's micro-batches (`algorithm.micro_batch_size`,
        `max_tokens_per_micro_batch`, `pack_sequences`), padded with empty ones to the largest count
        of any rank: ZeRO 2/3 reduce and gather inside every forward/backward, so all ranks make the
        same number; an empty micro-batch runs a dummy forward with zero loss."""
        alg = self.alg
        local = [micro_batches(batch, seqs, max_seqs=self.micro, max_tokens=alg.max_tokens_per_micro_batch,
                               packed=alg.pack_sequences) for seqs in minis]
        counts = distributed.all_gather_objects([len(m) for m in local])
        return [m + [[]] * (max(max(c[j] for c in counts), 1) - len(m)) for j, m in enumerate(local)]

    def _grad_norm(self) -> float:
        """Global gradient norm before clipping. ZeRO 0/1 keep full gradients on the parameters;
        ZeRO 2/3 partition them, and DeepSpeed reports the norm it computed."""
        if self.cfg.deepspeed.zero_stage >= 2:
            gn = self.ds.get_global_grad_norm()
            return float(gn) if gn is not None else float("nan")
        sq = sum(float(p.grad.detach().float().pow(2).sum()) for p in self.policy.parameters() if p.grad is not None)
        return math.sqrt(sq)

    def _normaliser(self, batch: RolloutBatch, seqs: list[int]) -> algos.Normaliser:
        local = algos.local_counts([batch.lengths[i] for i in seqs], [batch.loss_mask[i] for i in seqs])
        tokens, counted = distributed.all_reduce_sum(list(local))
        return algos.Normaliser.of(tokens, counted, self.cfg.max_response_tokens)

    def _forward(self, model, ids, attn, tgt, resp, temp, *, entropy: bool, packed=None):
        """Response log-probs (and entropy) in chunks of `algorithm.logprob_chunk_tokens` positions,
        through the DeepSpeed engine (`model` is `self.ds`) or a plain HF model (the reference),
        shaped like the padded `resp` mask. `packed` = (row ids, position ids, targets, mask) of
        the same sequences as one padding-free row: the forward runs on it instead.
        Under ZeRO-3 every output-layer call gathers its weights collectively, so all ranks make the
        same number of calls: the largest chunk count of any rank (empty chunks on the others)."""
        chunk = self.alg.logprob_chunk_tokens
        n_chunks = -(-int(resp.sum()) // chunk)
        if self.cfg.deepspeed.zero_stage == 3 and self.dist.world > 1:
            n_chunks = max(distributed.all_gather_objects(n_chunks))
        position_ids = out_mask = None
        if packed is not None:
            ids, position_ids, tgt, flat_mask = packed
            attn, out_mask, resp = None, resp, flat_mask
        if model is self.ds:
            return model(ids, attn, tgt, resp, temp, chunk, n_chunks, entropy, position_ids, out_mask)
        return response_logprobs(model, ids, attn, tgt, resp, temp, chunk, n_chunks=n_chunks, entropy=entropy,
                                 grad=torch.is_grad_enabled(), position_ids=position_ids, out_mask=out_mask)

    def _inputs(self, batch: RolloutBatch, chunk: list[int]):
        """(ids, attn, targets, response mask) in the padded layout, and the packed row when
        `algorithm.pack_sequences` is on (else None)."""
        padded = pack(batch, chunk, self.dist.device)
        return padded, (pack_flat(batch, chunk, self.dist.device) if self.alg.pack_sequences else None)

    def _dummy_forward(self, model, temp):
        """A forward on one token pair with no response position: keeps every rank at the same
        number of micro-steps (and ZeRO-3 gathers) when its share of a mini-batch is empty."""
        dummy = torch.tensor([[self.tokenizer.eos_token_id or 0] * 2], device=self.dist.device)
        return self._forward(model, dummy, torch.ones_like(dummy), dummy[:, 1:],
                             torch.zeros(1, 1, device=self.dist.device), temp, entropy=False)[0]

    def _micro_loss(self, model, batch, chunk, temp, norm, old_lp, ref_lp, acc, *, first_pass: bool):
        if not chunk:
            return self._dummy_forward(model, temp).sum() * 0.0
        (ids, attn, tgt, mask), packed = self._inputs(batch, chunk)
        ent_coef = self.entropy.applied  # algorithm.entropy_coef, or adaptive_entropy's value this step
        logp, ent_tok = self._forward(model, ids, attn, tgt, mask, temp, packed=packed,
                                      entropy=first_pass or ent_coef > 0)
        mask = mask * torch.tensor([float(batch.loss_mask[i]) for i in chunk], device=mask.device)[:, None]
        old = logp.detach() if old_lp is None else stack(old_lp, chunk, logp)
        adv = torch.tensor([batch.advantages[i] for i in chunk], dtype=logp.dtype, device=logp.device)
        clip = self.alg.clip
        loss, ratio, clipped, capped = algos.token_losses(logp, old, adv, clip_low=clip.low, clip_high=clip.high,
                                                          dual=clip.dual)
        valid = mask > 0
        acc["dual"][0] += float((capped & valid).sum())
        acc["dual"][1] += float(valid.sum())
        if ref_lp is not None:
            kl_tok = algos.kl_estimator(self.alg.kl.estimator)(logp, stack(ref_lp, chunk, logp))
            loss = loss + self.alg.kl.coef * kl_tok
            acc["kl"][0] += float((kl_tok.detach() * mask).sum())
            acc["kl"][1] += float(mask.sum())
        resp = response_mask(batch, chunk, logp)
        if ent_coef > 0:
            loss = loss - ent_coef * ent_tok
        if first_pass:
            ent_sum = float((ent_tok.detach() * resp).sum())
            acc["entropy"][0] += ent_sum
            acc["entropy"][1] += float(resp.sum())
            eng = engine_logprobs(batch, chunk, logp)
            diff = (logp.detach() - eng) * resp
            acc["mad"][0] += float(diff.abs().sum())
            acc["mad"][1] += float(resp.sum())
            acc["lkl"][0] += float(((eng - logp.detach()) * resp).sum())  # KL(engine || trainer) estimate
            acc["lkl"][1] += float(resp.sum())
            acc["tokens"] += float(attn.sum())
            acc["computed"] += float(attn.sum() if packed is not None else attn.numel())
        acc["clip"][0] += float((clipped & valid).sum())
        acc["clip"][1] += float(valid.sum())
        if valid.any():
            acc["ratio_dev"] = max(acc["ratio_dev"], float((ratio.detach()[valid] - 1).abs().max()))
        return algos.aggregate(self.alg.loss_agg, loss, mask, norm)

    @torch.no_grad()
    def _logprobs_no_grad(self, model, batch, temp, plan: list[list[list[int]]]) -> list[torch.Tensor]:
        """Per-sequence response log-probs of the batch under `model` (old policy or reference), in the
        micro-batches the optimisation uses (`plan`), so every rank makes the same calls."""
        out: list[torch.Tensor | None] = [None] * len(batch)
        zero3_world = self.cfg.deepspeed.zero_stage == 3 and self.dist.world > 1
        for chunk in (c for chunks in plan for c in chunks):
            if not chunk:
                if zero3_world:  # match the calls of ranks that still have sequences
                    self._dummy_forward(model, temp)
                continue
            (ids, attn, tgt, mask), packed = self._inputs(batch, chunk)
            lp, _ = self._forward(model, ids, attn, tgt, mask, temp, entropy=False, packed=packed)
            for row, i in enumerate(chunk):
                out[i] = lp[row]
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------------------- sync, health, saving

    def _full_state_dict(self, *, merged: bool = True) -> dict[str, torch.Tensor]:
        """The policy's whole state on every rank (ZeRO-3 gathers it). With LoRA and `merged`, the
        base model's names and merged weights W + (alpha / rank)·B·A (what `model/` holds); without
        `merged`, PEFT's own names (what `adapter/` is cut from)."""
        model = self.policy
        if self.cfg.deepspeed.zero_stage == 3:
            import deepspeed
            with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            state = model.state_dict()
        if self.cfg.lora is not None and merged:
            return lora.merged_state_dict(state, lora.scale(self.cfg.lora))
        return state

    def _push_weights(self) -> None:
        """The new weights into the engine; an engine asleep (sleep mode) wakes its weights first and
        its KV cache only after the push, so the two never need their memory at once."""
        asleep = bool(self.engine.asleep)
        if asleep:
            self.engine.wake_up(["weights"])
        weightsync.push_weights(self.policy, self.engine, zero3=self.cfg.deepspeed.zero_stage == 3,
                                lora_scale=lora.scale(self.cfg.lora) if self.cfg.lora is not None else None)
        if asleep:
            self.engine.wake_up(["kv_cache"])

    def _check_health(self, m: dict[str, Any]) -> None:
        """Rates are over every generated rollout; "never solves" reads the grader's score, since
        with `reward_values` a training reward of 0 need not mean wrong (DAPO's -1/+1)."""
        h = self.alg.health
        self.health["zero_reward"] = self.health["zero_reward"] + 1 if m["accuracy_mean"] == 0 else 0
        self.health["all_zero_var"] = self.health["all_zero_var"] + 1 if m["zero_variance_frac"] == 1.0 else 0
        if h.max_zero_reward_steps and self.health["zero_reward"] >= h.max_zero_reward_steps:
            raise TrainError(f"mean accuracy (the grader's score) was 0 for {self.health['zero_reward']} steps in a row "
                             "(algorithm.health.max_zero_reward_steps): the policy never solves these prompts; "
                             "check the prompt template and answer extraction, or use easier data")
        if h.max_all_zero_variance_steps and self.health["all_zero_var"] >= h.max_all_zero_variance_steps:
            raise TrainError(f"every group had equal rewards for {self.health['all_zero_var']} steps in a row "
                             "(algorithm.health.max_all_zero_variance_steps): no learning signal; raise group_size or "
                             "filter the prompts by pass rate")
        bound = h.max_sandbox_error_rate
        if bound is not None and m["sandbox_error_rate"] > bound:
            raise TrainError(f"{m['sandbox_error_rate']:.1%} of code answers ended in sandbox_error (bound "
                             f"{bound:.1%}, algorithm.health.max_sandbox_error_rate): the sandbox is failing, "
                             "not the model; check the job log")
        bound = h.max_grader_error_rate
        if bound is not None and m["grader_error_rate"] > bound:
            raise TrainError(f"{m['grader_error_rate']:.1%} of answers could not be graded (status error, bound "
                             f"{bound:.1%}, algorithm.health.max_grader_error_rate); the job log names the "
                             "exceptions: a grader bug or records the grader cannot read")

    def _save_checkpoint(self) -> None:
        state = {"step": self.step, "total_steps": self.total_steps, "sampler": self.sampler.state(),
                 "temperature": self.temperature.state(), "health": self.health, "entropy": self.entropy.state()}
        checkpoint.save(self.out / "checkpoints", self.step, self.ds, state, main=self.dist.main,
                        keep=self.alg.keep_checkpoints)

    def _save_snapshot(self) -> None:
        """The HF-format model at this step for its bench jobs (`evaluate_every`); every rank calls
        it, since under ZeRO-3 the full weights are gathered collectively. With LoRA it holds the
        merged weights, as `model/` does."""
        state = self._full_state_dict(merged=True)
        if self.dist.main:
            checkpoint.save_snapshot(self.out, self.step, lora.base_model(self.policy), state, self.tokenizer,
                                     TORCH_DTYPES[self.cfg.inference.dtype])
        distributed.barrier()

    def finish(self) -> None:
        if self.step != self.total_steps:
            raise TrainError(f"stopped at step {self.step} of {self.total_steps}; the stage is not complete")
        peft_state = self._full_state_dict(merged=False)
        lora_cfg = self.cfg.lora
        state = peft_state if lora_cfg is None else lora.merged_state_dict(peft_state, lora.scale(lora_cfg))
        if self.dist.main:
            final = self.out / "model"
            tmp = temp_path(final)
            shutil.rmtree(tmp, ignore_errors=True)
            # LoRA: a plain HF model of the merged weights
            checkpoint.write_model(tmp, lora.base_model(self.policy), state, self.tokenizer,
                                   TORCH_DTYPES[self.cfg.inference.dtype])
            replace_dir_atomic(tmp, final)
            if self.cfg.lora is not None:  # the adapter alone too, in PEFT's format, for users
                tmp = temp_path(self.out / "adapter")
                lora.save_adapter(self.policy, tmp, peft_state)
                replace_dir_atomic(tmp, self.out / "adapter")
            # every prompt's accuracy so far (earlier stages + this one), for a later stage's pruning
            write_prompt_stats(self.out / STATS_FILE, merged_stats(self.earlier_stats, self.records,
                                                                   self.sampler.accuracy))
            rewards = _metric_column(self.out / "metrics.jsonl", "reward_mean")
            write_json_atomic(self.out / "done.json", {
                "stage": self.cfg.stage, "steps": self.step, "steps_asked": self.total_steps, "prompts": len(self.records),
                "prompts_dropped_too_long": self.dropped_long,
                "prompts_dropped_above_accuracy": self.dropped_accurate, "reward_first": rewards[0] if rewards else None,
                "reward_last": rewards[-1] if rewards else None, "model": "model",
                "engine_placement": self.placements})
            self.tracker.summary({"reward_first": rewards[0] if rewards else None,
                                  "reward_last": rewards[-1] if rewards else None})
        self.tracker.close()
        self.engine.close()
        distributed.barrier()


# ----------------------------------------------------------------------------------- helpers


def _lr_lambda(opt: Optimizer, total_of, per_batch: int):
    """The schedule's factor at optimiser step `step`; `total_of()` gives the current total in
    optimiser steps, `per_batch` the optimiser steps of one train step (`warmup_unit: batches`)."""
    warm = opt.warmup_steps * (per_batch if opt.warmup_unit == "batches" else 1)
    kind = opt.schedule

    def factor(step: int) -> float:
        total = total_of()
        if warm and step < warm:
            return (step + 1) / warm
        if kind == "constant" or total <= warm:
            return 1.0
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return 0.5 * (1 + math.cos(math.pi * progress)) if kind == "cosine" else 1.0 - progress
    return factor


def _step_seed(seed: int, step: int, round_: int) -> int:
    return (seed * 1_000_003 + step * 10_007 + round_ * 7_919) % (2**31 - 1 - 10**7)


@contextlib.contextmanager
def _partitioned_load(cfg: TrainJob, world: int):
    """ZeRO-3 without LoRA: load the policy under `deepspeed.zero.Init` (transformers does when an
    `HfDeepSpeedConfig` of stage 3 is alive), so each parameter is partitioned over the ranks as it is
    created and no GPU ever holds the whole 16-bit model (without it DeepSpeed moves the whole model to
    every GPU before partitioning it: 61 GiB for a 32B model, beside the engine's share). The config
    lives only for this load: the reference model is a plain module (no ZeRO hooks run its forward).
    With LoRA the model is loaded whole (PEFT wraps modules that must exist in full first)."""
    if cfg.deepspeed.zero_stage != 3 or cfg.lora is not None:
        yield
        return
    from transformers.integrations import HfDeepSpeedConfig
    keep = HfDeepSpeedConfig(distributed.deepspeed_config(cfg, micro_batch=cfg.algorithm.micro_batch_size,
                                                          grad_accum=1, world=world))
    try:
        yield
    finally:
        del keep  # transformers holds it by weak reference: gone, later loads are plain again


def _check_placement(placements: list[dict], tp: int, joined: bool) -> None:
    """Every rank's engine runs where its rank does, by the engine's own report: on the rank's device,
    and, joined to the training world, as the rank's own worker in TP group rank // tp (a uni-process
    vLLM executor would put every rank's engine on device 0)."""
    for p in placements:
        e = p["engine"]
        if p["device"].startswith("cuda") and e["device"] != p["device"]:
            raise TrainError(f"rank {p['rank']}: the rollout engine runs on {e['device']} but the rank trains on "
                             f"{p['device']}; each engine must share its rank's GPU")
        if not joined:
            continue
        want = {"rank": p["rank"], "local_rank": p["local_rank"], "tp_size": tp, "tp_rank": p["rank"] % tp,
                "dp_rank": p["rank"] // tp}
        got = {k: e.get(k) for k in want}
        if got != want:
            raise TrainError(f"rank {p['rank']}: the rollout engine's worker reports {got}, expected {want}")


def _check_tp_agreement(generations, rank: int, tp: int) -> None:
    """The ranks of a TP group ran one engine call together: their samples must be the same, or the
    group's ranks would train on different copies of the same prompts."""
    digest = hash(tuple(tuple(s.token_ids) for g in generations for s in g))
    digests = distributed.all_gather_objects(digest)
    first = rank - rank % tp
    if len(set(digests[first:first + tp])) != 1:
        raise TrainError(f"the TP group of ranks {first}-{first + tp - 1} generated different samples for the same "
                         "prompts: its engines are out of step")


def _share(n: int, rank: int, world: int) -> tuple[int, int]:
    return n * rank // world, n * (rank + 1) // world


def _split(groups: list[list[int]], parts: int) -> list[list[list[int]]]:
    n = len(groups)
    return [groups[n * i // parts: n * (i + 1) // parts] for i in range(parts)]


def _dataset_name(folder: str) -> str:
    """The dataset an input data folder holds, as its job's done.json names it (curate: the dataset)."""
    import json
    done = Path(folder) / "done.json"
    if not done.is_file():  # load_prompt_records names the missing input
        return Path(folder).name
    return str(json.loads(done.read_text(encoding="utf-8")).get("dataset", Path(folder).name))


def _metric_column(path: Path, key: str) -> list[float]:
    from rlspec.runtime.metricsfile import read_metrics
    return [row[key] for row in read_metrics(path)]


def _progress(m: dict[str, Any], total: int) -> str:
    return (f"step {m['step']}/{total} reward {m['reward_mean']:.3f} pass {m['pass_rate']:.2f} "
            f"len {m['response_len_mean']:.0f} trunc {m['truncation_rate']:.2f} H {m['entropy']:.3f} "
            f"T {m['temperature']:.2f} gnorm {m['grad_norm']:.3g} ({m['time_step_s']:.1f}s)")
