#!/usr/bin/env python3
"""Write a Hugging Face LLaMA checkpoint of mocc's "1B preset" shape with random weights (bf16, safetensors).

--dtype float32 saves the same weights (initialised, rounded to bf16, then widened) as float32, for the
f32 prefill's benchmark: the same values as the bf16 checkpoint of that seed.

Built on the GPU with a fixed seed using transformers' own init (normal, std = initializer_range = 0.02;
RMSNorm weights = 1), then cast to bfloat16 and saved with save_pretrained(safe_serialization=True).
Note: transformers >= 5 writes `rope_parameters: {rope_theta, rope_type}` instead of a top-level
`rope_theta` in config.json; mocc reads both.
"""
import argparse, json, os
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

SHAPE = dict(hidden_size=2048, intermediate_size=5461, num_hidden_layers=24, num_attention_heads=32,
             num_key_value_heads=32, vocab_size=32000, max_position_embeddings=2048, rms_norm_eps=1e-5,
             tie_word_embeddings=False, hidden_act="silu", initializer_range=0.02)
ROPE_THETA = 10000.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    a = ap.parse_args()
    if os.path.exists(a.out) and (not os.path.isdir(a.out) or os.listdir(a.out)):
        raise SystemExit(f"make_llama_1b: {a.out} exists and is not an empty directory")
    if not torch.cuda.is_available():
        raise SystemExit("make_llama_1b: CUDA is not available")

    major = int(transformers.__version__.split(".")[0])
    if major >= 5:
        config = LlamaConfig(**SHAPE, rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA})
        theta = config.rope_parameters["rope_theta"]
    else:
        config = LlamaConfig(**SHAPE, rope_theta=ROPE_THETA, rope_scaling=None)
        theta = config.rope_theta
    if float(theta) != ROPE_THETA:
        raise SystemExit(f"make_llama_1b: rope_theta is {theta}, wanted {ROPE_THETA}")
    for k, v in SHAPE.items():
        if getattr(config, k) != v:
            raise SystemExit(f"make_llama_1b: config.{k} = {getattr(config, k)!r}, wanted {v!r}")

    torch.manual_seed(a.seed)
    torch.cuda.manual_seed_all(a.seed)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config)
    model = model.to(torch.bfloat16).eval()

    # Sanity: the init must be the normal(0, 0.02) one (not zeros/empty memory), norms = 1, all finite.
    n_params = 0
    for name, p in model.named_parameters():
        n_params += p.numel()
        if p.device.type != "cuda" or p.dtype != torch.bfloat16:
            raise SystemExit(f"make_llama_1b: {name} is {p.dtype} on {p.device}")
        if not torch.isfinite(p).all():
            raise SystemExit(f"make_llama_1b: {name} has non-finite values")
        if name.endswith("norm.weight"):
            if not torch.all(p == 1):
                raise SystemExit(f"make_llama_1b: {name} is not all ones")
        else:
            std = p.float().std().item()
            if not 0.018 < std < 0.022:
                raise SystemExit(f"make_llama_1b: {name} has std {std:.5f}, wanted about 0.02")
    if model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr():
        raise SystemExit("make_llama_1b: lm_head is tied to embed_tokens")

    if a.dtype == "float32":
        model = model.to(torch.float32)
    model.save_pretrained(a.out, safe_serialization=True)

    with open(os.path.join(a.out, "config.json")) as fh:
        saved = json.load(fh)
    saved_dtype = saved.get("dtype", saved.get("torch_dtype"))
    if saved_dtype != a.dtype:
        raise SystemExit(f"make_llama_1b: config.json dtype is {saved_dtype!r}")
    saved_theta = saved.get("rope_theta", (saved.get("rope_parameters") or {}).get("rope_theta"))
    if saved_theta is None or float(saved_theta) != ROPE_THETA:
        raise SystemExit(f"make_llama_1b: config.json rope theta is {saved_theta!r}")
    files = sorted(os.listdir(a.out))
    if not any(f.endswith(".safetensors") for f in files):
        raise SystemExit(f"make_llama_1b: no .safetensors written in {a.out}: {files}")
    total = sum(os.path.getsize(os.path.join(a.out, f)) for f in files)
    print(f"make_llama_1b: transformers {transformers.__version__}, seed {a.seed}, {n_params / 1e9:.3f} B params")
    print(f"make_llama_1b: wrote {a.out}: {len(files)} files, {total / 2**30:.2f} GiB ({total} bytes): {', '.join(files)}")


if __name__ == "__main__":
    main()
