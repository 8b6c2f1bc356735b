"""LoRA (`model.lora`, `runtime/grpo/lora.py`): adapters train, the engines get merged weights.

In-process (fast): merging a PEFT model's state gives the base model's names and the PEFT model's
outputs; the adapter-off view computes the input model; dropout acts in gradient forwards only; a
push after an optimiser step changes the transformers engine's (and, slow, real vLLM CPU's) greedy
outputs to the merged model's. Slow: a real train job with LoRA, KL against the adapter-off
reference, killed mid-step and resumed, ends with the uninterrupted run's weights; the base weights
stay frozen, `model/` is a plain HF model of W + (alpha / rank)·B·A and `adapter/` loads with PEFT;
ZeRO 0, 1 and 3 (2 gloo ranks) train the same adapter as each other.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # before vLLM is imported: engine in-process

import pytest
import torch
from safetensors.torch import load_file

from rlspec.compiler.jobs import EngineSettings
from rlspec.compiler.spec import Lora
from rlspec.runtime import tinymodel
from rlspec.runtime.grpo import lora, weightsync
from rlspec.runtime.grpo.chunked import response_logprobs

from conftest import compile_and_curate, job_dir, metrics, run_train, spec_text

pytest.importorskip("peft")

CFG = Lora(rank=4, alpha=8.0, target_modules=["q_proj", "v_proj", "down_proj"])
TARGETS = ("q_proj", "v_proj", "down_proj")


@pytest.fixture(scope="module")
def small_model_dir(tmp_path_factory):
    return tinymodel.build_tiny_model(tmp_path_factory.mktemp("lora") / "model", tinymodel.TinyModelConfig(seed=3))


def load(model_dir):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def stepped_policy(model_dir):
    """The LoRA policy after one AdamW step on a language-model loss (B leaves zero, so the merged
    weights move); only the adapter requires a gradient."""
    policy = lora.wrap(load(model_dir), CFG)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=0.05)
    ids = torch.randint(5, 200, (2, 24), generator=torch.Generator().manual_seed(0))
    policy(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    return policy.eval()


@torch.no_grad()
def greedy(model, prompt: list[int], n: int) -> list[int]:
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt):]


def test_merged_state_is_the_base_models_and_computes_the_adapted_policy(small_model_dir):
    base = load(small_model_dir)
    names = sorted(base.state_dict())
    policy = stepped_policy(small_model_dir)
    merged = lora.merged_state_dict(policy.state_dict(), lora.scale(CFG))
    assert sorted(merged) == names  # no PEFT name survives
    ids = torch.randint(5, 200, (2, 16), generator=torch.Generator().manual_seed(1))
    plain = load(small_model_dir)
    plain.load_state_dict(merged)
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, policy(input_ids=ids).logits, atol=1e-5)
        assert not torch.allclose(base(input_ids=ids).logits, policy(input_ids=ids).logits, atol=1e-3)
    # only the adapter trained: every tensor of an untargeted module is still the input model's
    own = base.state_dict()
    frozen = [k for k in names if not any(f".{t}.weight" in k for t in TARGETS)]
    assert frozen and all(torch.equal(merged[k], own[k]) for k in frozen)
    assert not any(torch.equal(merged[k], own[k]) for k in names if ".q_proj.weight" in k)
    # with the adapter off, the policy is the input model (the KL reference)
    mask = torch.ones(2, 15)
    with torch.no_grad():
        off, _ = response_logprobs(lora.AdapterOff(policy), ids, None, ids[:, 1:], mask, 1.0, 8, grad=False)
        ref, _ = response_logprobs(base, ids, None, ids[:, 1:], mask, 1.0, 8, grad=False)
        on, _ = response_logprobs(policy, ids, None, ids[:, 1:], mask, 1.0, 8, grad=False)
    assert torch.equal(off, ref) and not torch.allclose(on, ref, atol=1e-3)


def test_lora_dropout_acts_in_the_loss_forward_only(small_model_dir):
    """With dropout, a forward with gradients drops adapter inputs; one without (old log-probs, the
    reference, a check like this) computes the merged weights the engine samples with."""
    cfg = Lora(rank=4, alpha=8.0, dropout=0.5, target_modules=["q_proj"])
    policy = lora.wrap(load(small_model_dir), cfg)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_()
    ids = torch.randint(5, 200, (1, 16), generator=torch.Generator().manual_seed(4))
    plain = load(small_model_dir)
    plain.load_state_dict(lora.merged_state_dict(policy.state_dict(), lora.scale(cfg)))
    with torch.no_grad():
        quiet = policy(input_ids=ids).logits
        assert torch.allclose(quiet, plain(input_ids=ids).logits, atol=1e-5)
    torch.manual_seed(0)
    assert not torch.allclose(policy(input_ids=ids).logits.detach(), quiet, atol=1e-3)


def test_wrap_refuses_embedding_targets(small_model_dir):
    with pytest.raises(ValueError, match="only linear layers"):
        lora.wrap(load(small_model_dir), Lora(rank=2, alpha=2.0, target_modules=["embed_tokens"]))


def engine_for(model_dir, kind: str):
    from rlspec.runtime.rollout import make_engine
    settings = EngineSettings.model_validate({
        "engine": kind, "max_prompt_tokens": 64, "hf": {"batch_size": 8},
        "vllm": {"tensor_parallel_size": 1, "gpu_memory_utilization": 0.5, "kv_cache_memory_bytes": 64 << 20,
                 "enforce_eager": True, "max_num_seqs": 8, "pipeline_parallel_size": 1, "quantization": None}})
    return make_engine(model_dir, settings, dtype="float32", seed=0, max_model_len=256)


@pytest.mark.parametrize("kind", ["hf", pytest.param("vllm", marks=pytest.mark.slow)])
def test_pushing_a_stepped_adapter_changes_the_engines_outputs(small_model_dir, kind):
    """The weight push after an optimiser step: the engine's greedy text of fixed prompts changes and
    equals the merged model's (the engine received W + scale·B·A under the base names)."""
    from rlspec.runtime.rollout import SamplingParams
    engine = engine_for(small_model_dir, kind)
    try:
        prompts = [[5, 17, 42, 9], [11, 23, 8, 60, 31]]
        params = SamplingParams(n=1, temperature=0.0, top_p=1.0, top_k=-1, max_tokens=12, ignore_eos=True)

        def engine_greedy():
            return [list(g[0].token_ids) for g in engine.generate(prompts, params)]
        before = engine_greedy()
        policy = stepped_policy(small_model_dir)
        stats = weightsync.push_weights(policy, engine, zero3=False, lora_scale=lora.scale(CFG))
        assert stats["tensors"] == len(list(load(small_model_dir).named_parameters()))
        plain = load(small_model_dir)
        plain.load_state_dict(lora.merged_state_dict(policy.state_dict(), lora.scale(CFG)))
        expected = [greedy(plain, p, 12) for p in prompts]
        assert engine_greedy() == expected
        assert expected != before, "the step did not change the greedy outputs: a weaker test"
    finally:
        engine.close()


# ----------------------------------------------------------------------------------- real train job

# dropout 0: the trainer's loss forward then computes what the engine sampled with, so `logprob_mad`
# shows the engine has the merged weights (GradDropout is tested in-process above)
LORA_SPEC = "  lora: {rank: 4, alpha: 8, target_modules: [q_proj, v_proj, down_proj]}\n"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_lora_train_job_resumes_freezes_the_base_and_saves_a_merged_model(tmp_path, tiny_model_dir):
    """3 steps, checkpoint at 2, KL (coef 0.1) against the adapter-off reference: killed in step 3 and resumed, the job ends with the uninterrupted run's bytes. The engine's
    log-probs of its samples equal the trainer's adapted policy's every step (`logprob_mad`: a
    stale engine would differ after step 1), so rollouts use the merged weights."""
    text = spec_text(tiny_model_dir, steps=3, every=2, extra_algorithm="kl: {coef: 0.1}\nentropy_coef: 0.05")
    text = text.replace("  max_context: 256\n", "  max_context: 256\n" + LORA_SPEC, 1)
    ref_build, ref_job = compile_and_curate(tmp_path / "ref", text)
    assert json.loads(ref_job.read_text())["config"]["lora"]["rank"] == 4
    out = run_train(ref_build, ref_job)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "reference model: the policy with its adapter off" in out.stdout
    folder = job_dir(ref_build, ref_job)
    rows = metrics(ref_build, ref_job)
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6) and rows[-1]["kl"] > 1e-6  # the adapter moved
    # k3 KL ~ Δ²/2 per token: an engine left on the input model would show a log-prob gap near
    # sqrt(2·kl) (measured 1e-2 at step 3), the merged push leaves float noise (measured 4e-7)
    assert all(r["logprob_mad"] < 1e-4 for r in rows), rows

    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    before, after = load_file(str(tiny_model_dir / "model.safetensors")), load_file(str(folder / "model" / "model.safetensors"))
    assert sorted(before) == sorted(after)  # a plain HF model: no PEFT names
    targeted = [k for k in before if any(f".{t}.weight" in k for t in TARGETS)]
    assert targeted and all(torch.equal(before[k], after[k]) for k in before if k not in targeted)
    moved = [k for k in targeted if not torch.equal(before[k], after[k])]
    assert moved, "the adapter did not change the merged weights"
    # merged = frozen base + (alpha / rank)·B·A from the saved adapter: the base part did not train
    adapter = load_file(str(folder / "adapter" / "adapter_model.safetensors"))
    for k in targeted:
        stem = "base_model.model." + k[: -len(".weight")]
        a, b = adapter[f"{stem}.lora_A.weight"], adapter[f"{stem}.lora_B.weight"]
        assert torch.allclose(after[k], before[k] + 2.0 * b @ a, atol=1e-6), k
    # the optimiser holds the adapter only: ZeRO-2's fp32 partition (1 rank) is A and B, nothing else
    optim = torch.load(folder / "checkpoints" / "step-000003" / "ds" / "zero_pp_rank_0_mp_rank_00_optim_states.pt",
                       weights_only=False)["optimizer_state_dict"]
    held = sum(t.numel() for t in optim["single_partition_of_fp32_groups"]) - sum(optim["group_paddings"])
    assert held == sum(t.numel() for t in adapter.values())
    merged = AutoModelForCausalLM.from_pretrained(folder / "model", dtype=torch.float32).eval()
    peft_model = PeftModel.from_pretrained(load(tiny_model_dir), str(folder / "adapter")).eval()
    ids = torch.randint(5, 200, (1, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, peft_model(input_ids=ids).logits, atol=1e-5)

    build, job = compile_and_curate(tmp_path / "killed", text)
    assert run_train(build, job, {"RLSPEC_FAULT": "train:step:3"}).returncode == -9
    resumed = run_train(build, job)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step-000002" in resumed.stdout
    got = job_dir(build, job)
    assert (got / "model" / "model.safetensors").read_bytes() == (folder / "model" / "model.safetensors").read_bytes()
    assert load_file(str(got / "adapter" / "adapter_model.safetensors")).keys() == adapter.keys()
    assert [r["reward_mean"] for r in metrics(build, job)] == [r["reward_mean"] for r in rows]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_lora_on_every_zero_stage_trains_the_same_adapter(tmp_path, tiny_model_dir):
    """ZeRO-0 on 1 rank, ZeRO-1 and ZeRO-3 on 2 gloo ranks (stand-ins for NCCL ranks on GPUs): the
    same rewards and, within float tolerance, the same merged weights. ZeRO-3 partitions the frozen
    base weights too: the weight push gathers each LoRA layer's base weight, A and B in one bucket,
    the adapter-off reference and the dummy forwards gather through the same module hooks."""
    runs = {}
    for ranks, zero in ((1, 0), (2, 1), (2, 3)):
        text = spec_text(tiny_model_dir, steps=2, ranks=ranks, every=10,
                         extra_algorithm="kl: {coef: 0.1}\nentropy_coef: 0.05\nlogprob_chunk_tokens: 8")
        text = text.replace("  max_context: 256\n", "  max_context: 256\n" + LORA_SPEC, 1)
        text = text.replace("resources:\n", f"resources:\n  deepspeed: {{zero_stage: {zero}}}\n")
        build, job = compile_and_curate(tmp_path / f"z{zero}", text)
        out = run_train(build, job, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        assert f"world {ranks}" in out.stdout
        runs[zero] = (metrics(build, job), load_file(str(job_dir(build, job) / "model" / "model.safetensors")))
    m0, w0 = runs[0]
    assert m0[-1]["kl"] > 0
    for zero in (1, 3):
        m, w = runs[zero]
        assert [r["reward_mean"] for r in m] == [r["reward_mean"] for r in m0], zero
        assert all(r["logprob_mad"] < 1e-4 for r in m), (zero, m)
        for name in w0:
            assert torch.allclose(w0[name], w[name], atol=1e-5), (zero, name)
