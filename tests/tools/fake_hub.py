# SPDX-License-Identifier: Apache-2.0
# A small stand-in for the Hugging Face hub on 127.0.0.1, for testing aplq's hub client without
# a network. It serves the repositories found under a directory (ROOT/ORG/NAME/<files>) with the
# two endpoints the client uses, and the behaviours of the real hub that the client must handle:
#
#   GET  /api/models/ORG/NAME/revision/REV   {"sha": COMMIT, "siblings": [{"rfilename": ...}]}
#   HEAD|GET /ORG/NAME/resolve/REV/FILE      X-Repo-Commit; ETag W/"<git blob sha1>" for small
#        files; X-Linked-Etag "<sha256>" and X-Linked-Size for LFS files (*.safetensors, *.bin,
#        *.model), optionally answered by a 302 to http://REDIRECT_HOST:PORT/cdn/<sha256>, a
#        host the token must not be sent to; Range requests (206, 416)
#   HEAD|GET /cdn/SHA256                     the LFS bytes, with Range
#
# Options (a JSON file, the only argument): "root", "log" (each request is appended as one JSON
# line: method, path, range, authorization, host), "repos" {"ORG/NAME": {"commit": 40 hex,
# "token": required token or null, "gate_api": also gate the API}}, "moved" {"OLD/ID": "NEW/ID"}
# (a relative 307, as for a renamed repository), "redirect_host", "faults" [{"file": NAME,
# "after": N, "times": K}]: the first K GETs of that file send N bytes of their body and drop
# the connection; "ignore_range": answer 200 and the whole file to Range requests, as some
# servers do. Without a token a gated repository answers 401, with a wrong one 403.
# Prints the port it listens on, then serves until killed.
import hashlib
import json
import os
import re
import socket
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LFS_SUFFIXES = (".safetensors", ".bin", ".model")


def is_lfs(name):
    return name.endswith(LFS_SUFFIXES)


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Repo:
    def __init__(self, repo_id, folder, options):
        self.id = repo_id
        self.commit = options["commit"]
        self.token = options.get("token")
        self.gate_api = options.get("gate_api", False)
        self.files = {}
        for base, _, names in os.walk(folder):
            for n in names:
                path = os.path.join(base, n)
                rel = os.path.relpath(path, folder).replace(os.sep, "/")
                with open(path, "rb") as f:
                    self.files[rel] = f.read()


class FakeHub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, config):
        super().__init__(("127.0.0.1", 0), Handler)
        self.config = config
        self.lock = threading.Lock()
        self.repos = {}
        self.by_sha256 = {}  # the CDN's view: sha256 -> (file name, bytes)
        for repo_id, options in config.get("repos", {}).items():
            repo = Repo(repo_id, os.path.join(config["root"], repo_id), options)
            self.repos[repo_id] = repo
            for name, data in repo.files.items():
                self.by_sha256[hashlib.sha256(data).hexdigest()] = (name, data)
        self.moved = config.get("moved", {})
        self.faults = {f["file"]: dict(f) for f in config.get("faults", [])}

    def record(self, entry):
        with self.lock, open(self.config["log"], "a") as log:
            log.write(json.dumps(entry) + "\n")

    # The fault to apply to this GET of `name`, if one is left.
    def take_fault(self, name):
        with self.lock:
            fault = self.faults.get(name)
            if fault and fault.get("times", 1) > 0:
                fault["times"] = fault.get("times", 1) - 1
                return fault
        return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-hub/1"

    def log_message(self, format, *args):
        pass

    def do_HEAD(self):
        self.route(head=True)

    def do_GET(self):
        self.route(head=False)

    def reply(self, status, headers=None, body=b""):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status, code, message):
        body = json.dumps({"error": message}).encode()
        self.reply(status, {"Content-Type": "application/json", "X-Error-Code": code,
                            "X-Error-Message": message}, body)

    def route(self, head):
        hub = self.server
        hub.record({"method": self.command, "path": self.path,
                    "range": self.headers.get("Range"),
                    "authorization": self.headers.get("Authorization"),
                    "host": self.headers.get("Host")})
        raw = urllib.parse.urlsplit(self.path).path
        if raw.startswith("/api/models/") and "/revision/" in raw:
            repo_id, rev = raw[len("/api/models/"):].split("/revision/", 1)
            self.api(repo_id, urllib.parse.unquote(rev), rev)
            return
        if raw.startswith("/cdn/"):
            found = hub.by_sha256.get(raw[len("/cdn/"):])
            if not found:
                self.error(404, "EntryNotFound", "no such object")
                return
            name, data = found
            self.send_bytes(name, data, {"ETag": '"%s"' % hashlib.sha256(data).hexdigest()})
            return
        parts = raw.lstrip("/").split("/", 4)
        if len(parts) == 5 and parts[2] == "resolve":
            self.resolve(parts[0] + "/" + parts[1], urllib.parse.unquote(parts[3]),
                         urllib.parse.unquote(parts[4]), "/".join(parts[2:]))
            return
        self.error(404, "NotFound", "no route for " + raw)

    # The repository, after the moved/unknown/token/revision checks; None when answered.
    def repo(self, repo_id, rev, gated, relocate):
        hub = self.server
        if repo_id in hub.moved:
            self.reply(307, {"Location": relocate(hub.moved[repo_id])})
            return None
        repo = hub.repos.get(repo_id)
        if repo is None:
            self.error(404, "RepoNotFound", "Repository not found")
            return None
        if gated and repo.token:
            auth = self.headers.get("Authorization")
            if auth is None:
                self.error(401, "GatedRepo", "Access to model %s is restricted." % repo_id)
                return None
            if auth != "Bearer " + repo.token:
                self.error(403, "GatedRepo", "Access to model %s is restricted." % repo_id)
                return None
        if rev not in ("main", repo.commit):
            self.error(404, "RevisionNotFound", "Invalid rev id: " + rev)
            return None
        return repo

    def api(self, repo_id, rev, raw_rev):
        relocate = lambda new: "/api/models/%s/revision/%s" % (new, raw_rev)
        repo = self.repo(repo_id, rev, False, relocate)
        if repo is None:
            return
        if repo.gate_api and self.repo(repo_id, rev, True, relocate) is None:
            return
        body = json.dumps({"id": repo.id, "sha": repo.commit,
                           "siblings": [{"rfilename": n} for n in sorted(repo.files)]}).encode()
        self.reply(200, {"Content-Type": "application/json"}, body)

    def resolve(self, repo_id, rev, name, rest):
        repo = self.repo(repo_id, rev, True, lambda new: "/%s/%s" % (new, rest))
        if repo is None:
            return
        data = repo.files.get(name)
        if data is None:
            self.error(404, "EntryNotFound", "%s does not exist" % name)
            return
        headers = {"X-Repo-Commit": repo.commit}
        if is_lfs(name):
            sha256 = hashlib.sha256(data).hexdigest()
            headers["X-Linked-Etag"] = '"%s"' % sha256
            headers["X-Linked-Size"] = str(len(data))
            headers["ETag"] = '"%s"' % git_blob_sha1(sha256.encode())  # the pointer file's
            host = self.server.config.get("redirect_host")
            if host:
                headers["Location"] = "http://%s:%d/cdn/%s?expires=1&signature=x" % (
                    host, self.server.server_address[1], sha256)
                self.reply(302, headers)
                return
        else:
            headers["ETag"] = 'W/"%s"' % git_blob_sha1(data)
        self.send_bytes(name, data, headers)

    # The bytes of a file, or the range asked for; a fault may cut the body short.
    def send_bytes(self, name, data, headers):
        start, end, status = 0, len(data) - 1, 200
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", (self.headers.get("Range") or "").strip())
        if self.server.config.get("ignore_range"):
            m = None
        if m:
            start = int(m.group(1))
            if start >= len(data):
                self.reply(416, dict(headers, **{"Content-Range": "bytes */%d" % len(data)}))
                return
            end = min(int(m.group(2)), len(data) - 1) if m.group(2) else len(data) - 1
            status = 206
            headers = dict(headers, **{"Content-Range": "bytes %d-%d/%d" % (start, end,
                                                                             len(data))})
        body = data[start:end + 1]
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        fault = self.server.take_fault(name)
        if fault is not None:
            self.wfile.write(body[:fault["after"]])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)


def main():
    with open(sys.argv[1]) as f:
        config = json.load(f)
    server = FakeHub(config)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
