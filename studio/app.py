"""The studio's web app (Flask): JSON API, the page and its static files, and the media it may serve.

Safety, for a server that runs on the user's machine:
- it binds 127.0.0.1 unless told otherwise, and answers only requests whose Host is the
  address it serves (a web page cannot reach it through DNS rebinding);
- POST bodies must be JSON (a cross-site form cannot send that without a CORS preflight, which
  this server never grants) and, when the browser names an Origin, from this server itself;
- files are served only from the library folder (thumbnails) and the project's work folder
  (film, exports); every path is resolved and checked to lie inside them;
- text sizes are capped (script, search, body); errors are JSON with a 4xx status;
- the page builds its DOM with textContent, never innerHTML with user text.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, jsonify, request, send_file
from werkzeug.exceptions import HTTPException

from montage.errors import MontageError

from .engine import Conflict, NotFound, Studio
from .session import MAX_SCRIPT_CHARS, ScriptTooLong

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = MAX_SCRIPT_CHARS * 4 + 65536      # UTF-8 of the longest script, plus JSON slack


def create_app(studio: Studio, allowed_hosts: set[str] | None = None) -> Flask:
    """The Flask app over one Studio. `allowed_hosts`: Host header values accepted (None: any,
    for the test client)."""
    app = Flask("studio", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["JSON_SORT_KEYS"] = False

    def error(status: int, message: str) -> Response:
        resp = jsonify({"error": " ".join(str(message).split())})
        resp.status_code = status
        return resp

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        if err.code == 413:
            return error(413, f"request too large (at most {MAX_BODY:,} bytes)")
        return error(err.code or 500, err.description or err.name)

    @app.errorhandler(ScriptTooLong)
    def too_long(err: ScriptTooLong) -> Response:
        return error(413, str(err))

    @app.errorhandler(NotFound)
    def not_found(err: NotFound) -> Response:
        return error(404, str(err))

    @app.errorhandler(Conflict)
    def conflict(err: Conflict) -> Response:
        return error(409, str(err))

    @app.errorhandler(MontageError)
    def bad_input(err: MontageError) -> Response:
        return error(400, str(err))

    @app.before_request
    def guard() -> Response | None:
        if allowed_hosts is not None and request.host not in allowed_hosts:
            return error(403, f"host {request.host!r} is not served here")
        if request.method == "POST":
            if not request.is_json:
                return error(415, "send JSON (Content-Type: application/json)")
            origin = request.headers.get("Origin")
            if origin is not None and allowed_hosts is not None and \
                    origin.split("://", 1)[-1] not in allowed_hosts:
                return error(403, "cross-origin requests are refused")
        return None

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
            "script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
        if request.path.startswith("/api/"):
            resp.headers["Cache-Control"] = "no-store"
        return resp

    def body() -> dict:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            abort(400, "the body must be a JSON object")
        return data

    # -- page ------------------------------------------------------------------------------
    @app.get("/")
    def index() -> Response:
        return send_file(STATIC / "index.html", mimetype="text/html", max_age=0)

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status=204)

    @app.get("/static/<name>")
    def static_file(name: str) -> Response:
        allowed = {p.name: p for p in STATIC.iterdir() if p.is_file()}
        if name not in allowed:
            abort(404, "no such file")
        return send_file(allowed[name], max_age=0)

    # -- state -----------------------------------------------------------------------------
    @app.get("/api/project")
    def project() -> Response:
        d = studio.session.to_dict()
        d.update(path=str(studio.project), max_script_chars=MAX_SCRIPT_CHARS,
                 library=studio.library_info())
        return jsonify(d)

    @app.get("/api/storyboard")
    def storyboard() -> Response:
        return jsonify(studio.storyboard())

    @app.post("/api/script")
    def script() -> Response:
        text = body().get("script")
        if not isinstance(text, str):
            raise MontageError("'script' must be text")
        return jsonify(studio.update(text))

    @app.post("/api/pin")
    def pin() -> Response:
        b = body()
        if "unit" not in b or "shot_id" not in b:
            raise MontageError("give 'unit' and 'shot_id' (null to unpin)")
        return jsonify(studio.pin(b["unit"], b["shot_id"], b.get("text")))

    @app.post("/api/never-use")
    def never_use() -> Response:
        b = body()
        if "shot_id" not in b:
            raise MontageError("give 'shot_id'")
        return jsonify(studio.never_use(b["shot_id"], bool(b.get("never", True))))

    @app.post("/api/generate")
    def generate() -> Response:
        b = body()
        if "unit" not in b:
            raise MontageError("give 'unit'")
        return jsonify(studio.request_generate(b["unit"], bool(b.get("generate", True)), b.get("text")))

    @app.post("/api/settings")
    def settings() -> Response:
        return jsonify(studio.set_settings(body()))

    @app.post("/api/save")
    def save() -> Response:
        return jsonify(studio.save())

    @app.get("/api/status")
    def status() -> Response:
        return jsonify(studio.status())

    @app.get("/api/search")
    def search() -> Response:
        q = request.args.get("q", "")
        try:
            k = int(request.args.get("k", "24"))
        except ValueError:
            raise MontageError("k must be a number") from None
        return jsonify({"query": q, "results": studio.search(q, k)})

    @app.post("/api/index")
    def index_folder() -> Response:
        return jsonify(studio.start_index(body().get("folder")))

    @app.post("/api/export")
    def export() -> Response:
        return jsonify(studio.export(body().get("formats")))

    # -- files -----------------------------------------------------------------------------
    @app.get("/thumb/<int:shot_id>")
    def thumb(shot_id: int) -> Response:
        return send_file(studio.thumbnail_path(shot_id), mimetype="image/jpeg", max_age=3600)

    @app.get("/files/library/<path:rel>")
    def library_file(rel: str) -> Response:
        if studio.library_dir is None:
            raise NotFound("no library")
        # Only the thumbnails: the database and caches are nobody's business but the server's.
        return send_file(_inside(studio.library_dir / "thumbs", rel), conditional=True, max_age=0)

    @app.get("/files/project/<path:rel>")
    def project_file(rel: str) -> Response:
        resp = send_file(_inside(studio.workdir, rel), conditional=True, max_age=0)
        if rel.startswith("export/"):
            resp.headers["Content-Disposition"] = "attachment"
        return resp

    return app


def _inside(root: Path, rel: Any) -> Path:
    """`root/rel` when it is a file inside root after resolving links and '..'; else 404."""
    root = Path(root).resolve()
    if not isinstance(rel, str) or "\0" in rel or rel.startswith(("/", "\\")):
        raise NotFound("no such file")
    p = (root / rel).resolve()
    if not p.is_relative_to(root) or not p.is_file():
        raise NotFound("no such file")
    return p
