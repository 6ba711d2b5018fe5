#!/usr/bin/env python3
"""Plain Hugging Face transformers decode speed at batch 1 (bf16, CUDA, greedy, default dynamic KV cache, no compile).

tokens/s = new_tokens / seconds of one model.generate() call (prefill of the prompt included),
timed with torch.cuda.synchronize() + time.perf_counter(); the median of --runs timed runs is reported.
"""
import argparse, json, os, statistics, time
import torch
import transformers
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="checkpoint directory (e.g. from make_llama_1b.py)")
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=1, help="untimed generate() calls first")
    ap.add_argument("--runs", type=int, default=3, help="timed generate() calls; the median is reported")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random prompt ids")
    ap.add_argument("--out", required=True, help="JSON file to write")
    a = ap.parse_args()
    if a.prompt_tokens < 1 or a.new_tokens < 1 or a.runs < 1 or a.warmup < 0:
        raise SystemExit("hf_decode: --prompt-tokens, --new-tokens, --runs must be >= 1, --warmup >= 0")
    if not os.path.isfile(os.path.join(a.model, "config.json")):
        raise SystemExit(f"hf_decode: no config.json in {a.model}")
    if not torch.cuda.is_available():
        raise SystemExit("hf_decode: CUDA is not available")

    # `dtype=` is the transformers >= 4.56 name (torch_dtype is deprecated); checked right after.
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16).to("cuda").eval()
    if model.dtype != torch.bfloat16 or model.device.type != "cuda":
        raise SystemExit(f"hf_decode: model loaded as {model.dtype} on {model.device}")

    gen = torch.Generator().manual_seed(a.seed)
    prompt = torch.randint(0, model.config.vocab_size, (1, a.prompt_tokens), generator=gen).to("cuda")
    mask = torch.ones_like(prompt)
    want_len = a.prompt_tokens + a.new_tokens

    def generate():
        # min_new_tokens == max_new_tokens: exactly N new tokens even if an EOS id were still set.
        out = model.generate(prompt, attention_mask=mask, do_sample=False, max_new_tokens=a.new_tokens,
                             min_new_tokens=a.new_tokens, eos_token_id=None, pad_token_id=0)
        if out.shape != (1, want_len):
            raise SystemExit(f"hf_decode: generate returned shape {tuple(out.shape)}, wanted (1, {want_len})")
        return out

    with torch.no_grad():
        for _ in range(a.warmup):
            generate()
        runs = []
        first, identical = None, True
        for _ in range(a.runs):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = generate()
            torch.cuda.synchronize()
            s = time.perf_counter() - t0
            if first is None:
                first = out
            else:
                identical = identical and torch.equal(out, first)  # recorded, not required
            runs.append({"seconds": s, "tokensPerSecond": a.new_tokens / s})

    tps = statistics.median(r["tokensPerSecond"] for r in runs)
    result = {"tokensPerSecond": tps, "runs": runs, "newTokens": a.new_tokens, "promptTokens": a.prompt_tokens,
              "transformers": transformers.__version__, "torch": torch.__version__,
              "attnImplementation": getattr(model.config, "_attn_implementation", None),
              "device": torch.cuda.get_device_name(0), "model": os.path.abspath(a.model),
              "identicalOutputsAcrossRuns": identical}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")
    each = ", ".join("%.1f" % r["tokensPerSecond"] for r in runs)
    print(f"hf_decode: {tps:.1f} tokens/s (median of {a.runs}; runs {each}), {a.prompt_tokens}+{a.new_tokens} tokens, "
          f"transformers {transformers.__version__}, torch {torch.__version__}, "
          f"attn {result['attnImplementation']}; wrote {a.out}")


if __name__ == "__main__":
    main()
