"""Hugging Face transformers prefill of the 1B-preset checkpoint beside mocc's (bench/gpu/prefill.ts):
time of one model(input_ids) forward of T prompt tokens at batch 1 in bf16, sdpa attention, no cache
kept (use_cache=False would skip the K/V writes mocc does; so a DynamicCache is passed, as generate's
prefill does). CUDA events, median of --runs after --warmup calls.
  python3 bench/gpu/hf_prefill.py --model DIR --tokens 128,512,2048 --out OUT/hf_prefill.json"""
import argparse, json, statistics
import torch
from transformers import AutoModelForCausalLM, DynamicCache


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", default="128,512,2048")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
    vocab = model.config.vocab_size
    rows = []
    for t in [int(x) for x in a.tokens.split(",")]:
        ids = torch.tensor([[(i * 7919 + 13) % vocab for i in range(t)]], device="cuda")
        times = []
        with torch.inference_mode():
            for r in range(a.warmup + a.runs):
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                out = model(input_ids=ids, past_key_values=DynamicCache(), use_cache=True)
                e.record()
                e.synchronize()
                if r >= a.warmup:
                    times.append(s.elapsed_time(e))
        logits_last = out.logits[0, -1].float()
        rows.append({"tokens": t, "ms": statistics.median(times), "runs": times, "lastLogitsNorm": float(logits_last.norm())})
        print(f"transformers prefill {t} tokens: {statistics.median(times):.2f} ms")
    json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
