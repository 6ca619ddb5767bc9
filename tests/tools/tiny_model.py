# SPDX-License-Identifier: Apache-2.0
"""Builds small Hugging Face model directories for the tool tests: a Llama-style config.json and
BF16 (or F16/F32) weights in safetensors files, sharded with model.safetensors.index.json. The
safetensors writer and reader here are written from the format's description (8-byte length,
JSON header, data), independent of the C++ ones they test."""

import json
import os
import struct

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "U8": np.uint8, "I32": np.int32}


def to_bf16_bits(a):
    """float32 -> bfloat16 bits, rounding to nearest even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def encode(dtype, array):
    if dtype == "BF16":
        return to_bf16_bits(array).tobytes()
    return np.ascontiguousarray(array, dtype=DTYPES[dtype]).tobytes()


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: (dtype, array)} written in order; returns the header dict."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, (dtype, array) in tensors.items():
        data = encode(dtype, array)
        header[name] = {"dtype": dtype, "shape": list(np.shape(array)),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    return header


def read_safetensors(path):
    """{name: numpy array} (BF16 as uint16 bits) and the metadata."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        np_type = {"BF16": np.uint16}.get(e["dtype"]) or DTYPES[e["dtype"]]
        out[name] = np.frombuffer(raw[8 + n + b:8 + n + end], dtype=np_type).reshape(e["shape"])
    return out, meta


CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 96,
    "intermediate_size": 200,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "vocab_size": 300,
    "rms_norm_eps": 1e-5,
    "torch_dtype": "bfloat16",
}


def tiny_llama_tensors(seed=7):
    """{name: float32 array} of a 2-layer Llama with tails against every group size."""
    rng = np.random.default_rng(seed)
    c = CONFIG
    d, ff, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    kv = d // c["num_attention_heads"] * c["num_key_value_heads"]
    t = {"model.embed_tokens.weight": rng.standard_normal((v, d))}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(d)
        for name, shape in (("q_proj", (d, d)), ("k_proj", (kv, d)), ("v_proj", (kv, d)),
                            ("o_proj", (d, d))):
            t[p + "self_attn." + name + ".weight"] = 0.05 * rng.standard_normal(shape)
        for name, shape in (("gate_proj", (ff, d)), ("up_proj", (ff, d)), ("down_proj", (d, ff))):
            t[p + "mlp." + name + ".weight"] = 0.05 * rng.standard_normal(shape)
        t[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(d)
    t["model.norm.weight"] = np.ones(d)
    t["lm_head.weight"] = 0.05 * rng.standard_normal((v, d))
    return {k: np.asarray(a, dtype=np.float32) for k, a in t.items()}


def make_tiny_llama(directory, dtype="BF16", shards=2, seed=7, tensors=None):
    """Writes config.json and the weights (sharded with an index when shards > 1)."""
    os.makedirs(directory, exist_ok=True)
    tensors = tensors if tensors is not None else tiny_llama_tensors(seed)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(CONFIG, f)
    names = list(tensors)
    if shards == 1:
        write_safetensors(os.path.join(directory, "model.safetensors"),
                          {n: (dtype, tensors[n]) for n in names})
        return tensors
    per = (len(names) + shards - 1) // shards
    weight_map = {}
    for s in range(shards):
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = names[s * per:(s + 1) * per]
        write_safetensors(os.path.join(directory, file), {n: (dtype, tensors[n]) for n in part})
        weight_map.update({n: file for n in part})
    with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f)
    return tensors
