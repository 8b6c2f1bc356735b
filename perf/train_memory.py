"""Benchmark: peak memory and time of one long-sequence GRPO training step, ours against TRL's `GRPOTrainer`.

What: one GRPO step (generate, grade, advantages, one AdamW step) of a 21M-parameter Qwen2 built
from a config (hidden 384, 4 layers, 6 heads / 2 KV heads, FFN 1536, tied embeddings, a locally
trained 32,768-token byte-level BPE vocabulary), random weights, fp32, on CPU, with gradient
checkpointing on for both sides (ours: `algorithm.gradient_checkpointing: true`; TRL:
`gradient_checkpointing=True`, non-reentrant like ours), beta 0 (no reference model), one update per
batch, hf/transformers generation for both, the settings of perf/train_step.py otherwise
(lr 1e-4, AdamW wd 0.01, clip 0.2 / 0.28, token-mean loss = TRL `loss_type="dapo"`).
Rows:
  "memory": 2 prompts x 2 responses, every response exactly 4,096 tokens (the model is built so it
      never samples EOS, see `set_eos_rate`), one micro-batch of 4 sequences on both sides. Reported:
      peak RSS of the training phase, ratio = TRL's / ours (goal: ours >= 4x less, ratio >= 4).
  "packing throughput": 2 prompts x 4 responses whose lengths vary: the model samples EOS with a
      fixed probability per token (a geometric length, mean `--mean-len`, cut at 4,096), the same
      model for both sides, so both draw lengths from one distribution. TRL pads the generation batch
      to its longest response and trains it in micro-batches of 4 (`per_device_train_batch_size=4`,
      `steps_per_generation=2`); ours packs (`algorithm.pack_sequences: true`) into micro-batches of
      at most `max_tokens_per_micro_batch` = 4 x max_context tokens, the worst case of TRL's
      micro-batch. Reported: train tokens per second = real (unpadded) prompt + response tokens of
      the step / seconds of its training phase; ratio = ours / TRL's (goal >= 2).
What is measured, exactly (Linux /proc; each side in its own process, one step per run):
  training phase = from the end of generation + grading + advantages to the end of the optimiser
      step: every forward, backward and the AdamW step (ours: `Trainer._optimise`; TRL: from the end
      of `_generate_and_score_completions` to `on_step_end`, which runs after `optimizer.step()`).
  train peak RSS = VmHWM read right after the training phase, having been reset to the then-current
      RSS right before it (`echo 5 > /proc/self/clear_refs`; `rlspec.runtime.peakmem.PhasePeak`, the
      same code on both sides): the most resident memory the process held at any moment of the
      phase, everything resident included (weights, gradients, AdamW state, the rollout engine's
      copy, Python and the libraries). Also reported: the process peak (the largest VmHWM of the
      process up to the end of the step: loading, generation and training).
  train seconds = wall-clock seconds of the training phase; train tokens = prompt + response tokens
      of the step, padding excluded.
How ours runs: the real way (a spec, `rlspec compile`, the model job, the curate job, then
`python -m rlspec.runtime.train`); the train job writes `train_peak_rss_gib`, `peak_rss_gib`,
`time_train_s` and `train_tokens_per_s` into its metrics.jsonl. TRL gets the same model folder and
the same curated prompts rendered with the same template (perf/train_step.py's machinery), in a
worker process of its own.
Run: `OMP_NUM_THREADS=1 python perf/train_memory.py [--rows memory,packing]` (generating 4K tokens
dominates: TRL's generation took 21 min and ours 11 min on the loaded 2-core box; peaks near 6 GiB);
prints a table, writes perf/results/train_memory.json. Needs TRL: `pip install -e .[cpu,perf]`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_step  # noqa: E402  (the shared machinery: spec, compile, jobs, TRL trainer and prompts)
from train_step import PY, ROOT, compile_spec, run_job, sh, trl_prompts  # noqa: E402

RESULTS = ROOT / "perf" / "results" / "train_memory.json"
ARCH = {"hidden": 384, "layers": 4, "heads": 6, "kv_heads": 2, "ffn": 1536}
VOCAB = 32768
MAX_PROMPT = 128  # prompt budget (the builtin math prompts are ~40-70 tokens)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="memory,packing", help="comma-separated: memory, packing")
    p.add_argument("--max-tokens", type=int, default=4096, help="response length budget")
    p.add_argument("--mean-len", type=int, default=1024, help="packing row: mean of the geometric response length")
    p.add_argument("--run-timeout", type=int, default=2400, help="seconds before one run is killed")
    p.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--trl-worker", type=Path, help=argparse.SUPPRESS)  # internal: one TRL run
    return p.parse_args(argv)


ROWS = {  # name: prompts, responses per prompt, our micro-batching, TRL's micro-batch, goal
    "memory": {"prompts": 2, "group": 2, "eos": False, "trl_micro": 4,
               "goal": "ours >= 4x less peak training RSS (ratio = TRL / ours >= 4)"},
    "packing": {"prompts": 2, "group": 4, "eos": True, "trl_micro": 4,
                "goal": "ours >= 2x TRL's train tokens per second (ratio = ours / TRL >= 2)"},
}


# --- the model -------------------------------------------------------------------------------------


def tokenizer_corpus(n_words: int = 20_000, seed: int = 0):
    """Math chat text plus random letter strings: enough distinct pairs for 32K BPE merges."""
    import itertools
    import random

    from rlspec.runtime.tinymodel import arithmetic_corpus
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = (" ".join("".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(40))
             for _ in range(n_words))
    return itertools.chain(arithmetic_corpus(2000, seed), words)


def set_eos_rate(model, eos_id: int, rate: float) -> None:
    """Make the random model sample EOS with probability ~`rate` at every position (0: never).

    Hidden dimension 0 carries a constant A in every token embedding and no layer writes to it
    (row 0 of every o_proj / down_proj is zero), so after the final RMSNorm it is ~sqrt(hidden) at
    every position while the other dimensions are small. With tied embeddings each token's logit
    gets A * sqrt(hidden) from it, the same for all, except EOS, whose entry is A + m / sqrt(hidden):
    EOS leads every other logit by ~m, and the others are nearly uniform, so P(EOS) ~
    e^m / (e^m + V - 1). Lengths are then geometric (mean 1 / rate), the same law for both trainers."""
    import torch
    a, hidden, vocab = 100.0, model.config.hidden_size, model.config.vocab_size
    margin = math.log(rate * (vocab - 1) / (1 - rate)) if rate > 0 else -60.0
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb[:, 0] = a
        emb[eos_id, 0] = a + margin / math.sqrt(hidden)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[0].zero_()
            layer.mlp.down_proj.weight[0].zero_()


def build_models(work: Path, args) -> dict[str, Path]:
    """Two model folders with one tokenizer and one initialisation: "no_eos" (responses run to the
    budget) and "eos" (geometric lengths of mean `--mean-len`)."""
    from rlspec.runtime.tinymodel import TinyModelConfig, build_model, save_model, train_tokenizer
    folders = {name: work / f"model_{name}" for name in ("no_eos", "eos")}
    if all((f / "model.safetensors").is_file() for f in folders.values()):  # a `--keep` folder
        return folders
    tokenizer = train_tokenizer(tokenizer_corpus(), VOCAB)
    if len(tokenizer) < VOCAB:
        raise RuntimeError(f"the tokenizer has {len(tokenizer)} entries, wanted {VOCAB}; use a larger corpus")
    cfg = TinyModelConfig(vocab=VOCAB, max_positions=MAX_PROMPT + args.max_tokens + 64, tie_embeddings=True, **ARCH)
    for name, rate in (("no_eos", 0.0), ("eos", 1.0 / args.mean_len)):
        model = build_model(tokenizer, cfg)
        set_eos_rate(model, tokenizer.eos_token_id, rate)
        folders[name] = save_model(model, tokenizer, work / f"model_{name}")
    return folders


def model_facts(folder: Path) -> dict:
    from transformers import AutoConfig
    c = AutoConfig.from_pretrained(folder)
    embed = c.vocab_size * c.hidden_size
    kv = c.hidden_size // c.num_attention_heads * c.num_key_value_heads
    layer = (2 * c.hidden_size * c.hidden_size + 2 * c.hidden_size * kv + 2 * c.hidden_size + 2 * kv
             + 3 * c.hidden_size * c.intermediate_size + 2 * c.hidden_size)
    return {"family": c.model_type, "params_m": round((embed + c.num_hidden_layers * layer + c.hidden_size) / 1e6, 2),
            "vocab_size": c.vocab_size, "hidden": c.hidden_size, "layers": c.num_hidden_layers,
            "heads": c.num_attention_heads, "kv_heads": c.num_key_value_heads, "ffn": c.intermediate_size,
            "tied_embeddings": c.tie_word_embeddings, "dtype": "float32"}


# --- ours ------------------------------------------------------------------------------------------


def our_spec(args, row: dict, model_dir: Path) -> dict[str, Any]:
    """perf/train_step.py's workload, at 4K responses, checkpointing on, one step."""
    ns = argparse.Namespace(prompts=row["prompts"], group=row["group"], max_tokens=args.max_tokens, steps=1)
    doc = train_step.spec(ns, model={"path": str(model_dir)})
    context = MAX_PROMPT + args.max_tokens
    doc["model"]["max_context"] = context
    doc["rollout"]["max_prompt_tokens"] = MAX_PROMPT
    alg = doc["algorithm"]
    alg["gradient_checkpointing"] = True
    if row["eos"]:  # the packing row: padding-free micro-batches of at most TRL's worst-case tokens
        alg.update({"pack_sequences": True, "max_tokens_per_micro_batch": row["trl_micro"] * context,
                    "micro_batch_size": row["prompts"] * row["group"]})
    else:
        alg["micro_batch_size"] = row["trl_micro"]
    return doc


def run_ours(args, work: Path, name: str, row: dict, model_dir: Path) -> dict:
    """The real pipeline; the train job writes its training phase's peak RSS into metrics.jsonl."""
    build, jobs = compile_spec(our_spec(args, row, model_dir), work / name)
    run_job(build, jobs["model"][0], args.run_timeout)
    data = run_job(build, jobs["curate"][0], args.run_timeout)
    train = jobs["train"][0]
    shutil.rmtree(build / json.loads(train.read_text())["output_dir"], ignore_errors=True)  # else it resumes
    out = run_job(build, train, args.run_timeout)
    m = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line][0]
    tokens = m["train_tokens_per_s"] * m["time_train_s"]
    return {"train_peak_rss_gib": m["train_peak_rss_gib"], "process_peak_rss_gib": m["peak_rss_gib"],
            "train_s": m["time_train_s"], "train_tokens": round(tokens), "train_tokens_per_s": m["train_tokens_per_s"],
            "generate_s": m["time_generate_s"], "step_s": m["time_step_s"], "response_len_mean": m["response_len_mean"],
            "response_len_max": m["response_len_max"], "truncation_rate": m["truncation_rate"],
            "micro_batches": m.get("micro_batches"), "pad_fraction": m.get("pad_fraction"), "data": str(data)}


# --- TRL -------------------------------------------------------------------------------------------


def run_trl(args, work: Path, name: str, row: dict, model_dir: Path, prompts: Path) -> dict:
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"model": str(model_dir), "prompts": str(prompts), "steps": 1, "prompts_per_step": row["prompts"],
           "group": row["group"], "max_tokens": args.max_tokens, "micro": row["trl_micro"],
           "out": str(folder / "result.json"), "trainer_dir": str(folder / "trl_out")}
    (folder / "worker.json").write_text(json.dumps(cfg))
    sh([PY, str(Path(__file__).resolve()), "--trl-worker", str(folder / "worker.json")], folder,
       folder / "run.log", args.run_timeout)
    return json.loads((folder / "result.json").read_text())


def trl_worker(cfg_path: Path) -> None:
    """One TRL step, its training phase measured like our trainer measures its own (`PhasePeak`,
    entered as generation + rewards + advantages end, left as the optimiser step ends)."""
    from rlspec.runtime.peakmem import PhasePeak
    cfg = json.loads(cfg_path.read_text())
    peak, batches, phase = PhasePeak(), [], {}

    def training_ends():
        peak.__exit__(None, None, None)
        phase["train_s"] = time.perf_counter() - phase.pop("t0")

    timer = train_step.step_timer(at_end=training_ends)
    rows = cfg["prompts_per_step"] * cfg["group"]
    trainer = train_step.trl_trainer(
        cfg, [timer], per_device_train_batch_size=cfg["micro"], steps_per_generation=rows // cfg["micro"],
        gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False})

    def generated(out):  # the rollout half is over: the training phase starts now
        batches.append({"prompt_tokens": int(out["prompt_mask"].sum()), "completion_lengths":
                        out["completion_mask"].sum(1).tolist(), "padded_width":
                        out["prompt_ids"].shape[1] + out["completion_ids"].shape[1]})
        peak.__enter__()
        phase["t0"] = time.perf_counter()

    gen_times = train_step.time_generation(trainer, after=generated)
    trainer.train()
    lengths = batches[0]["completion_lengths"]
    tokens = batches[0]["prompt_tokens"] + sum(lengths)
    Path(cfg["out"]).write_text(json.dumps({
        "train_peak_rss_gib": peak.host_gib, "process_peak_rss_gib": PhasePeak.process_peak_gib,
        "train_s": phase["train_s"], "train_tokens": tokens, "train_tokens_per_s": tokens / phase["train_s"],
        "generate_s": gen_times[0], "step_s": timer.times[0], "response_len_mean": sum(lengths) / len(lengths),
        "response_len_max": max(lengths), "response_lengths": lengths, "padded_width": batches[0]["padded_width"],
        "gradient_checkpointing": bool(trainer.args.gradient_checkpointing),
        "optimizer": type(trainer.optimizer).__name__}))


# --- the run ---------------------------------------------------------------------------------------


def compare(name: str, row: dict, ours: dict, theirs: dict) -> dict:
    if name == "memory":
        key, ratio, unit = "train_peak_rss_gib", theirs["train_peak_rss_gib"] / ours["train_peak_rss_gib"], "GiB"
    else:
        key, ratio, unit = "train_tokens_per_s", ours["train_tokens_per_s"] / theirs["train_tokens_per_s"], "tokens/s"
    return {"row": name, "metric": key, "unit": unit, "ours": ours[key], "theirs": theirs[key], "ratio": ratio,
            "goal": row["goal"], "goal_met": ratio >= (4 if name == "memory" else 2),
            "prompts": row["prompts"], "group": row["group"], "ours_detail": ours, "theirs_detail": theirs}


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.trl_worker:
        return trl_worker(args.trl_worker)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work, work_ctx = train_step.work_folder(args.keep, "train_memory-")
    load = {"start": os.getloadavg()}
    started = time.perf_counter()
    models = build_models(work, args)
    rows, failures = [], {}
    for name in args.rows.split(","):
        row = ROWS[name]
        model = models["eos" if row["eos"] else "no_eos"]
        try:
            ours = run_ours(args, work, f"ours_{name}", row, model)
            prompts = work / f"trl_prompts_{name}.jsonl"
            trl_prompts(None, Path(ours.pop("data")), model, prompts)
            theirs = run_trl(args, work, f"trl_{name}", row, model, prompts)
        except Exception as exc:  # noqa: BLE001 - a row that cannot run is a result too
            failures[name] = str(exc)
            print(f"{name}: FAILED\n{exc}", flush=True)
            continue
        rows.append(compare(name, row, ours, theirs))
        print(f"[{name}] done ({time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.2f})", flush=True)
    load["end"] = os.getloadavg()
    print_table(rows, failures)
    head = next((r for r in rows if r["row"] == "memory"), None)
    report = {
        "peer": f"TRL GRPOTrainer (trl {train_step._version('trl')}), transformers generate, gradient checkpointing, "
                "1 process, OMP_NUM_THREADS=1",
        "ours": head and head["ours"], "theirs": head and head["theirs"],
        "unit": "GiB peak resident memory (VmHWM) of the training phase of one GRPO step at 4K-token responses",
        "ratio": head and head["ratio"],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "load": load,
        "details": {"rows": rows, "failures": failures, "model": model_facts(models["no_eos"]),
                    "max_response_tokens": args.max_tokens, "packing_mean_len": args.mean_len,
                    "versions": {p: train_step._version(p) for p in ("trl", "transformers", "torch", "deepspeed",
                                                                      "accelerate")},
                    "git": train_step._git(), "wall_s": time.perf_counter() - started,
                    "machine": {"omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "cpus": os.cpu_count(),
                                "python": sys.version.split()[0]}},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    if work_ctx:
        work_ctx.cleanup()


def print_table(rows: list[dict], failures: dict) -> None:
    print(f"\n{'row':<9}{'side':<7}{'train peak GiB':>15}{'process peak GiB':>17}{'train s':>9}{'tokens':>8}"
          f"{'tok/s':>8}{'len mean':>9}{'len max':>8}")
    for r in rows:
        for side in ("ours", "theirs"):
            d = r[f"{side}_detail"]
            print(f"{r['row']:<9}{side:<7}{d['train_peak_rss_gib']:>15.2f}{d['process_peak_rss_gib']:>17.2f}"
                  f"{d['train_s']:>9.1f}"
                  f"{d['train_tokens']:>8}{d['train_tokens_per_s']:>8.0f}{d['response_len_mean']:>9.0f}"
                  f"{d['response_len_max']:>8}")
    print(f"\n{'comparison':<10}{'metric':<20}{'ours':>9}{'TRL':>9}{'ratio':>7}  goal")
    for r in rows:
        print(f"{r['row']:<10}{r['metric']:<20}{r['ours']:>9.2f}{r['theirs']:>9.2f}{r['ratio']:>7.2f}  {r['goal']}"
              f"{'' if r['goal_met'] else '  (missed)'}")
    for name, err in failures.items():
        print(f"\nFAILED {name}: {err.splitlines()[0]}")


if __name__ == "__main__":
    main()
