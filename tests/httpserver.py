"""A real HTTP server on 127.0.0.1 for download tests (Range support, injectable failures)."""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    def __init__(self):
        self.files = {}          # path -> bytes
        self.drop_after = {}     # path -> (bytes to send before dropping, how many requests to drop)
        self.ignore_range = set()
        self.requests = []       # (path, Range header or None)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                server.requests.append((self.path, self.headers.get("Range")))
                data = server.files.get(self.path)
                self.send_response(404 if data is None else 200)
                self.send_header("Content-Length", "0" if data is None else str(len(data)))
                self.end_headers()

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                if rng and self.path not in server.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut, times = server.drop_after.get(self.path, (None, 0))
                if cut is not None and times > 0:
                    server.drop_after[self.path] = (cut, times - 1)
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class HubServer:
    """A stand-in for the Hugging Face Hub on 127.0.0.1, for ``HF_ENDPOINT``: what ``hf_hub_download``
    talks to, with the headers it needs (huggingface_hub/file_download.py, ``get_hf_file_metadata``).

    ``HEAD|GET /<org>/<name>/resolve/<main|commit>/<file>``:

    * regular (git) file: 200, ``X-Repo-Commit``, ``ETag`` (its git blob sha1), ``Content-Length``; body on GET.
    * LFS file (``lfs=True``, the weights): 302 to the second server (the "CDN", another origin, as the Hub's
      CDN is: the client must drop ``Authorization`` there), with ``X-Repo-Commit``, ``X-Linked-Etag`` (the
      file's sha256), ``X-Linked-Size``; the CDN serves ``/blobs/<sha256>`` with Range support.
    * gated repo (``gated[repo] = token``): without ``Authorization: Bearer <token>`` 401 (no token) or 403
      (another token), ``X-Error-Code: GatedRepo``, as the Hub answers.
    * unknown repo: 404 ``RepoNotFound``; unknown file: 404 ``EntryNotFound`` (with ``X-Repo-Commit``);
      unknown revision: 404 ``RevisionNotFound``.

    ``requests`` records ``(server, method, path, headers)`` for every request ("hub" or "cdn").
    """

    def __init__(self, commit="c0ffee" + "0" * 34):
        import hashlib
        self._hashlib = hashlib
        self.commit = commit
        self.repos = {}       # repo_id -> {filename: (bytes, lfs)}
        self.gated = {}       # repo_id -> token that has access
        self.requests = []
        server = self

        def handler(kind):
            class Handler(BaseHTTPRequestHandler):
                def log_message(self, *args):
                    pass

                def do_HEAD(self):
                    server._handle(self, kind, body=False)

                def do_GET(self):
                    server._handle(self, kind, body=True)
            return Handler

        self.hub = ThreadingHTTPServer(("127.0.0.1", 0), handler("hub"))
        self.cdn = ThreadingHTTPServer(("127.0.0.1", 0), handler("cdn"))
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (self.hub, self.cdn)]
        self.running = False

    def add(self, repo_id, filename, data, lfs=None):
        self.repos.setdefault(repo_id, {})[filename] = (data, len(data) > 10_000 if lfs is None else lfs)

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.hub.server_address[1]}"

    @property
    def cdn_base(self):
        return f"http://127.0.0.1:{self.cdn.server_address[1]}"

    def hub_requests(self, method=None):
        return [r for r in self.requests if r[0] == "hub" and (method is None or r[1] == method)]

    # --- request handling

    def _git_sha1(self, data):
        return self._hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    def _reply(self, h, code, headers, data=b"", body=True):
        h.send_response(code)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body and data:
            h.wfile.write(data)

    def _error(self, h, code, error_code, message, body, extra=None):
        headers = {"X-Error-Code": error_code, "X-Error-Message": message, "Content-Type": "application/json"}
        headers.update(extra or {})
        self._reply(h, code, headers, ('{"error": "%s"}' % message).encode(), body)

    def _handle(self, h, kind, body):
        from urllib.parse import unquote, urlparse
        path = urlparse(h.path).path
        self.requests.append((kind, h.command, path, {k.title(): v for k, v in h.headers.items()}))
        if kind == "cdn":
            return self._serve_blob(h, path, body)
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if len(parts) < 5 or parts[2] != "resolve":
            return self._error(h, 404, "RepoNotFound", "Repository not found", body)
        repo, rev, filename = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
        if repo not in self.repos:
            return self._error(h, 404, "RepoNotFound", "Repository not found", body)
        if repo in self.gated:
            auth = h.headers.get("Authorization")
            if auth != f"Bearer {self.gated[repo]}":
                code = 401 if auth is None else 403
                return self._error(h, code, "GatedRepo", f"Access to model {repo} is restricted", body)
        if rev not in ("main", self.commit):
            return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}", body)
        commit = {"X-Repo-Commit": self.commit}
        if filename not in self.repos[repo]:
            return self._error(h, 404, "EntryNotFound", f"{filename} does not exist", body, commit)
        data, lfs = self.repos[repo][filename]
        if lfs:
            sha = self._hashlib.sha256(data).hexdigest()
            self._reply(h, 302, dict(commit, **{
                "Location": f"{self.cdn_base}/blobs/{sha}", "ETag": f'"{self._git_sha1(data)}"',
                "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data))}), b"Found.", body)
        else:
            self._reply(h, 200, dict(commit, ETag=f'"{self._git_sha1(data)}"'), data, body)

    def _serve_blob(self, h, path, body):
        sha = path.rsplit("/", 1)[-1]
        blobs = {self._hashlib.sha256(d).hexdigest(): d for files in self.repos.values()
                 for d, _ in files.values()}
        if sha not in blobs:
            return self._reply(h, 404, {}, b"no such blob", body)
        data = blobs[sha]
        rng = h.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            return self._reply(h, 206, {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"},
                               data[start:], body)
        self._reply(h, 200, {}, data, body)

    def stop(self):
        if self.running:
            for s in (self.hub, self.cdn):
                s.shutdown()
                s.server_close()
            self.running = False

    def __enter__(self):
        for t in self.threads:
            t.start()
        self.running = True
        return self

    def __exit__(self, *exc):
        self.stop()
