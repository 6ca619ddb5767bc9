# SPDX-License-Identifier: Apache-2.0
"""aplq-convert end to end on a tiny Llama-style model this test writes itself (BF16, two shards
and an index): every bit width in both output formats, the safetensors export read back by the
library's loader (aplq-export-check: byte-equal to aplq::quantize of the source) and by this
file's own safetensors reader, the NPZ export by numpy (equal to the safetensors export) and by the
library's loader (aplq-accuracy --manifest), a download from fake_hub.py, and bad inputs that must
each give one error line naming the file and tensor, a non-zero exit, and an empty output
directory. APLQ_CONVERT, APLQ_EXPORT_CHECK and APLQ_ACCURACY name the programs under test."""

import json
import os
import struct
import subprocess

import numpy as np
import pytest

import tiny_model as tm

CONVERT = os.environ["APLQ_CONVERT"]
EXPORT_CHECK = os.environ["APLQ_EXPORT_CHECK"]
ACCURACY = os.environ["APLQ_ACCURACY"]
QUANTIZED = 14  # 7 projections in each of 2 blocks


def clean_env(**extra):
    """The environment without Hugging Face or proxy settings of the machine running the test."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGINGFACE_")) and "proxy" not in k.lower()}
    env.update(extra)
    return env


def run(*args, env=None):
    return subprocess.run([CONVERT, *map(str, args)], capture_output=True, text=True,
                          env=env if env is not None else clean_env(), timeout=300)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-llama")
    tensors = tm.make_tiny_llama(str(d))
    return d, tensors


@pytest.fixture(scope="module")
def safetensors_out(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("out-st")
    r = run(model[0], "--bits", "1,2,4,8", "--output-dir", out, "--name", "tiny")
    assert r.returncode == 0, r.stderr
    return out, r.stdout


def no_temporaries(d):
    left = [f for f in os.listdir(d) if f.startswith(".")]
    assert not left, left


def test_stages_and_summary(safetensors_out):
    out, stdout = safetensors_out
    for stage in ("[1] locate", "[2] quantize", "[3] export", "[4] manifest", "[5] validate",
                  "[6] accuracy", "Summary:", "context length  512", "llama / LlamaForCausalLM"):
        assert stage in stdout, stage
    no_temporaries(out)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_safetensors_export_equals_oracle_packing(model, safetensors_out, bits):
    out, _ = safetensors_out
    manifest = out / f"tiny_manifest_q{bits}.json"
    r = subprocess.run([EXPORT_CHECK, str(model[0]), str(manifest)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{QUANTIZED} quantized weights equal the oracle's packing" in r.stdout

    m = json.loads(manifest.read_text())
    assert m["model"]["family"] == "llama" and m["model"]["context_length"] == 512
    assert m["quantization"]["bits"] == bits and m["export"]["file"] == f"tiny_q{bits}.safetensors"
    q = [t for t in m["tensors"] if t["quantized"]]
    assert len(q) == QUANTIZED and len(m["tensors"]) == len(model[1])
    assert not any(t["quantized"] for t in m["tensors"] if "layernorm" in t["name"] or
                   t["name"] in ("model.embed_tokens.weight", "lm_head.weight"))
    # Quantization error shrinks with bits; 8-bit is within a percent of the weights.
    err = max(t["error"]["weight_rel_l2"] for t in q)
    assert err < {1: 0.8, 2: 0.6, 4: 0.2, 8: 0.012}[bits]

    # Any safetensors reader: this file's own parses it and finds the aplq metadata.
    tensors, meta = tm.read_safetensors(out / f"tiny_q{bits}.safetensors")
    assert meta["aplq.format"] == "aplq-export"
    described = json.loads(meta["aplq.quantized"])
    assert described["model.layers.1.mlp.down_proj.weight"]["shape"] == [96, 200]
    assert tensors["model.layers.1.mlp.down_proj.weight.codes"].shape == (96, (200 * bits + 7) // 8)
    assert tensors["model.layers.1.mlp.down_proj.weight.scales"].dtype == np.float16
    src = model[1]["model.embed_tokens.weight"]
    assert np.array_equal(tensors["model.embed_tokens.weight"], tm.to_bf16_bits(src))


def test_each_bit_width_error_ordered(safetensors_out):
    out, _ = safetensors_out
    errs = [json.loads((out / f"tiny_manifest_q{b}.json").read_text())["error"]
            ["weight_rel_l2_mean"] for b in (1, 2, 4, 8)]
    assert errs == sorted(errs, reverse=True), errs


def test_npz_export_loads_in_numpy(model, safetensors_out, tmp_path):
    st_out, _ = safetensors_out
    r = run(model[0], "--bits", "1,2,4,8", "--format", "npz", "--output-dir", tmp_path,
            "--name", "tiny")
    assert r.returncode == 0, r.stderr
    no_temporaries(tmp_path)
    for bits in (1, 2, 4, 8):
        z = np.load(tmp_path / f"tiny_quantized_q{bits}.npz")
        st, _ = tm.read_safetensors(st_out / f"tiny_q{bits}.safetensors")
        meta = json.loads(bytes(z["__metadata__"]).decode())
        assert meta["aplq.format"] == "aplq-export"
        assert set(z.files) == set(st) | {"__metadata__"}
        for name, a in st.items():
            if a.dtype == np.uint16:  # BF16 in safetensors, widened exactly to float32 in NPZ
                assert z[name].dtype == np.float32
                assert np.array_equal(z[name], tm.bf16_to_f32(a)), name
            else:  # codes and scales: the same bytes
                assert z[name].dtype == a.dtype and np.array_equal(z[name], a), name
        m = json.loads((tmp_path / f"tiny_manifest_q{bits}.json").read_text())
        assert m["export"] == {"file": f"tiny_quantized_q{bits}.npz", "format": "npz",
                               "bytes": os.path.getsize(tmp_path / f"tiny_quantized_q{bits}.npz")}
        # The library's loader reads the NPZ export too: every layer through the kernels.
        r = accuracy("--manifest", tmp_path / f"tiny_manifest_q{bits}.json", "--original",
                     model[0])
        assert r.returncode == 0 and f"{QUANTIZED}/{QUANTIZED} tests passed" in r.stdout, r.stdout


@pytest.mark.parametrize("options", [["--group", "row", "--zero-point", "--scale", "f32"],
                                     ["--group", "32", "--zero-point"], ["--group", "256"]])
def test_other_formats(model, tmp_path, options):
    r = run(model[0], "--bits", "2,4", "--output-dir", tmp_path, "--name", "tiny", *options)
    assert r.returncode == 0, r.stderr
    for bits in (2, 4):
        export = tmp_path / f"tiny_q{bits}.safetensors"
        r = subprocess.run([EXPORT_CHECK, str(model[0]), str(export)], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stdout + r.stderr


def test_keep_pattern_and_single_file_f16(tmp_path):
    src = tmp_path / "m"
    tm.make_tiny_llama(str(src), dtype="F16", shards=1)
    out = tmp_path / "out"
    r = run(src, "--keep", "*.mlp.down_proj.*", "--output-dir", out, "--name", "t")
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "t_manifest_q4.json").read_text())
    kept = {t["name"] for t in m["tensors"] if not t["quantized"]}
    assert "model.layers.0.mlp.down_proj.weight" in kept
    assert sum(t["quantized"] for t in m["tensors"]) == QUANTIZED - 2
    r = subprocess.run([EXPORT_CHECK, str(src), str(out / "t_manifest_q4.json")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# ---- bad inputs -------------------------------------------------------------------------------

def raw_safetensors(path, header, data):
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def single(tmp_path, tensors=None):
    d = tmp_path / "bad"
    tm.make_tiny_llama(str(d), shards=1, tensors=tensors)
    return d, d / "model.safetensors"


def corrupt_header(path, edit):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    edit(header)
    raw_safetensors(path, header, raw[8 + n:])


def case_truncated(tmp_path):
    d, f = single(tmp_path)
    f.write_bytes(f.read_bytes()[:-1000])
    return d, ["model.safetensors", "lm_head.weight", "exceed"]


def case_header_too_long(tmp_path):
    d, f = single(tmp_path)
    raw = f.read_bytes()
    f.write_bytes(struct.pack("<Q", len(raw) + 100) + raw[8:])
    return d, ["model.safetensors", "larger than the file"]


def case_offsets_out_of_range(tmp_path):
    d, f = single(tmp_path)
    def edit(h):
        e = h["model.norm.weight"]
        e["data_offsets"] = [e["data_offsets"][0] + 10**9, e["data_offsets"][1] + 10**9]
    corrupt_header(f, edit)
    return d, ["model.safetensors", "model.norm.weight", "exceed"]


def case_overlapping(tmp_path):
    d, f = single(tmp_path)
    def edit(h):
        other = h["model.layers.1.post_attention_layernorm.weight"]
        h["model.norm.weight"]["data_offsets"] = other["data_offsets"]
    corrupt_header(f, edit)
    return d, ["model.safetensors", "model.norm.weight", "overlap"]


def case_unknown_dtype(tmp_path):
    d, f = single(tmp_path)
    corrupt_header(f, lambda h: h["model.norm.weight"].update(dtype="F7"))
    return d, ["model.safetensors", "model.norm.weight", "unknown dtype F7"]


def case_shape_mismatch(tmp_path):
    d, f = single(tmp_path)
    corrupt_header(f, lambda h: h["lm_head.weight"].update(shape=[300, 97]))
    return d, ["model.safetensors", "lm_head.weight", "needs"]


def case_missing_shard(tmp_path):
    d = tmp_path / "bad"
    tm.make_tiny_llama(str(d), shards=2)
    os.remove(d / "model-00002-of-00002.safetensors")
    return d, ["model.safetensors.index.json", "model-00002-of-00002.safetensors", "missing"]


def case_not_utf8(tmp_path):
    d, f = single(tmp_path)
    raw = f.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = raw[8:8 + n].replace(b'"model.norm.weight"', b'"model.norm.weigh\xff"')
    f.write_bytes(raw[:8] + header + raw[8 + n:])
    return d, ["model.safetensors", "UTF-8"]


def case_nan_weight(tmp_path):
    t = tm.tiny_llama_tensors()
    t["model.layers.1.self_attn.v_proj.weight"][5, 17] = np.nan
    d, _ = single(tmp_path, tensors=t)
    return d, ["model.safetensors", "model.layers.1.self_attn.v_proj.weight", "NaN at [5, 17]"]


def case_no_config(tmp_path):
    d, _ = single(tmp_path)
    os.remove(d / "config.json")
    return d, ["config.json"]


@pytest.mark.parametrize("case", [case_truncated, case_header_too_long, case_offsets_out_of_range,
                                  case_overlapping, case_unknown_dtype, case_shape_mismatch,
                                  case_missing_shard, case_not_utf8, case_nan_weight,
                                  case_no_config])
@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
def test_bad_input(tmp_path, case, fmt):
    d, needles = case(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    r = run(d, "--bits", "4", "--format", fmt, "--output-dir", out)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aplq-convert: error: "), r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert os.listdir(out) == []


def test_a_failed_run_leaves_earlier_outputs_alone(tmp_path):
    good, bad, out = tmp_path / "good", tmp_path / "bad", tmp_path / "out"
    tm.make_tiny_llama(str(good), shards=1)
    r = run(good, "--output-dir", out, "--name", "m")
    assert r.returncode == 0, r.stderr
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    assert set(before) == {"m_q4.safetensors", "m_manifest_q4.json"}
    t = tm.tiny_llama_tensors()
    t["model.layers.1.mlp.up_proj.weight"][3, 3] = np.inf
    tm.make_tiny_llama(str(bad), shards=1, tensors=t)
    r = run(bad, "--output-dir", out, "--name", "m")
    assert r.returncode == 1 and "Inf at [3, 3]" in r.stderr, r.stderr
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before


def test_kept_tensors_must_be_finite_and_dot_names_the_directory(tmp_path):
    t = tm.tiny_llama_tensors()
    t["model.embed_tokens.weight"][1, 2] = np.nan
    d = tmp_path / "mymodel"
    tm.make_tiny_llama(str(d), shards=1, tensors=t)
    r = run(d, "--output-dir", tmp_path / "out")
    assert r.returncode == 1 and "'model.embed_tokens.weight' holds NaN at element 98" in r.stderr
    assert not os.listdir(tmp_path / "out")
    t["model.embed_tokens.weight"][1, 2] = 0.5
    tm.make_tiny_llama(str(d), shards=1, tensors=t)
    r = subprocess.run([CONVERT, ".", "--output-dir", "out", "--keep", "*.mlp.*"], cwd=d,
                       capture_output=True, text=True, env=clean_env())
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(d / "out")) == ["mymodel_manifest_q4.json", "mymodel_q4.safetensors"]


@pytest.mark.parametrize("args", [["--bits", "3"], ["--group", "100"], ["--format", "gguf"], []])
def test_bad_arguments(model, tmp_path, args):
    r = run(*([model[0]] if args else []), *args, "--output-dir", tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert os.listdir(tmp_path) == []


def test_unknown_model_name(tmp_path):
    r = run("no-such-model", "--output-dir", tmp_path)
    assert r.returncode == 1 and "no-such-model" in r.stderr and "--list-models" in r.stderr


def test_list_models(tmp_path):
    r = run("--list-models", env=clean_env(HF_HOME=str(tmp_path)))
    assert r.returncode == 0
    for alias in ("tinyllama", "mistral-7b", "mistral-7b-instruct", "gemma-2b", "llama2-7b"):
        assert alias in r.stdout
    assert "meta-llama/Llama-2-7b-hf" in r.stdout


# ---- a repository id and a catalog alias, downloaded from fake_hub.py on 127.0.0.1 -------------

class FakeHub:
    """fake_hub.py on 127.0.0.1 serving the tiny model under each repository id given."""

    def __init__(self, tmp_path, repos):
        import sys
        root = tmp_path / "hub"
        for repo in repos:
            tm.make_tiny_llama(str(root / repo))
        config = tmp_path / "hub.json"
        config.write_text(json.dumps({"root": str(root), "log": str(tmp_path / "requests.jsonl"),
                                      "repos": repos}))
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(os.path.dirname(__file__), "fake_hub.py"), str(config)],
            stdout=subprocess.PIPE, text=True)
        self.endpoint = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"

    def close(self):
        self.proc.kill()
        self.proc.wait()


def test_alias_downloads_through_the_hub_then_converts_offline(tmp_path):
    # The catalog's tinyllama names this repository: the tiny model stands in for it.
    hub = FakeHub(tmp_path, {"TinyLlama/TinyLlama-1.1B-Chat-v1.0": {"commit": "ab" * 20}})
    env = clean_env(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf"))
    out = tmp_path / "out"
    try:
        r = run("tinyllama", "--output-dir", out, env=env)
        assert r.returncode == 0, r.stderr
        assert "TinyLlama/TinyLlama-1.1B-Chat-v1.0 (tinyllama)" in r.stdout
        snapshot = (tmp_path / "hf" / "hub" / "models--TinyLlama--TinyLlama-1.1B-Chat-v1.0" /
                    "snapshots" / ("ab" * 20))
        assert (snapshot / "config.json").is_file()
        r = subprocess.run([EXPORT_CHECK, str(snapshot), str(out / "tinyllama_manifest_q4.json")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        hub.close()
    # The hub is gone: the cache alone serves the next conversion.
    r = run("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "--bits", "8", "--output-dir", out,
            env=dict(env, HF_HUB_OFFLINE="1"))
    assert r.returncode == 0, r.stderr
    assert (out / "tinyllama-1.1b-chat-v1.0_q8.safetensors").is_file()
    r = run("--list-models", env=env)
    assert any(line.split()[:1] == ["tinyllama"] and "cached" in line.split()
               for line in r.stdout.splitlines()), r.stdout


def test_convert_all_needs_a_token_for_the_gated_models(tmp_path):
    token = "hf_gated_test_token"
    repos = {"TinyLlama/TinyLlama-1.1B-Chat-v1.0": {"commit": "a1" * 20},
             "mistralai/Mistral-7B-v0.1": {"commit": "b2" * 20},
             "mistralai/Mistral-7B-Instruct-v0.2": {"commit": "c3" * 20},
             "google/gemma-2b": {"commit": "d4" * 20, "token": token},
             "meta-llama/Llama-2-7b-hf": {"commit": "e5" * 20, "token": token}}
    hub = FakeHub(tmp_path, repos)
    env = clean_env(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf"))
    out = tmp_path / "out"
    try:
        r = run("--convert-all", "--output-dir", out, env=env)
        assert r.returncode == 1
        errors = r.stderr.strip().splitlines()
        assert len(errors) == 3, r.stderr  # one per gated model, then the count
        for alias, line in zip(("gemma-2b", "llama2-7b"), errors):
            assert line.startswith(f"aplq-convert: error: {alias}: ") and "HF_TOKEN" in line, line
        assert "2 of 5 catalog models failed" in errors[2]
        done = sorted(f for f in os.listdir(out) if f.endswith(".safetensors"))
        assert done == ["mistral-7b-instruct_q4.safetensors", "mistral-7b_q4.safetensors",
                        "tinyllama_q4.safetensors"]
        r = run("--convert-all", "--output-dir", out, env=dict(env, HF_TOKEN=token))
        assert r.returncode == 0, r.stderr
        assert len([f for f in os.listdir(out) if f.endswith(".safetensors")]) == 5
    finally:
        hub.close()


# ---- aplq-accuracy --manifest on the conversions above -----------------------------------------

def accuracy(*args):
    return subprocess.run([ACCURACY, "--isa", "best", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("bits", [2, 8])
def test_accuracy_manifest_against_the_original(model, safetensors_out, bits, tmp_path):
    out, _ = safetensors_out
    manifest = out / f"tiny_manifest_q{bits}.json"
    r = accuracy("--manifest", manifest, "--original", model[0])
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Overall: {QUANTIZED}/{QUANTIZED} tests passed" in r.stdout
    # Kernel error alone without the original: per layer exact and int8, plus the table lookup
    # (both policies) for 1- and 2-bit weights.
    checks = 3 * (4 if bits <= 2 else 2)
    r = accuracy("--manifest", manifest, "--layers", "3")
    assert r.returncode == 0 and f"Overall: 3/3 tests passed ({checks}/{checks} checks)" in r.stdout, \
        r.stdout
    # Another model of the same shapes is not the original: the quantization checks fail.
    other = tmp_path / "other"
    tm.make_tiny_llama(str(other), seed=8)
    r = accuracy("--manifest", manifest, "--original", other, "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert not report["summary"]["pass"]
    assert all(not layer["quantization"]["pass"] for layer in report["layers"])
    assert all(k["pass"] for layer in report["layers"] for k in layer["kernels"])


def test_accuracy_manifest_with_recorded_activations(model, safetensors_out, tmp_path):
    out, _ = safetensors_out
    rng = np.random.default_rng(3)
    acts = {"model.layers.0.mlp.down_proj.weight": rng.standard_normal((5, 200)).astype(np.float32),
            "model.layers.1.self_attn.q_proj.weight": rng.standard_normal(96).astype(np.float16)}
    np.savez(tmp_path / "acts.npz", **acts)
    r = accuracy("--manifest", out / "tiny_manifest_q4.json", "--original", model[0],
                 "--activations", tmp_path / "acts.npz")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "model.layers.0.mlp.down_proj.weight (recorded)" in r.stdout
    assert "96x200 n5" in r.stdout and "96x96 n1" in r.stdout
    assert f"Overall: {QUANTIZED + 2}/{QUANTIZED + 2} tests passed" in r.stdout
    np.savez(tmp_path / "bad.npz", **{"model.layers.0.mlp.down_proj.weight": np.zeros((2, 7))})
    r = accuracy("--manifest", out / "tiny_manifest_q4.json", "--activations", tmp_path / "bad.npz")
    assert r.returncode == 3 and "bad.npz" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = accuracy("--original", model[0])
    assert r.returncode == 2 and "--manifest" in r.stderr
