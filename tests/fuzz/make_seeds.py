#!/usr/bin/env python3
"""make_seeds.py WORK OUT - write the fuzz seed corpora (called by make_seeds.sh).

WORK holds the synth models m-* and the traces tr*.{jsonl,bin}; OUT is
tests/fuzz/corpus. Each target's directory is replaced. Input formats follow
the targets' comments (fuzz_*.c)."""
import glob
import json
import os
import shutil
import struct
import sys

work, out = sys.argv[1], sys.argv[2]


def reset(name):
    """Empty a target's seed directory, keeping regress-* (inputs that once failed)."""
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if not f.startswith("regress-"):
            os.remove(os.path.join(d, f))
    return d


def put(d, name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return f.read(n)


models = sorted(glob.glob(os.path.join(work, "m-*")))

# safetensors: mode byte 0x48 = header mode with a 36 x 16 KiB data area (the
# tiny shards' data areas are < 576 KiB); 0x01 = raw file.
d = reset("safetensors")
for m in models:
    for i, f in enumerate(sorted(glob.glob(m + "/*.safetensors"))[:2]):
        put(d, "%s-%d" % (os.path.basename(m), i), b"\x48" + header(f))
small = sorted(glob.glob(os.path.join(work, "m-f16/*.safetensors")), key=lambda f: len(header(f)))[0]
with open(small, "rb") as f:
    raw = f.read()
n = struct.unpack("<Q", raw[:8])[0]
put(d, "raw-truncated", b"\x01" + raw[: 8 + n + 100])
one = {"x": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
put(d, "raw-whole", b"\x01" + struct.pack("<Q", len(json.dumps(one))) + json.dumps(one).encode() + bytes(16))
dts = [("F32", 4), ("F16", 2), ("BF16", 2), ("F64", 8), ("U32", 4), ("I32", 4), ("U16", 2), ("I16", 2), ("U8", 1),
       ("I8", 1), ("I64", 8), ("U64", 8), ("BOOL", 1), ("F8_E4M3", 1), ("F8_E5M2", 1)]
hdr, off = {"__metadata__": {"format": "pt"}}, 0
for i, (dt, sz) in enumerate(dts):
    shape = [i % 3 + 1, 3] if i % 4 else [0]
    nb = sz
    for s in shape:
        nb *= s
    hdr["t%d" % i] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + nb]}
    off += nb
put(d, "all-dtypes", b"\x02" + json.dumps(hdr).encode())
put(d, "empty", b"\x00{}")
put(d, "scalar", b"\x02" + b'{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}   ')

# index: for the fixed shards of fuzz_index.c, plus the synth indexes.
d = reset("index")
wm = {"a.weight": "model-00001-of-00002.safetensors", "a.bias": "model-00001-of-00002.safetensors",
      "b.weight": "model-00002-of-00002.safetensors", "b.scales": "model-00002-of-00002.safetensors"}
put(d, "valid", json.dumps({"metadata": {"total_size": 50}, "weight_map": wm}, indent=2))
put(d, "one-shard", json.dumps({"weight_map": {"a.weight": "model-00001-of-00002.safetensors"}}))
put(d, "wrong-shard", json.dumps({"weight_map": {"a.weight": "model-00002-of-00002.safetensors"}}))
put(d, "missing", json.dumps({"weight_map": {"z": "model-00003-of-00003.safetensors"}}))
put(d, "dotdot", json.dumps({"weight_map": {"a.weight": ".."}}))
for m in models[:2]:
    with open(os.path.join(m, "model.safetensors.index.json")) as f:
        idx = json.load(f)
    keep = dict(list(idx["weight_map"].items())[:12])
    put(d, "synth-" + os.path.basename(m), json.dumps({"metadata": idx.get("metadata", {}), "weight_map": keep}))

# config
d = reset("config")
for m in models:
    shutil.copy(os.path.join(m, "config.json"), os.path.join(d, os.path.basename(m)))
with open(os.path.join(models[0], "config.json")) as f:
    c = json.load(f)
c2 = dict(c, model_type="glm4_moe_lite", q_lora_rank=None, rope_scaling=None, eos_token_id=[1, 2, 3],
          rope_parameters={"rope_type": "yarn", "factor": 40, "rope_theta": 10000,
                           "original_max_position_embeddings": 4096})
put(d, "glm-variant", json.dumps(c2))
c3 = dict(c)
c3.pop("quantization", None)
c3["quantization_config"] = {"quant_method": "fp8", "weight_block_size": [128, 128]}
put(d, "foreign-quant", json.dumps(c3))
c4 = dict(c)
c4["text_config"] = {"quantization_config": {"bits": 4, "group_size": 64, "model.layers.1.mlp": False}}
c4.pop("quantization", None)
c4.pop("quantization_config", None)
put(d, "text-config-quant", json.dumps(c4))

# model: config.json variants for the shards of `synth --preset tiny` (= m-mlx), see fuzz_model.c
d = reset("model")
with open(os.path.join(work, "m-mlx", "config.json")) as f:
    c = json.load(f)
put(d, "tiny", json.dumps(c, indent=2))
put(d, "tiny-8bit", json.dumps(dict(c, quantization=dict(c["quantization"], bits=8),
                                    quantization_config=dict(c["quantization"], bits=8))))
put(d, "tiny-more-experts", json.dumps(dict(c, n_routed_experts=32)))
put(d, "tiny-fewer-layers", json.dumps(dict(c, num_hidden_layers=2, first_k_dense_replace=0)))
put(d, "tiny-unquantized", json.dumps({k: v for k, v in c.items() if not k.startswith("quantization")}))

# tokenizer: the synth tokenizer (byte-level BPE) and a SentencePiece-style one
d = reset("tokenizer")
shutil.copy(os.path.join(models[0], "tokenizer.json"), os.path.join(d, "synth-bytelevel"))
sp = {
    "added_tokens": [{"id": 0, "content": "<unk>", "special": True}, {"id": 1, "content": "<s>", "special": True},
                     {"id": 9, "content": "</s>", "special": True, "lstrip": True, "rstrip": True}],
    "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                       {"type": "Replace", "pattern": {"String": " "},
                                                        "content": "\u2581"}]},
    "pre_tokenizer": None,
    "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                                                 {"type": "ByteFallback"}, {"type": "Fuse"},
                                                 {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
    "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": True, "fuse_unk": True,
              "vocab": {"<unk>": 0, "<s>": 1, "<0xC3>": 2, "<0xA9>": 3, "\u2581": 4, "h": 5, "i": 6,
                        "\u2581h": 7, "\u2581hi": 8},
              "merges": [["\u2581", "h"], ["\u2581h", "i"]]}}
put(d, "sentencepiece", json.dumps(sp, ensure_ascii=False))
mini = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
        "normalizer": {"type": "NFKC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\s+|\\p{L}+|\\d{1,3}"}, "behavior": "Isolated", "invert": False},
            {"type": "Digits", "individual_digits": True}, {"type": "Punctuation"}, {"type": "WhitespaceSplit"},
            {"type": "Metaspace", "replacement": "_", "prepend_scheme": "always", "split": True}]}}
put(d, "mini-pretok", json.dumps(mini))

# trace
d = reset("trace")
for t in sorted(glob.glob(os.path.join(work, "tr*"))):
    shutil.copy(t, os.path.join(d, os.path.basename(t)))
hdr = {"format": "moestream-trace", "version": 1, "model": "m", "n_layers": 2, "n_experts": 300, "top_k": 2}
lines = [json.dumps(hdr), '{"seq":0,"pos":0,"experts":[[299,0],[1,2]],"predicted":[[3],[]]}',
         '{"seq":1,"pos":0,"experts":[[5,6],[7,8]],"extra":{"x":[1]}}']
put(d, "wide-ids.jsonl", "\n".join(lines) + "\n")

# cli_args: byte 0 selects the parser (see fuzz_cli_args.c), the rest is the argument
d = reset("cli_args")
seeds = [(0, "110G"), (0, "512MiB"), (0, "1.5k"), (0, "0x1p4M"), (1, "1G,2G,512M"), (2, "0,1234,5678"),
         (2, " 1, 2,3"), (3, "-5"), (3, "16777216"), (4, "0.7"), (4, "1e-3"), (5, "24G"), (5 + 9, "uring"),
         (5 + 9, "fault:eio=0.1@4096,short=0.5,inner=pread"), (5 + 18, "64"), (5 + 27, "lru"),
         (5 + 36, "profile.json"), (5 + 54, "8"), (5 + 63, "4096"), (5 + 72, "512"), (5 + 90, "next-layer"),
         (6, "lru"), (6, "lru-layer"), (6, "lfu:period=100"), (6, "lfu-decay:hl=64"), (6, "tinylfu:window=0.01"),
         (6, "2q:kin=0.25:kout=0.5"), (6, "next-use:hl=32:prior=0.5:part=1:lift=2"), (6, "belady"),
         (6, "pin:hl=8:frac=0.5"),
         (7, "eio=0.01@8192,eagain=0.2,eintr=0.1,short=0.3,delay_us=10,seed=7,nodirect=1,inner=mmap"),
         (8, "1T")]
for i, (sel, s) in enumerate(seeds):
    put(d, "s%02d" % i, bytes([sel]) + s.encode())

# serve_request: bodies of POST /v1/chat/completions and /v1/completions (the
# target parses each input as both)
d = reset("serve_request")
U = {"role": "user", "content": "Hello"}
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "weather",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
bodies = [
    {"model": "m", "messages": [U]},
    {"messages": [{"role": "system", "content": "Be brief."}, U], "temperature": 0, "max_tokens": 16},
    {"messages": [{"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}, U],
     "stream": True, "stream_options": {"include_usage": True}},
    {"messages": [U, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "sunny"}], "tools": [TOOL], "tool_choice": "auto"},
    {"messages": [U], "tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
     "parallel_tool_calls": False},
    {"messages": [U], "top_p": 0.9, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1, "presence_penalty": 0.5,
     "frequency_penalty": -0.5, "seed": 42, "stop": ["\n\n", "END"], "logprobs": True, "top_logprobs": 5,
     "logit_bias": {"13": -100, "42": 3.5}, "ignore_eos": True, "n": 1, "user": "u"},
    {"messages": [U], "response_format": {"type": "text"}, "chat_template_kwargs": {"enable_thinking": False},
     "max_completion_tokens": 8},
    {"messages": [{"role": "assistant", "content": "x", "reasoning_content": "think"}, U], "n": 2},
    {"prompt": "Once upon a time", "max_tokens": 32, "stop": "\n"},
    {"prompt": [0, 17, 300, 45], "logprobs": 3, "echo": False, "best_of": 1, "suffix": ""},
    {"prompt": [[1, 2, 3]], "stream": True},
    {"prompt": ["one"], "temperature": 1.5},
]
for i, b in enumerate(bodies):
    put(d, "b%02d.json" % i, json.dumps(b))
put(d, "bad-trailing.json", '{"messages": [{"role": "user", "content": "hi"}]} x')
put(d, "deep.json", "[" * 40 + "]" * 40)
