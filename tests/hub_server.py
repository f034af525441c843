"""A small Hugging Face Hub-compatible HTTP server for tests (stdlib only, loopback, files in a folder).

It answers just what `huggingface_hub` 2.x, `transformers` and `diffusers` call when they push and load:

    POST /api/repos/create                          create a repo (409 when it exists)
    POST /api/validate-yaml                         accept any card metadata
    GET  /api/whoami-v2                             a fixed user
    POST /api/{type}s/{ns}/{name}/preupload/{rev}   every file is uploaded "regular" (base64 in the commit)
    POST /api/{type}s/{ns}/{name}/commit/{rev}      NDJSON: header, file, deletedFile, deletedFolder
    POST /api/{type}s/{ns}/{name}/paths-info/{rev}  {type, path, size, oid} of the given paths (get_paths_info)
    GET  /api/{type}s/{ns}/{name}[/revision/{rev}]  repo info: sha, siblings (model_info, repo_info, snapshot_download)
    GET  /api/{type}s/{ns}/{name}/tree/{rev}[/dir]  list of {type, path, size, oid} (list_repo_files, list_repo_tree)
    HEAD|GET /[{type}s/]{ns}/{name}/resolve/{rev}/{path}   file bytes with ETag, X-Repo-Commit, Content-Length

Every repository keeps only its head (one branch, `main`); a revision is accepted when it is `main` or a commit
id of that repository's history. Missing repos/files answer 404 with the `X-Error-Code` the client maps to
`RepositoryNotFoundError` / `EntryNotFoundError`.

    >>> server = HubServer(tmp_dir); server.start(); ...; server.stop()

Standalone, for trying the CLI by hand:  ``python tests/hub_server.py --port 8080 --storage /tmp/hub`` then
``HF_HUB_OFFLINE=0 HF_ENDPOINT=http://127.0.0.1:8080 whitebox-hf push FOLDER me/model``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

__all__ = ["HubServer", "go_online"]

REPO_TYPES = ("model", "dataset", "space")


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Repo:
    def __init__(self, root: Path, repo_type: str, repo_id: str, private: bool):
        self.root, self.repo_type, self.repo_id, self.private = root, repo_type, repo_id, private
        self.files_dir = root / "files"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.history = [hashlib.sha1(f"init {repo_type} {repo_id} {time.time()}".encode()).hexdigest()]
        self.last_modified = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())

    @property
    def sha(self) -> str:
        return self.history[-1]

    def knows(self, revision: str) -> bool:
        return revision == "main" or revision in self.history

    def paths(self) -> list[str]:
        return sorted(p.relative_to(self.files_dir).as_posix() for p in self.files_dir.rglob("*") if p.is_file())

    def file(self, path: str) -> Path | None:
        target = (self.files_dir / path).resolve()
        if self.files_dir.resolve() not in target.parents or not target.is_file():
            return None
        return target


class HubServer:
    """Serve Hub repositories stored under ``storage`` on ``127.0.0.1:<free port>`` from a daemon thread."""

    def __init__(self, storage, host: str = "127.0.0.1", port: int = 0):
        self.storage = Path(storage)
        self.storage.mkdir(parents=True, exist_ok=True)
        self.repos: dict[tuple[str, str], _Repo] = {}
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status): handy when a test fails
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- repository operations -----------------------------------------------------------------------------
    def create(self, repo_type: str, repo_id: str, private: bool) -> bool:
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                return False
            root = self.storage / f"{repo_type}s" / repo_id
            self.repos[(repo_type, repo_id)] = _Repo(root, repo_type, repo_id, private)
            return True

    def commit(self, repo: _Repo, operations: list[dict], summary: str) -> str:
        with self.lock:
            for key, value in operations:
                if key == "file":
                    target = repo.files_dir / value["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    data = value["content"]
                    target.write_bytes(base64.b64decode(data) if value.get("encoding") == "base64" else data.encode())
                elif key == "deletedFile":
                    (repo.files_dir / value["path"]).unlink(missing_ok=True)
                elif key == "deletedFolder":
                    shutil.rmtree(repo.files_dir / value["path"], ignore_errors=True)
                else:
                    raise ValueError(f"unsupported commit operation {key!r} (this test server takes regular uploads)")
            oid = hashlib.sha1(f"{repo.sha}\n{summary}\n{repo.paths()}\n{time.time_ns()}".encode()).hexdigest()
            repo.history.append(oid)
            repo.last_modified = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
            return oid

    def info(self, repo: _Repo) -> dict:
        siblings = [{"rfilename": path} for path in repo.paths()]
        name = repo.repo_id.split("/")[-1]
        return {
            "_id": repo.sha[:24], "id": repo.repo_id, "modelId": repo.repo_id, "author": repo.repo_id.split("/")[0],
            "sha": repo.sha, "lastModified": repo.last_modified, "createdAt": repo.last_modified,
            "private": repo.private, "disabled": False, "gated": False, "downloads": 0, "likes": 0,
            "tags": [], "siblings": siblings, "spaces": [], "cardData": None, "name": name,
        }

    def tree(self, repo: _Repo, folder: str, recursive: bool) -> list[dict]:
        entries, folders = [], set()
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        for path in repo.paths():
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
                continue
            if recursive:
                parts = rest.split("/")[:-1]
                folders.update(prefix + "/".join(parts[: i + 1]) for i in range(len(parts)))
            data = (repo.files_dir / path).read_bytes()
            entries.append({"type": "file", "path": path, "size": len(data), "oid": _git_blob_sha1(data)})
        entries += [{"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest()}
                    for path in sorted(folders)]
        return entries

    # ---- HTTP ------------------------------------------------------------------------------------------------
    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def _reply(self, status: int, body=b"", headers: dict | None = None, head_only: bool = False):
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                    headers = {"Content-Type": "application/json", **(headers or {})}
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, str(value))
                if "Content-Length" not in (headers or {}):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head_only:
                    self.wfile.write(body)
                server.requests.append((self.command, self.path, status))

            def _error(self, status: int, code: str, message: str, head_only: bool = False):
                self._reply(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message},
                            head_only=head_only)

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _repo(self, repo_type: str, repo_id: str, revision: str | None = None, head_only: bool = False):
                repo = server.repos.get((repo_type, repo_id))
                if repo is None:
                    self._error(404, "RepoNotFound", f"Repository not found: {repo_id}", head_only)
                    return None
                if revision is not None and not repo.knows(revision):
                    self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head_only)
                    return None
                return repo

            # /api/...
            def _api(self, method: str, parts: list[str], query: dict):
                if parts[:2] == ["repos", "create"] and method == "POST":
                    payload = json.loads(self._body() or b"{}")
                    repo_type = payload.get("type") or "model"
                    name = payload["name"]
                    repo_id = f"{payload['organization']}/{name}" if payload.get("organization") else name
                    if "/" not in repo_id:
                        repo_id = f"test-user/{repo_id}"
                    created = server.create(repo_type, repo_id, bool(payload.get("private")))
                    prefix = "" if repo_type == "model" else f"{repo_type}s/"
                    url = f"{server.url}/{prefix}{repo_id}"
                    if not created:
                        return self._reply(409, {"error": "You already created this repo", "url": url},
                                           {"X-Error-Code": "RepoExists"})
                    return self._reply(200, {"url": url, "name": repo_id})
                if parts == ["validate-yaml"]:
                    self._body()
                    return self._reply(200, {"errors": [], "warnings": []})
                if parts[0] == "whoami-v2":
                    return self._reply(200, {"type": "user", "name": "test-user", "orgs": [],
                                             "auth": {"accessToken": {"role": "write"}}})
                if len(parts) >= 3 and parts[0].rstrip("s") in REPO_TYPES:
                    repo_type, repo_id, rest = parts[0][:-1], "/".join(parts[1:3]), parts[3:]
                    if rest and rest[0] == "preupload" and method == "POST":
                        repo = self._repo(repo_type, repo_id)
                        if repo is None:
                            return
                        payload = json.loads(self._body() or b"{}")
                        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                 for f in payload.get("files", [])]
                        return self._reply(200, {"files": files, "commitOid": repo.sha})
                    if rest and rest[0] == "commit" and method == "POST":
                        repo = self._repo(repo_type, repo_id)
                        if repo is None:
                            return
                        header, operations = {}, []
                        for line in self._body().decode().splitlines():
                            if line.strip():
                                item = json.loads(line)
                                if item["key"] == "header":
                                    header = item["value"]
                                else:
                                    operations.append((item["key"], item["value"]))
                        try:
                            oid = server.commit(repo, operations, header.get("summary", ""))
                        except ValueError as error:
                            return self._error(400, "BadRequest", str(error))
                        prefix = "" if repo_type == "model" else f"{repo_type}s/"
                        return self._reply(200, {"commitOid": oid, "commitUrl": f"{server.url}/{prefix}{repo_id}"
                                                 f"/commit/{oid}", "success": True})
                    if rest and rest[0] == "paths-info" and method == "POST" and len(rest) >= 2:
                        repo = self._repo(repo_type, repo_id, unquote(rest[1]))
                        if repo is None:
                            return
                        body = self._body().decode()
                        if self.headers.get("Content-Type", "").startswith("application/json"):
                            wanted = json.loads(body or "{}").get("paths", [])
                        else:
                            wanted = parse_qs(body).get("paths", [])
                        entries = {e["path"]: e for e in server.tree(repo, "", recursive=True)}
                        return self._reply(200, [entries[p] for p in wanted if p in entries])
                    if method not in ("GET", "HEAD"):
                        return self._error(405, "MethodNotAllowed", f"{method} {self.path}")
                    if not rest or rest[0] == "revision":
                        repo = self._repo(repo_type, repo_id, unquote(rest[1]) if len(rest) > 1 else None)
                        if repo is not None:
                            self._reply(200, server.info(repo), head_only=method == "HEAD")
                        return
                    if rest[0] in ("tree", "paths-info") and len(rest) >= 2:
                        repo = self._repo(repo_type, repo_id, unquote(rest[1]))
                        if repo is None:
                            return
                        recursive = query.get("recursive", ["false"])[0].lower() == "true"
                        return self._reply(200, server.tree(repo, "/".join(rest[2:]), recursive))
                    if rest[0] == "refs":
                        repo = self._repo(repo_type, repo_id)
                        if repo is not None:
                            self._reply(200, {"branches": [{"name": "main", "ref": "refs/heads/main",
                                                            "targetCommit": repo.sha}], "tags": [], "converts": []})
                        return
                return self._error(404, "EntryNotFound", f"no such endpoint on the test hub: {method} {self.path}")

            # /[types/]ns/name/resolve/rev/path
            def _resolve(self, parts: list[str], head_only: bool):
                repo_type = "model"
                if parts[0] in ("datasets", "spaces") and len(parts) > 1 and parts[3:4] == ["resolve"]:
                    repo_type, parts = parts[0][:-1], parts[1:]
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._error(404, "EntryNotFound", f"no such endpoint: {self.path}", head_only)
                repo_id, revision, path = "/".join(parts[:2]), unquote(parts[3]), "/".join(parts[4:])
                repo = self._repo(repo_type, repo_id, revision, head_only)
                if repo is None:
                    return
                target = repo.file(path)
                if target is None:
                    return self._error(404, "EntryNotFound", f"{path} does not exist in {repo_id}", head_only)
                data = target.read_bytes()
                etag = f'"{_git_blob_sha1(data)}"'
                self._reply(200, data, {"Content-Type": "application/octet-stream", "Content-Length": len(data),
                                        "ETag": etag, "X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes"},
                            head_only=head_only)

            def _dispatch(self, method: str):
                url = urlparse(self.path)
                parts = [unquote(p) for p in url.path.split("/") if p]
                try:
                    if parts and parts[0] == "api" and len(parts) > 1:
                        return self._api(method, parts[1:], parse_qs(url.query))
                    if method in ("GET", "HEAD") and "resolve" in parts:
                        return self._resolve(parts, head_only=method == "HEAD")
                    return self._error(404, "EntryNotFound", f"no such endpoint: {method} {self.path}",
                                       head_only=method == "HEAD")
                except Exception as error:  # report server bugs to the client instead of hanging it
                    return self._error(500, "ServerError", f"{type(error).__name__}: {error}")

            def do_GET(self):
                self._dispatch("GET")

            def do_HEAD(self):
                self._dispatch("HEAD")

            def do_POST(self):
                self._dispatch("POST")

            def do_DELETE(self):
                self._dispatch("DELETE")

        return Handler


def go_online(monkeypatch, endpoint: str) -> None:
    """Make this (already started) process talk to ``endpoint`` as if ``HF_ENDPOINT=<endpoint>`` and
    ``HF_HUB_OFFLINE=0`` had been exported before anything imported huggingface_hub.

    huggingface_hub reads both variables once, at import time, into `huggingface_hub.constants`, and builds from
    them the default `HfApi` behind its module-level functions; transformers caches its own `HfApi` on first use;
    diffusers copies the offline flag and the endpoint into its modules at import. Patching exactly those values
    through ``monkeypatch`` (undone at teardown) gives the same effect as the environment variables, and the
    test session stays offline before and after.
    """
    import sys

    from huggingface_hub import constants, hf_api

    endpoint = endpoint.rstrip("/")
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")  # any token: the test server does not check it
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)
    patches = {
        "transformers.utils.hub": {"_hf_api": None},  # rebuilt on next use, with the patched endpoint
        "diffusers.utils.hub_utils": {"HF_HUB_OFFLINE": False, "HUGGINGFACE_CO_RESOLVE_ENDPOINT": endpoint},
        "diffusers.utils.constants": {"HUGGINGFACE_CO_RESOLVE_ENDPOINT": endpoint},
        "diffusers.loaders.lora_base": {"HF_HUB_OFFLINE": False},
    }
    for module_name, values in patches.items():
        module = sys.modules.get(module_name)
        for name, value in values.items():
            if module is not None and hasattr(module, name):
                monkeypatch.setattr(module, name, value)


if __name__ == "__main__":
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description="a Hub-compatible test server on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--storage", default=None, help="where repositories are kept (default: a temp dir)")
    options = parser.parse_args()
    hub = HubServer(options.storage or tempfile.mkdtemp(prefix="hub_server_"), port=options.port)
    print(f"serving {hub.storage} at {hub.url} (Ctrl-C to stop)", flush=True)
    try:
        hub._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
