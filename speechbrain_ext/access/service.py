"""The door as a service: ``speechbrain-ext serve``, a resident model behind a versioned HTTP API (FastAPI on uvicorn).

Every claim through the CLI starts a process and loads the model (seconds); a door controller, a time clock or a
web front end needs an answer in milliseconds. Here each uvicorn worker loads the model once and answers:

=========================  ======  ====================================================================
route                      token   does (the same ``Verifier`` / ``VoiceprintStore`` calls as the CLI)
=========================  ======  ====================================================================
``POST /v1/verify``        door    multipart ``speaker``, ``audio``, optional ``nonce``: one claim
``POST /v1/identify``      door    multipart ``audio``, optional ``top_k``: the best match is the claim
``POST /v1/challenge``     door    multipart ``speaker``, optional ``digits``, ``ttl``: a one-time prompt
``POST /v1/enroll``        admin   multipart ``speaker``, ``audio`` (one or more files), optional ``append``
``GET /v1/speakers``       admin   the enrolled speakers
``DELETE /v1/speakers/ID`` admin   remove and erase a speaker
``GET /v1/log``            admin   the audit trail (``?speaker=``, ``?since=``)
``GET /health``            none    model name and hash, decision mode, threshold, score kind, speakers
``GET /``, ``/admin``      none    the kiosk and admin pages (``speechbrain_ext/access/static``); ``/docs``: OpenAPI
=========================  ======  ====================================================================

Decisions are the CLI's: a claim goes through the door's one claim path (``Verifier.verify`` / ``identify``: the
calibrated decision of ``threshold.json``, then :func:`speechbrain_ext.access.audit.record_claim`'s replay,
lockout and prompt checks and the event, in one transaction); the answer is ``Decision.as_json``, as the CLI's
``--json``, and a claim that cannot be decided (``ClaimError``, logged by the Verifier) gets the status of its
cause. Each worker runs its Verifier on one thread of its own
(SQLite connections belong to the thread that opened them), so a worker answers one claim at a time and
``--workers N`` processes use N cores; the event loop only reads uploads and writes answers.

Tokens: on first start, a door token and an admin token (``secrets.token_urlsafe``) are written to
``DB.door-token`` and ``DB.admin-token``, mode 0600, next to the database; requests carry one as
``Authorization: Bearer TOKEN``. A missing or wrong token gives 401, and the refusal is an ``error`` event of the
audit trail.

Audio as clients send it (:func:`speechbrain_ext.access.verifier.load_audio` with ``resample=True``): WAV or
FLAC at 16 kHz or more, mono or stereo (channels averaged), resampled to 16 kHz; under 16 kHz is refused. Over
``max_bytes`` or ``max_seconds`` gives 413; unreadable, short, silent or clipped audio gives 422 with the CLI's
one-line reason.
Every error is one line of JSON, ``{"error": ...}`` (with ``event_id`` when it was logged); an unexpected exception
gives 500 with the event id, and its traceback goes to the server log only.
"""
import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import io
import json
import logging
import os
import secrets
import socket
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, NamedTuple, Optional

import soundfile as sf

from speechbrain_ext.access.audit import ClaimPolicy, parse_since
from speechbrain_ext.access.store import Event, UnknownSpeaker, VoiceprintError
from speechbrain_ext.access.verifier import ClaimError, Verifier
from speechbrain_ext.audio import AudioError
from speechbrain_ext.builder import ModelError

logger = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
CONFIG_ENV = "SPEECHBRAIN_EXT_SERVICE"  # the ServiceConfig as JSON, for the worker processes of --workers N
MAX_ENROL_FILES = 20  # files one enrolment request may carry
WORKER_START_S = 300  # longest a worker of --workers N may take to load the model
# route -> command name of its audit events; the refusals of these routes are logged too
COMMANDS = {"/v1/verify": "verify", "/v1/identify": "identify", "/v1/challenge": "challenge",
            "/v1/enroll": "enroll", "/v1/speakers": "list", "/v1/log": "log"}


class Tokens(NamedTuple):
    """The two bearer tokens: ``door`` (verify, identify, challenge) and ``admin`` (every route)."""

    door: str
    admin: str


def token_path(db: str, role: str) -> Path:
    """Where the token of ``role`` (door, admin) of database ``db`` is kept: ``DB.ROLE-token``."""
    return Path(f"{db}.{role}-token")


def ensure_tokens(db: str) -> Tokens:
    """Read the two tokens of ``db``, writing any that is missing (mode 0600, atomically: a killed first start
    leaves a whole token file or none)."""
    from speechbrain_ext.io_utils import atomic_write

    tokens = []
    for role in Tokens._fields:
        path = token_path(db, role)
        if not path.is_file():
            with atomic_write(path) as f:
                os.fchmod(f.fileno(), 0o600)  # before the secret is written
                f.write(secrets.token_urlsafe(32) + "\n")
        tokens.append(path.read_text().strip())
    return Tokens(*tokens)


@dataclasses.dataclass
class ServiceConfig:
    """What ``serve`` was started with (plain values: it travels to worker processes as JSON)."""

    model: str
    db: str
    threshold: Optional[float] = None
    device: str = "cpu"
    replay_check: bool = True
    max_failures: Optional[int] = None
    window_minutes: Optional[float] = None
    require_challenge: bool = False
    max_digit_errors: int = 0
    max_bytes: int = 10 * 2 ** 20  # largest audio file, bytes
    max_seconds: float = 30.0  # longest audio file, seconds
    kiosk_token_in_page: bool = False  # serve the door token inside the kiosk page (a locked-down kiosk)
    threads: Optional[int] = None  # torch threads per worker (None: torch's default)

    @property
    def policy(self) -> ClaimPolicy:
        return ClaimPolicy(self.replay_check, self.max_failures, self.window_minutes, self.require_challenge,
                           self.max_digit_errors)


class ApiError(Exception):
    """An answer other than 200, with its one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def first_line(err: BaseException) -> str:
    """An exception as the one line the CLI prints (its message, or its type)."""
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def classify(err: Exception) -> ApiError:
    """The HTTP status of an exception raised while serving a request (500: not the client's fault); a
    :class:`ClaimError` by its cause (the Verifier logged it already)."""
    if isinstance(err, ApiError):
        return err
    cause = err.__cause__ if isinstance(err, ClaimError) else err
    if isinstance(cause, ModelError):  # e.g. a prompt from a model without a digit recogniser
        return ApiError(409, first_line(err))
    if isinstance(cause, AudioError):
        return ApiError(422, first_line(err))
    if isinstance(cause, UnknownSpeaker):
        return ApiError(404, first_line(err))
    if isinstance(cause, ValueError):  # VoiceprintError, ModelError, bad arguments: one line, as the CLI prints them
        return ApiError(400, first_line(err))
    return ApiError(500, f"{type(err).__name__}: {first_line(err)}")


class Door:
    """One worker's Verifier, run on a thread of its own, and what the routes ask of it."""

    def __init__(self, config: ServiceConfig, verifier_factory: Callable[..., Verifier] = Verifier):
        self.config = config
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verifier")
        self.verifier = self.executor.submit(self._load, verifier_factory).result()

    def _load(self, verifier_factory: Callable[..., Verifier]) -> Verifier:
        if self.config.threads is not None:
            import torch

            torch.set_num_threads(self.config.threads)
        return verifier_factory(self.config.model, self.config.db, self.config.threshold, self.config.device,
                                create=True, policy=self.config.policy, resample=True)

    async def call(self, fn: Callable, *args, **kwargs):
        """Run ``fn`` on the Verifier's thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        self.executor.submit(self.verifier.close).result()
        self.executor.shutdown()

    # ------------------------------------------------------------ on the Verifier's thread
    def upload(self, data: bytes, name: str) -> io.BytesIO:
        """An uploaded file as the Verifier reads it (an open file named ``name``; it hashes as the file), after
        the duration limit (413); the Verifier checks the rest (422)."""
        with contextlib.suppress(RuntimeError):  # unreadable: load_audio says so in its words
            info = sf.info(io.BytesIO(data))
            if info.frames > self.config.max_seconds * info.samplerate:
                raise ApiError(413, f"{name}: {info.frames / info.samplerate:.1f} s of audio, "
                                    f"limit {self.config.max_seconds:g} s")
        upload = io.BytesIO(data)
        upload.name = name
        return upload

    def log_failure(self, event: Event, message: str) -> Optional[int]:
        """Log a failed request as an ``error`` event; its id, or None if even that failed (then logged here)."""
        event.decision, event.error = "error", message
        try:
            self.verifier.store.log_event(event)
            return event.id
        except (VoiceprintError, OSError, sqlite3.Error) as err:
            logger.error(f"cannot log the event of a failed {event.command} ({message}): {first_line(err)}")
            return None

    def verify(self, data: bytes, name: str, speaker: str, nonce: Optional[str]) -> Dict[str, Any]:
        """One claim through the door's claim path (``Verifier.verify``: scored, settled, logged)."""
        return self.verifier.verify(speaker, self.upload(data, name), nonce).as_json(self.verifier.score_kind)

    def identify(self, data: bytes, name: str, top_k: int) -> Dict[str, Any]:
        """``Verifier.identify``: the best match is the claim, the ranking its ``candidates``."""
        ranked = [d.as_json(self.verifier.score_kind) for d in self.verifier.identify(self.upload(data, name), top_k)]
        return {**ranked[0], "candidates": ranked}

    def challenge(self, speaker: str, digits: Optional[int], ttl: Optional[float]) -> Dict[str, Any]:
        """A one-time prompt from ``Verifier.challenge`` (409 where the model cannot check digits)."""
        options = {key: value for key, value in (("digits", digits), ("ttl", ttl)) if value is not None}
        prompt = self.verifier.challenge(speaker, **options)
        return {"speaker_id": speaker, "nonce": prompt.nonce, "digits": prompt.digits,
                "expires_at": prompt.expires_at}

    def enroll(self, event: Event, files: List[bytes], names: List[str], append: bool) -> Dict[str, Any]:
        uploads = [self.upload(data, name) for data, name in zip(files, names)]
        event.decision = "enrolled"
        count = self.verifier.enroll(event.speaker_id, uploads, replace=not append, event=event)
        return {"speaker_id": event.speaker_id, "num_utterances": count, "event_id": event.id}

    def remove(self, event: Event) -> Dict[str, Any]:
        event.decision = "removed"
        self.verifier.store.remove(event.speaker_id, event)
        return {"removed": event.speaker_id, "event_id": event.id}

    def health(self) -> Dict[str, Any]:
        store = self.verifier.store
        calibration = self.verifier.calibration
        return {"status": "ok", "model": Path(self.config.model).name, "model_hash": store.model_hash,
                "mode": calibration.mode, "threshold": calibration.threshold, "score_kind": self.verifier.score_kind,
                "speakers": store.count(), "challenges": self.verifier.prompts}


def sha256(data: bytes) -> str:
    """SHA-256 (hex) of an upload: the same as ``store.audio_sha256`` of the file it came from."""
    return hashlib.sha256(data).hexdigest()


def kiosk_page(name: str, door_token: Optional[str]) -> str:
    """A static page, with the door token in its ``door-token`` meta tag for a locked-down kiosk."""
    html = (STATIC / name).read_text(encoding="utf-8")
    if door_token is not None:
        html = html.replace('<meta name="door-token" content="">', f'<meta name="door-token" content="{door_token}">')
    return html


def create_app(config: ServiceConfig, door: Optional[Door] = None):
    """The FastAPI application of one worker (``door``: an already loaded one, else loaded here)."""
    from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException

    door = door or Door(config)
    tokens = ensure_tokens(config.db)
    app = FastAPI(title="speechbrain_ext door", version="1",
                  description="Speaker verification with a calibrated threshold, an audit trail, replay "
                              "rejection and prompted challenges. Bearer tokens: see DB.door-token, DB.admin-token.")
    bearer = HTTPBearer(auto_error=False)

    def error(status: int, message: str, event_id: Optional[int] = None) -> JSONResponse:
        body = {"error": message} if event_id is None else {"error": message, "event_id": event_id}
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(body, status, headers=headers)

    async def refuse(request: Request, status: int, message: str, speaker: Optional[str] = None) -> JSONResponse:
        """Answer a request refused before its work began, logging it if its route is audited."""
        command = COMMANDS.get(request.url.path, "remove" if request.url.path.startswith("/v1/speakers/") else None)
        event_id = None
        if command is not None:
            event_id = await door.call(door.log_failure, Event(command, speaker), message)
        logger.warning(f"{request.method} {request.url.path}: {status} {message}")
        return error(status, message, event_id)

    def role(needed: str):
        """A dependency admitting the admin token, and the door token where ``needed`` is door."""
        async def check(request: Request, credentials: Optional[HTTPAuthorizationCredentials] = Depends(bearer)):
            given = credentials.credentials if credentials else None
            allowed = [tokens.admin] + ([tokens.door] if needed == "door" else [])
            if given is not None and any(hmac.compare_digest(given, t) for t in allowed):
                return
            problem = "no bearer token" if given is None else (
                "this route needs the admin token" if hmac.compare_digest(given, tokens.door) else "wrong token")
            client = request.client.host if request.client else "?"
            raise ApiError(401, f"unauthorized: {problem} ({request.method} {request.url.path} from {client})")
        return Depends(check)

    def body(*kinds: str):
        """A dependency refusing (415) a request body of another content type than ``kinds``."""
        async def check(request: Request) -> None:
            given = request.headers.get("content-type", "")
            if not given.startswith(kinds):
                raise ApiError(415, f"{request.url.path} takes {' or '.join(kinds)}, got {given or 'no content type'}")
        return Depends(check)

    multipart, form = body("multipart/form-data"), body("multipart/form-data", "application/x-www-form-urlencoded")
    admin = [role("admin")]

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError):
        return await refuse(request, err.status, str(err))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        problems = [f"{'missing' if e['type'] == 'missing' else 'invalid'} field {e['loc'][-1]!r}"
                    + ("" if e["type"] == "missing" else f" ({e['msg']})") for e in err.errors()]
        speaker = None
        with contextlib.suppress(Exception):  # the form was parsed already (or is not a form)
            speaker = (await request.form()).get("speaker")
        return await refuse(request, 422, "; ".join(problems), speaker if isinstance(speaker, str) else None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException):  # 404 route, 405 method, 400 malformed body
        return error(err.status_code, str(err.detail))

    @app.exception_handler(Exception)
    async def internal(request: Request, err: Exception):  # a bug outside the routes' own handling
        return await answer_failure(Event(COMMANDS.get(request.url.path, "request")), err)

    async def answer_failure(event: Event, err: Exception) -> JSONResponse:
        status = classify(err)
        if isinstance(err, ClaimError):  # logged by the Verifier
            event_id = err.event_id
        else:
            event_id = await door.call(door.log_failure, event, str(status))
        if status.status == 500:
            logger.error(f"event {event_id}: internal error in {event.command}", exc_info=err)
            return error(500, f"internal error, see the server log (event {event_id})", event_id)
        logger.warning(f"{event.command} {event.speaker_id or ''}: {status.status} {status}")
        return error(status.status, str(status), event_id)

    async def audited(event: Event, work: Callable[[], Awaitable[Dict[str, Any]]]) -> JSONResponse:
        """Run a route's work; on failure log ``event`` as an error and answer with its status."""
        try:
            return JSONResponse(await work())
        except Exception as err:  # noqa: BLE001 -- every failure becomes one line of JSON
            return await answer_failure(event, err)

    async def read(upload: UploadFile) -> bytes:
        data = await upload.read()
        if len(data) > config.max_bytes:
            raise ApiError(413, f"{upload.filename or 'audio'}: {len(data) / 2 ** 20:.1f} MB, "
                                f"limit {config.max_bytes / 2 ** 20:g} MB")
        return data

    async def claim(event: Event, audio: UploadFile, settle: Callable, *options) -> JSONResponse:
        """A verify or identify claim: read the upload, then ``settle(data, name, *options)`` on the Verifier's
        thread (``event``: what is logged if the request fails before the Verifier takes the claim)."""
        async def work():
            data = await read(audio)
            event.audio_sha256 = sha256(data)
            return await door.call(settle, data, audio.filename or "audio", *options)
        return await audited(event, work)

    @app.middleware("http")
    async def body_limit(request: Request, call_next):
        """413 before reading a body that its Content-Length says is too large."""
        files = MAX_ENROL_FILES if request.url.path == "/v1/enroll" else 1
        if int(request.headers.get("content-length") or 0) > files * config.max_bytes + 2 ** 20:
            return await refuse(request, 413, f"request body of {request.headers['content-length']} bytes, limit "
                                              f"{config.max_bytes / 2 ** 20:g} MB per audio file")
        return await call_next(request)

    @app.post("/v1/verify", dependencies=[role("door"), multipart], tags=["door"])
    async def verify(speaker: str = Form(..., description="claimed speaker id"),
                     audio: UploadFile = File(..., description="WAV or FLAC, >= 16 kHz"),
                     nonce: Optional[str] = Form(None, description="nonce of a /v1/challenge prompt")):
        """One claim: decision (accept, reject, replay, locked, ...), score, threshold, score_kind, reason,
        event_id."""
        return await claim(Event("verify", speaker), audio, door.verify, speaker, nonce)

    @app.post("/v1/identify", dependencies=[role("door"), multipart], tags=["door"])
    async def identify(audio: UploadFile = File(...), top_k: int = Form(5, ge=1)):
        """Rank the enrolled speakers; the best match is the claim (as ``speechbrain-ext identify``)."""
        return await claim(Event("identify"), audio, door.identify, top_k)

    @app.post("/v1/challenge", dependencies=[role("door"), form], tags=["door"])
    async def challenge(speaker: str = Form(...), digits: Optional[int] = Form(None, ge=1),
                        ttl: Optional[float] = Form(None, gt=0, description="seconds")):
        """A one-time digit prompt for ``speaker``: nonce, digits, expires_at."""
        event = Event("challenge", speaker)
        return await audited(event, lambda: door.call(door.challenge, speaker, digits, ttl))

    @app.post("/v1/enroll", dependencies=[role("admin"), multipart], tags=["admin"])
    async def enroll(speaker: str = Form(...), audio: List[UploadFile] = File(..., description="one or more files"),
                     append: bool = Form(False, description="add to the speaker's utterances")):
        """Enrol (or re-enrol) a speaker: num_utterances, event_id."""
        event = Event("enroll", speaker)

        async def work():
            if len(audio) > MAX_ENROL_FILES:
                raise ApiError(413, f"{len(audio)} files, limit {MAX_ENROL_FILES}")
            files = [await read(upload) for upload in audio]
            event.audio_sha256 = " ".join(sha256(data) for data in files)
            names = [upload.filename or f"audio #{i}" for i, upload in enumerate(audio)]
            return await door.call(door.enroll, event, files, names, append)
        return await audited(event, work)

    @app.get("/v1/speakers", dependencies=admin, tags=["admin"])
    async def speakers():
        """The enrolled speakers, sorted by id."""
        return [s._asdict() for s in await door.call(lambda: door.verifier.store.speakers())]

    @app.delete("/v1/speakers/{speaker_id}", dependencies=admin, tags=["admin"])
    async def remove(speaker_id: str):
        """Delete and erase a speaker and its voiceprint."""
        event = Event("remove", speaker_id)
        return await audited(event, lambda: door.call(door.remove, event))

    @app.get("/v1/log", dependencies=admin, tags=["admin"])
    async def log(speaker: Optional[str] = Query(None), since: Optional[str] = Query(None, description="ISO time")):
        """The audit trail, oldest first."""
        try:
            start = parse_since(since) if since else None
        except ValueError as err:
            raise ApiError(400, first_line(err)) from None
        return [dataclasses.asdict(e) for e in await door.call(lambda: door.verifier.store.events(speaker, start))]

    @app.get("/health", tags=["status"])
    async def health():
        """Model name and hash, threshold and its score, enrolled speakers."""
        return await door.call(door.health)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def kiosk():
        return kiosk_page("index.html", tokens.door if config.kiosk_token_in_page else None)

    @app.get("/admin", response_class=HTMLResponse, include_in_schema=False)
    async def admin_page():
        return kiosk_page("admin.html", None)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.door = door
    return app


def app_from_environment():
    """The application factory of a worker process (``--workers N``): its config is in :data:`CONFIG_ENV`."""
    _log_to_stderr()
    return create_app(ServiceConfig(**json.loads(os.environ[CONFIG_ENV])))


def _log_to_stderr() -> None:
    """This package's and uvicorn's INFO lines to stderr; library chatter only from WARNING on."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s: %(message)s", force=True)
    for name in ("speechbrain_ext", "uvicorn"):
        logging.getLogger(name).setLevel(logging.INFO)


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket, or one OSError line (e.g. another ``serve`` holds the port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as err:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} ({err.strerror or err}); is another serve running?") from None
    sock.set_inheritable(True)
    return sock


def serve(args) -> int:
    """``speechbrain-ext serve``: check the model and database, write the tokens, then run uvicorn until stopped.

    Start-up problems (port taken, model that does not load, database that is not ours) raise one-line errors
    before anything is served (the CLI prints them and exits 2).
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    threads = None if "OMP_NUM_THREADS" in os.environ else max(1, (os.cpu_count() or 1) // args.workers)
    config = ServiceConfig(args.model, str(Path(args.db).absolute()), args.threshold, args.device,
                           not args.allow_replay, args.max_failures, args.window, args.require_challenge,
                           args.max_digit_errors, int(args.max_upload_mb * 2 ** 20), args.max_seconds,
                           args.kiosk_token_in_page, threads)
    config.policy  # noqa: B018 -- checks --max-failures/--window/--max-digit-errors before anything starts
    if (args.ssl_keyfile is None) != (args.ssl_certfile is None):
        raise ValueError("TLS needs both --ssl-keyfile and --ssl-certfile")
    sock = listen(args.host, args.port)
    door = Door(config)  # loads the model and opens the database: their errors stop us here
    ensure_tokens(config.db)
    _log_to_stderr()
    host, port = sock.getsockname()[:2]
    scheme = "http" if args.ssl_certfile is None else "https"
    calibration = door.verifier.calibration
    logger.info(f"serving {config.model} ({calibration.mode} mode, threshold {calibration.threshold:.4f}, "
                f"{door.verifier.score_kind}) on "
                f"{scheme}://{host}:{port} with {args.workers} worker(s); tokens in {token_path(config.db, 'door')} "
                f"and {token_path(config.db, 'admin')}")
    common = dict(log_config=None, access_log=False, timeout_graceful_shutdown=5, ssl_keyfile=args.ssl_keyfile,
                  ssl_certfile=args.ssl_certfile)
    if args.workers == 1:
        server = uvicorn.Server(uvicorn.Config(create_app(config, door), **common))
        try:
            server.run(sockets=[sock])
        finally:
            door.close()
    else:
        door.close()  # each worker loads its own
        os.environ[CONFIG_ENV] = json.dumps(dataclasses.asdict(config))
        # a worker loads the model before it answers uvicorn's health check (default 5 s): allow minutes
        uv_config = uvicorn.Config("speechbrain_ext.access.service:app_from_environment", factory=True,
                                   workers=args.workers, timeout_worker_healthcheck=WORKER_START_S, **common)
        Multiprocess(uv_config, sockets=[sock]).run()
    return 0


def start_subprocess(argv: List[str], log_path: Path, timeout: float = 180.0, env: Optional[dict] = None):
    """Start ``python -m speechbrain_ext serve ARGV`` (stderr to ``log_path``); returns ``(process, base URL)``
    once ``/health`` answers. For tests and benchmarks; raises RuntimeError with the log's last line if it exits."""
    import subprocess
    import sys
    import time
    import urllib.request

    log = open(log_path, "w")
    process = subprocess.Popen([sys.executable, "-m", "speechbrain_ext", "serve", *argv], stdout=log,
                               stderr=subprocess.STDOUT, env=env)
    deadline, url = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            lines = Path(log_path).read_text().strip().splitlines() or ["(no output)"]
            raise RuntimeError(f"serve exited with status {process.returncode}: {lines[-1]}")
        if url is None:
            found = [l.split(" on ", 1)[1].split()[0] for l in Path(log_path).read_text().splitlines()
                     if " serving " in l and " on http://" in l]  # plain http only (tests and benchmarks)
            url = found[0] if found else None
        if url is not None:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    if response.status == 200:
                        return process, url
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"serve did not answer within {timeout:g} s")
