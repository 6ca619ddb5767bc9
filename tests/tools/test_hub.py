# SPDX-License-Identifier: Apache-2.0
# The hub client of aplq-convert (tools/convert/hub.cpp) through its driver aplq-hub-fetch
# (APLQ_HUB_FETCH names it), against fake_hub.py on 127.0.0.1: the files a model needs land in
# the huggingface_hub cache layout with the right bytes; the token goes to the hub and not to the
# CDN; a gated repository without a token fails with a message that says how to get access and
# leaves no snapshot; broken downloads resume with Range requests, within a run and across runs;
# a second run is a cache hit, also with HF_HUB_OFFLINE=1; failures are one clear line.
import hashlib
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FAKE_HUB = HERE / "fake_hub.py"
TOKEN = "hf_test_token_1234"
TINY = "org/tiny"
TINY_COMMIT = "0123456789abcdef0123456789abcdef01234567"
GATED = "org/gated"
GATED_COMMIT = "89abcdef0123456789abcdef0123456789abcdef"
PRIVATE = "org/private"
SHARD1 = "model-00001-of-00002.safetensors"
SHARD2 = "model-00002-of-00002.safetensors"
SHARD1_SIZE = 1_300_000  # above 1 MiB: progress lines
SHARD2_SIZE = 300_000
# What the client must fetch from org/tiny (README.md and pytorch_model.bin are not needed; the
# tokenizer files it lacks are recorded in .no_exist).
TINY_WANTED = ["config.json", "model.safetensors.index.json", SHARD1, SHARD2, "tokenizer.json",
               "generation_config.json"]
TINY_ABSENT = ["tokenizer_config.json", "special_tokens_map.json", "tokenizer.model"]


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# The blob name the client must use: the sha256 the hub sends as X-Linked-Etag for LFS files,
# the git blob id of its (weak) ETag for the others.
def blob_name(name, data):
    if name.endswith((".safetensors", ".bin", ".model")):
        return hashlib.sha256(data).hexdigest()
    return git_blob_sha1(data)


def make_repos(root):
    rng = random.Random(7)
    index = {"metadata": {"total_size": SHARD1_SIZE + SHARD2_SIZE},
             "weight_map": {"model.embed_tokens.weight": SHARD1,
                            "model.layers.0.mlp.down_proj.weight": SHARD2,
                            "lm_head.weight": SHARD2}}
    repos = {
        TINY: {
            "config.json": json.dumps({"architectures": ["LlamaForCausalLM"],
                                       "hidden_size": 64}).encode(),
            "model.safetensors.index.json": json.dumps(index).encode(),
            SHARD1: rng.randbytes(SHARD1_SIZE),
            SHARD2: rng.randbytes(SHARD2_SIZE),
            "tokenizer.json": b'{"version": "1.0", "model": {"type": "BPE"}}',
            "generation_config.json": b'{"do_sample": false}',
            "README.md": b"# tiny\n",
            "pytorch_model.bin": rng.randbytes(1000),
        },
        GATED: {
            "config.json": b'{"architectures": ["MistralForCausalLM"]}',
            "model.safetensors": rng.randbytes(50_000),
            "tokenizer_config.json": b"{}",
        },
    }
    repos[PRIVATE] = dict(repos[GATED])
    for repo, files in repos.items():
        for name, data in files.items():
            path = root / repo / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return repos


@pytest.fixture(scope="module")
def fetch_exe():
    exe = os.environ.get("APLQ_HUB_FETCH", "")
    if not exe or not os.access(exe, os.X_OK):
        pytest.fail("APLQ_HUB_FETCH must name the aplq-hub-fetch executable (meson test sets it)")
    return exe


class Hub:
    def __init__(self, tmp, root, number, **options):
        self.log = tmp / ("requests-%d.jsonl" % number)
        self.log.write_text("")
        config = dict(root=str(root), log=str(self.log), repos={
            TINY: {"commit": TINY_COMMIT},
            GATED: {"commit": GATED_COMMIT, "token": TOKEN},
            PRIVATE: {"commit": GATED_COMMIT, "token": TOKEN, "gate_api": True},
        }, moved={"old-org/tiny": TINY}, **options)
        config_path = tmp / ("hub-%d.json" % number)
        config_path.write_text(json.dumps(config))
        self.proc = subprocess.Popen([sys.executable, str(FAKE_HUB), str(config_path)],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.strip().isdigit(), "fake_hub.py did not start"
        self.endpoint = "http://127.0.0.1:%d" % int(line)

    def requests(self):
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def gets(self, name):
        """The GETs of one file's bytes (from the hub or the CDN), in order."""
        return [r for r in self.requests() if r["method"] == "GET" and serves(r["path"], name)]

    def clear(self):
        self.log.write_text("")

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()


CDN_NAMES = {}  # sha256 -> file name, filled by the repos fixture


def serves(path, name):
    path = path.split("?")[0]
    if path.startswith("/cdn/"):
        return CDN_NAMES.get(path[len("/cdn/"):]) == name
    return "/resolve/" in path and path.endswith("/" + name)


@pytest.fixture
def repos(tmp_path):
    root = tmp_path / "hub-root"
    repos = make_repos(root)
    for files in repos.values():
        for name, data in files.items():
            CDN_NAMES[hashlib.sha256(data).hexdigest()] = name
    return root, repos


@pytest.fixture
def hub(tmp_path, repos):
    started = []

    def start(**options):
        h = Hub(tmp_path, repos[0], len(started), **options)
        started.append(h)
        return h

    yield start
    for h in started:
        h.close()


@pytest.fixture
def home(tmp_path):
    return tmp_path / "hf-home"


def run_fetch(exe, repo, home, endpoint, token=None, offline=False, extra_env=None,
              preexec_fn=None, revision=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGINGFACE_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(home))
    if token is not None:
        env["HF_TOKEN"] = token
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    env.update(extra_env or {})
    args = [exe, repo] + ([revision] if revision else [])
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60,
                          preexec_fn=preexec_fn)


def error_line(p):
    """The one error line of a failed run (after any progress lines)."""
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    errors = [line for line in lines if "error" in line]
    assert len(errors) == 1 and lines[-1] == errors[0], p.stderr
    assert errors[0].startswith("aplq-hub-fetch: error: "), p.stderr
    return errors[0]


def repo_dir(home, repo):
    return home / "hub" / ("models--" + repo.replace("/", "--"))


def check_snapshot(home, repo, commit, files, wanted, stdout):
    rdir = repo_dir(home, repo)
    snap = rdir / "snapshots" / commit
    assert stdout.strip() == str(snap)
    assert (rdir / "refs" / "main").read_text() == commit
    assert sorted(p.name for p in snap.iterdir()) == sorted(wanted)
    for name in wanted:
        link = snap / name
        assert link.is_symlink(), name
        assert os.readlink(link) == "../../blobs/" + blob_name(name, files[name])
        assert link.read_bytes() == files[name], name
    blobs = sorted(p.name for p in (rdir / "blobs").iterdir())
    assert blobs == sorted(blob_name(n, files[n]) for n in wanted)  # no .incomplete left
    return snap


def test_download_lands_in_the_cache_layout(fetch_exe, hub, repos, home):
    files = repos[1][TINY]
    h = hub(redirect_host="localhost")
    p = run_fetch(fetch_exe, TINY, home, h.endpoint, token=TOKEN)
    assert p.returncode == 0, p.stderr
    check_snapshot(home, TINY, TINY_COMMIT, files, TINY_WANTED, p.stdout)
    for name in TINY_ABSENT:
        assert (repo_dir(home, TINY) / ".no_exist" / TINY_COMMIT / name).is_file(), name

    requests = h.requests()
    hub_requests = [r for r in requests if not r["path"].startswith("/cdn/")]
    cdn_requests = [r for r in requests if r["path"].startswith("/cdn/")]
    # The token goes to the hub, never to the host the large files are redirected to.
    assert hub_requests and all(r["authorization"] == "Bearer " + TOKEN for r in hub_requests)
    assert cdn_requests and all(r["authorization"] is None for r in cdn_requests)
    assert all(r["host"].startswith("localhost:") for r in cdn_requests)
    assert requests[0]["path"] == "/api/models/%s/revision/main" % TINY
    for name in TINY_WANTED:  # the shards: the hub's 302, then the CDN's bytes
        gets = h.gets(name)
        assert len(gets) == (2 if name.endswith(".safetensors") else 1), name
        assert gets[-1]["path"].startswith("/cdn/") == name.endswith(".safetensors"), name
    for name in ("README.md", "pytorch_model.bin"):
        assert not [r for r in requests if name in r["path"]], name
    assert any(SHARD1 in line and "%" in line for line in p.stderr.splitlines()), p.stderr


def test_second_run_is_a_cache_hit_also_offline(fetch_exe, hub, repos, home, tmp_path):
    files = repos[1][TINY]
    h = hub()
    first = run_fetch(fetch_exe, TINY, home, h.endpoint)
    assert first.returncode == 0, first.stderr
    h.clear()
    second = run_fetch(fetch_exe, TINY, home, h.endpoint)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert h.requests() == []  # not even the API
    assert "[cache]" in second.stderr

    # Offline, with the hub gone: the cache alone.
    h.close()
    offline = run_fetch(fetch_exe, TINY, home, h.endpoint, offline=True)
    assert offline.returncode == 0, offline.stderr
    check_snapshot(home, TINY, TINY_COMMIT, files, TINY_WANTED, offline.stdout)

    # HF_HUB_CACHE wins over HF_HOME.
    elsewhere = tmp_path / "elsewhere"
    p = run_fetch(fetch_exe, TINY, home, h.endpoint, offline=True,
                  extra_env={"HF_HUB_CACHE": str(elsewhere)})
    assert "HF_HUB_OFFLINE" in error_line(p)


def test_files_already_in_blobs_are_not_fetched_again(fetch_exe, hub, repos, home):
    files = repos[1][TINY]
    h = hub(redirect_host="localhost")
    assert run_fetch(fetch_exe, TINY, home, h.endpoint).returncode == 0
    snap = repo_dir(home, TINY) / "snapshots" / TINY_COMMIT
    blobs = repo_dir(home, TINY) / "blobs"
    (snap / SHARD2).unlink()  # the link only: the blob stays
    (snap / SHARD1).unlink()  # the link and the blob
    (blobs / blob_name(SHARD1, files[SHARD1])).unlink()
    h.clear()
    p = run_fetch(fetch_exe, TINY, home, h.endpoint)
    assert p.returncode == 0, p.stderr
    check_snapshot(home, TINY, TINY_COMMIT, files, TINY_WANTED, p.stdout)
    assert len(h.gets(SHARD1)) == 2  # the hub's 302, then the CDN
    assert h.gets(SHARD2) == []
    assert [r["method"] for r in h.requests() if SHARD2 in r["path"]] == ["HEAD"]
    assert "already in" in p.stderr


def test_a_partial_cache_from_another_tool_is_completed(fetch_exe, hub, repos, home):
    # As `huggingface-cli download --include ...` might leave it: the weights, not the tokenizer,
    # and no record of the files the repository lacks.
    files = repos[1][TINY]
    h = hub()
    assert run_fetch(fetch_exe, TINY, home, h.endpoint).returncode == 0
    rdir = repo_dir(home, TINY)
    (rdir / "snapshots" / TINY_COMMIT / "tokenizer.json").unlink()
    (rdir / "blobs" / blob_name("tokenizer.json", files["tokenizer.json"])).unlink()
    for marker in (rdir / ".no_exist" / TINY_COMMIT).iterdir():
        marker.unlink()

    # The hub out of reach: what the cache has will do.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = "http://127.0.0.1:%d" % s.getsockname()[1]
    p = run_fetch(fetch_exe, TINY, home, dead)
    assert p.returncode == 0, p.stderr
    assert "out of reach" in p.stderr

    h.clear()
    p = run_fetch(fetch_exe, TINY, home, h.endpoint)
    assert p.returncode == 0, p.stderr
    check_snapshot(home, TINY, TINY_COMMIT, files, TINY_WANTED, p.stdout)
    assert [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in h.requests()] == \
        [("GET", "main"), ("HEAD", "tokenizer.json"), ("GET", "tokenizer.json")]
    for name in TINY_ABSENT:
        assert (rdir / ".no_exist" / TINY_COMMIT / name).is_file(), name


def test_gated_repository_needs_a_token(fetch_exe, hub, repos, home):
    files = repos[1][GATED]
    h = hub()
    line = error_line(run_fetch(fetch_exe, GATED, home, h.endpoint))
    for words in (GATED, "401", "gated", "HF_TOKEN", "HUGGINGFACE_HUB_TOKEN",
                  "huggingface.co/settings/tokens", "licence", h.endpoint + "/" + GATED):
        assert words in line, line
    assert not (repo_dir(home, GATED) / "snapshots").exists()
    assert not (repo_dir(home, GATED) / "refs").exists()
    assert all(r["authorization"] is None for r in h.requests())

    line = error_line(run_fetch(fetch_exe, GATED, home, h.endpoint, token="hf_wrong"))
    for words in (GATED, "403", "HF_TOKEN", "licence"):
        assert words in line, line
    assert "hf_wrong" not in line
    assert not (repo_dir(home, GATED) / "snapshots").exists()

    # A private repository refuses the API call itself.
    line = error_line(run_fetch(fetch_exe, PRIVATE, home, h.endpoint))
    assert "401" in line and "private" in line and "HF_TOKEN" in line, line

    p = run_fetch(fetch_exe, GATED, home, h.endpoint, token=TOKEN)
    assert p.returncode == 0, p.stderr
    check_snapshot(home, GATED, GATED_COMMIT, files,
                   ["config.json", "model.safetensors", "tokenizer_config.json"], p.stdout)


def test_a_dropped_connection_resumes_with_a_range_request(fetch_exe, hub, repos, home):
    files = repos[1][TINY]
    h = hub(redirect_host="localhost", faults=[{"file": SHARD2, "after": 100_000, "times": 1}])
    p = run_fetch(fetch_exe, TINY, home, h.endpoint)
    assert p.returncode == 0, p.stderr
    check_snapshot(home, TINY, TINY_COMMIT, files, TINY_WANTED, p.stdout)
    cdn = [r["range"] for r in h.gets(SHARD2) if r["path"].startswith("/cdn/")]
    assert cdn == [None, "bytes=100000-"]
    assert "resuming at" in p.stderr


def test_an_interrupted_download_resumes_in_the_next_run(fetch_exe, hub, repos, home):
    files = repos[1][TINY]
    step = 200_000
    h = hub(faults=[{"file": SHARD1, "after": step, "times": 100}])
    line = error_line(run_fetch(fetch_exe, TINY, home, h.endpoint))
    assert SHARD1 in line and "run again to resume" in line, line
    # Five attempts, each resuming where the previous one broke off.
    assert [r["range"] for r in h.gets(SHARD1)] == \
        [None] + ["bytes=%d-" % (step * k) for k in range(1, 5)]
    rdir = repo_dir(home, TINY)
    partial = rdir / "blobs" / (blob_name(SHARD1, files[SHARD1]) + ".incomplete")
    assert partial.stat().st_size == 5 * step
    assert not (rdir / "snapshots").exists()

    h2 = hub()
    p = run_fetch(fetch_exe, TINY, home, h2.endpoint)
    assert p.returncode == 0, p.stderr
    assert [r["range"] for r in h2.gets(SHARD1)] == ["bytes=%d-" % (5 * step)]
    assert h2.gets("config.json") == []  # already complete in blobs
    check_snapshot(home, TINY, TINY_COMMIT, files, TINY_WANTED, p.stdout)


def test_a_server_that_ignores_range_restarts_the_file(fetch_exe, hub, repos, home):
    files = repos[1][TINY]
    blobs = repo_dir(home, TINY) / "blobs"
    blobs.mkdir(parents=True)
    partial = blobs / (blob_name(SHARD2, files[SHARD2]) + ".incomplete")
    partial.write_bytes(b"x" * 1000)  # not a prefix of the file: must not survive
    h = hub(ignore_range=True)
    p = run_fetch(fetch_exe, TINY, home, h.endpoint)
    assert p.returncode == 0, p.stderr
    assert [r["range"] for r in h.gets(SHARD2)] == ["bytes=1000-"]
    check_snapshot(home, TINY, TINY_COMMIT, files, TINY_WANTED, p.stdout)


def test_a_renamed_repository_is_followed(fetch_exe, hub, repos, home):
    h = hub(redirect_host="localhost")
    p = run_fetch(fetch_exe, "old-org/tiny", home, h.endpoint)
    assert p.returncode == 0, p.stderr
    check_snapshot(home, "old-org/tiny", TINY_COMMIT, repos[1][TINY], TINY_WANTED, p.stdout)


def test_unknown_repository_revision_and_file_errors(fetch_exe, hub, home):
    h = hub()
    line = error_line(run_fetch(fetch_exe, "org/nope", home, h.endpoint))
    assert "org/nope" in line and "not found" in line and "404" in line, line
    line = error_line(run_fetch(fetch_exe, TINY, home, h.endpoint, revision="v9"))
    assert "revision 'v9' not found" in line, line
    line = error_line(run_fetch(fetch_exe, "not-a-repo-id", home, h.endpoint))
    assert "not a Hugging Face repository id" in line, line
    assert not home.exists()


def test_network_failure_and_offline_without_cache(fetch_exe, home):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = "http://127.0.0.1:%d" % s.getsockname()[1]
    line = error_line(run_fetch(fetch_exe, TINY, home, dead))
    assert TINY in line and "cannot reach" in line, line
    line = error_line(run_fetch(fetch_exe, TINY, home, dead, offline=True))
    assert TINY in line and "HF_HUB_OFFLINE" in line, line


def test_a_write_failure_names_the_file(fetch_exe, hub, repos, home):
    # A file-size limit stands in for a full disk: the write fails (EFBIG) mid-download.
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (500_000, 500_000))

    h = hub()
    line = error_line(run_fetch(fetch_exe, TINY, home, h.endpoint, preexec_fn=limit_file_size))
    assert TINY in line and SHARD1 in line and "cannot write" in line, line
    assert not (repo_dir(home, TINY) / "snapshots").exists()
