"""MLflow adapter: training and evaluation report here; nothing downstream reads from it.

The run's own files (curves.csv, train.json, metrics.json) are the source of truth. MLflow is a
side channel for browsing and comparing runs, so a tracking failure (store unreachable, disk
full, a locked database that stays locked) never stops training: the tracker warns once, in
one line naming the store and what to do (``store_problem``), stops tracking for the rest of
the process, and ``cdrepro sync`` logs the run's files later.

Where runs go
    ``sqlite:///<results_dir>/<profile>/mlflow.db`` with artifacts in ``mlartifacts/`` next to
    it, unless ``MLFLOW_TRACKING_URI`` names another store (an ``mlflow server``, say).
    ``CDREPRO_TRACKING=off`` switches tracking off.

One experiment per profile (``cdrepro/<profile>``)
    A profile is one scale of the whole study (the embedded digits profile, the paper's), so
    all its ablations sit side by side in one table and every number in it is comparable; the
    dataset is a tag and a column to filter on. Per-dataset experiments would split Table 2's
    comparisons across pages, and mixing profiles would put a 15-epoch toy next to 1000-epoch
    paper runs. The experiment is a model-training one (MLflow 3 would open a GenAI overview)
    and carries the runs table's columns as a shared view (``experiment_tags``, ``runs_page``).
    The profile's tables and figures are in one more run, ``summary`` (cdrepro.tracking_summary).

One MLflow run per training run
    named ``cdrepro.runs.tracking_name`` (``stl10/bs128/no_ne/seed42``) and tagged with the run
    id and the settings' digest; a resumed training continues its MLflow run, and evaluation
    logs into the latest MLflow run of the same run id and digest.

What a run holds (names come from the method, so a new loss term or stage appears unasked)
    params: the run's settings (``RunSettings.to_dict``), ``method``, and after evaluation
    ``evaluate.*``. Tags: run id, digest, dataset, batch_size, method, method_label (the name
    the tables show), variant, seed, targets (``reproduce_tables,compare_methods``), profile,
    git commit, paths; after evaluation ``final_stage`` (the method's last stage) and
    ``evaluated``. Per-epoch metrics (step = epoch), one per curves.csv column of the row:
    ``loss``, each of the method's loss terms under its own name (CD: ``instance``,
    ``feature``, ``entropy``), ``lr``, ``epoch_seconds`` (the ``seconds`` column) and
    ``pairs_per_s``. Final metrics: ``<stage>_<score>`` for every stage of metrics.json and
    score nmi, ari, acc (CD: ``backbone_nmi`` ... ``feature_acc``), and the final stage's
    again as ``final_nmi``, ``final_ari``, ``final_acc``, one column for every method.

Parallel jobs
    ``cdrepro tracking-init`` (the workflow's ``onstart``) creates the SQLite tables and the
    experiment once, before any job starts: two jobs creating them at once race. Every store
    call retries on "database is locked"; experiment creation tolerates a concurrent creator.

``mlflow`` takes seconds to import, so it is imported only when a tracker first talks to it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import logging
import os
import random
import re
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdrepro.methods import METHODS
from cdrepro.run_settings import SETTINGS_ADDED_LATER, RunSettings, targets_of
from cdrepro.runs import ProfilePaths, parse_run_id, run_id, tracking_name

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

DB_NAME = "mlflow.db"
ARTIFACTS_NAME = "mlartifacts"
RUN_ID_TAG = "cdrepro.run_id"
HASH_TAG = "params_hash"
OFF_VALUES = {"0", "off", "false", "no"}
# Defaults for talking to a tracking server, where the user has not chosen: MLflow's own
# (7 retries with exponential backoff, 120 s timeout) would stall training for minutes
# before the first warning when the server is down.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
# curves.csv columns logged per epoch under another name; every other column (but the epoch,
# which is the step) under its own. "seconds" alone would not say of what.
EPOCH_RENAMED = {"seconds": "epoch_seconds"}
FINAL_STAGE_TAG = "final_stage"
# The final stage's scores again under one name for every method (CD's feature_acc is CC's
# cluster_acc), so that one set of columns compares every run.
FINAL_PREFIX = "final"

# MLflow 3 opens an experiment by its kind: a GenAI one on its (here empty) overview, a
# model-training one on the runs table. Set at creation, and on an experiment that lacks it;
# a kind the user chose in the UI is kept. (MLflow 3.17's UI takes the kind from its own
# GenAI / Model training switch instead: hence ``workflowType`` in runs_page.)
KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
TRAINING_SIDE = "workflowType=machine_learning"  # in a UI address: the switch on Model training
# The runs table's columns and order, as an MLflow "shared view": the UI applies the JSON in
# the experiment tag mlflow.sharedViewState.<key> when the page's URL has viewStateShareKey=<key>.
VIEW_KEY = "cdrepro"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
# The columns a comparison needs, in this order (MLflow would group them by kind, metrics first):
# the final stage's scores are final_* whatever the method (see FINAL_PREFIX).
VIEW_COLUMNS = [
    "tags.`method`",
    "tags.`variant`",
    *(f"metrics.`{FINAL_PREFIX}_{s}`" for s in ("acc", "nmi", "ari")),
    "metrics.`backbone_acc`",
    "tags.`dataset`",
    "tags.`batch_size`",
    "tags.`seed`",
    f"tags.`{FINAL_STAGE_TAG}`",
]
VIEW_STATE = {
    "selectedColumns": VIEW_COLUMNS,
    "columnOrder": VIEW_COLUMNS,
    "columnWidths": {column: 110 if column.startswith("metrics.") else 90 for column in VIEW_COLUMNS},
    "orderByKey": "attributes.start_time",
    "orderByAsc": False,
    "runsHiddenMode": "SHOW_ALL",
}

# What opening a half-created or damaged SQLite store says.
_BROKEN = re.compile(r"alembic|migrat|no such table|out-of-date database schema|not a database|malformed", re.I)
# What a store says when it cannot be written, or its disk is full, or its server is away.
_READ_ONLY = re.compile(r"readonly database|read-only file system|permission denied|unable to open database", re.I)
_FULL = re.compile(r"database or disk is full|disk i/o error|no space left", re.I)
_AWAY = re.compile(
    r"connection refused|max retries exceeded|failed to establish|timed out|"
    r"name or service not known",
    re.I,
)
_RETRYABLE = re.compile(
    r"database is locked|database table is locked|table \S+ already exists|"
    r"out-of-date database schema",
    re.I,
)


class TrackingError(RuntimeError):
    """Reading back from the store failed (used by commands whose job is tracking)."""


# --------------------------------------------------------------------------- where runs go


def enabled() -> bool:
    return os.environ.get("CDREPRO_TRACKING", "on").strip().lower() not in OFF_VALUES


def experiment_name(profile: str) -> str:
    return f"cdrepro/{profile}"


def _sqlite_file(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///")
    if path.startswith("file:"):  # SQLite's own URI form: sqlite:///file:/path/mlflow.db?mode=ro&uri=true
        path = path.removeprefix("file:").split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def tracking_uri(paths: ProfilePaths) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the profile's SQLite file (absolute path)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(paths.root / DB_NAME).resolve()}"


def artifact_location(uri: str) -> str | None:
    """For a SQLite store, a folder next to the database file; a server decides for itself."""
    db = _sqlite_file(uri)
    return (db.resolve().parent / ARTIFACTS_NAME).as_uri() if db is not None else None


def _prepare_environment(uri: str) -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if uri.startswith(("http://", "https://")):
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)


@functools.lru_cache(maxsize=1)
def git_commit() -> tuple[str, bool]:
    """The package source's commit and whether tracked files differ from it."""
    where = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


# --------------------------------------------------------------------------- store calls


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def store_problem(exc: BaseException, uri: str) -> str:
    """A failed store call as one line: what is wrong with which store, and what to do."""
    if isinstance(exc, TrackingError):  # already says both
        return first_line(exc)
    where = _sqlite_file(uri) or uri
    code, text = getattr(exc, "errno", None), str(exc)
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or _FULL.search(text):
        advice = f"the disk holding the MLflow store {where} is full or failing: free some space there"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS) or _READ_ONLY.search(text):
        advice = (
            f"the MLflow store {where} is not writable: make it and its folder writable for this "
            "user, or point MLFLOW_TRACKING_URI at a store that is"
        )
    elif code in (errno.EEXIST, errno.ENOTDIR):
        advice = (
            f"the MLflow store {where} lies under a file, not a folder: point MLFLOW_TRACKING_URI "
            "(or results_dir in the params) at a folder"
        )
    elif uri.startswith(("http://", "https://")) and _AWAY.search(text):
        advice = (
            f"the MLflow server {uri} does not answer: start it, or unset MLFLOW_TRACKING_URI to "
            "log to the profile's own SQLite file"
        )
    else:
        advice = f"the MLflow store {where} failed: check it (MLFLOW_TRACKING_URI, or results_dir in the params)"
    return f"{advice} ({type(exc).__name__}: {first_line(exc)[:200]})"


def _not_our_report(record: logging.LogRecord) -> bool:
    """False for MLflow's traceback of a failed SQL session: MLflow raises it on to the caller,
    and the caller here reports it in one line (store_problem)."""
    return not str(record.msg).startswith("SQLAlchemy database error")


def retry(call: Callable[..., Any], *args: Any, attempts: int = 10, **kwargs: Any) -> Any:
    """``call(*args)``, retried with jittered backoff while SQLite reports a lock or a
    concurrent schema creation (up to about a minute in all); other errors propagate."""
    jitter = random.Random()  # private: the global random state stays the caller's
    for attempt in range(attempts):
        try:
            return call(*args, **kwargs)
        except Exception as exc:  # MlflowException wraps sqlalchemy's OperationalError
            if attempt == attempts - 1 or not _RETRYABLE.search(str(exc)):
                raise
            delay = min(10.0, 0.2 * 2**attempt) * (0.5 + jitter.random())
            log.debug("tracking store busy (%s); retrying in %.1f s", str(exc).splitlines()[0], delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def client(uri: str) -> MlflowClient:
    """An ``MlflowClient`` on ``uri`` whose store is open (tables created if new)."""
    _prepare_environment(uri)
    from mlflow.tracking import MlflowClient

    store_log = logging.getLogger("mlflow.store.db.utils")
    if _not_our_report not in store_log.filters:
        store_log.addFilter(_not_our_report)
    # Its INFO lines ("Creating initial MLflow database tables...") are noise in a workflow's
    # few lines of progress; its warnings and errors still show.
    store_log.setLevel(max(store_log.level, logging.WARNING))
    logging.getLogger("alembic").setLevel(max(logging.getLogger("alembic").level, logging.WARNING))
    db = _sqlite_file(uri)
    _check_store_file(db)
    # Opening a SQLite store (MlflowClient does it) creates or migrates its tables. Several
    # processes doing that at once leave it half-migrated for good, so opening is serialised by
    # a lock beside it (released by the kernel if its holder dies).
    with _creation_lock(db):
        try:
            mlflow_client = retry(MlflowClient, tracking_uri=uri)
            retry(lambda: mlflow_client._tracking_client.store)
        except Exception as exc:
            if db is not None and db.exists() and _BROKEN.search(str(exc)):
                raise TrackingError(
                    f"the MLflow store {db} is damaged ({str(exc).splitlines()[0][:200]}): move it "
                    f"aside (mv {db} {db}.broken) and run `cdrepro sync`, which logs every run's "
                    "files into a new store"
                ) from exc
            raise
    return mlflow_client


def _check_store_file(db: Path | None) -> None:
    """A store path that is there but no file (a folder, say): MLflow would retry opening it
    for about 100 s, 37 lines, then call it not writable. Said at once instead."""
    if db is not None and db.exists() and not db.is_file():
        what = "a folder" if db.is_dir() else "not a regular file"
        raise TrackingError(
            f"the MLflow store {db} is {what}, not a SQLite file: move it aside (mv {db} {db}.aside), "
            "or point MLFLOW_TRACKING_URI at a file; then `cdrepro sync` logs every run's files into "
            "the new store"
        )


@contextlib.contextmanager
def _creation_lock(db: Path | None):
    if db is None:  # a server: it creates its own store
        yield
        return
    with waiting_lock(db.with_name(db.name + ".create-lock")):
        yield


@contextlib.contextmanager
def waiting_lock(path: Path):
    """An exclusive lock on ``path`` for the block, waiting for its holder if need be; the
    kernel releases it when its process ends, however it ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def experiment_tags(have: dict[str, str]) -> dict[str, str]:
    """The tags an experiment of ours needs that ``have`` lacks or has otherwise: its kind
    (unless one is set: the user may have chosen another in the UI) and the runs table's view."""
    wanted = {VIEW_TAG: json.dumps(VIEW_STATE)} | ({} if have.get(KIND_TAG) else {KIND_TAG: TRAINING_KIND})
    return {key: value for key, value in wanted.items() if have.get(key) != value}


def ensure_experiment(mlflow_client, name: str, artifacts: str | None) -> str:
    """The experiment's id, created if missing (tolerating a concurrent creator) and restored
    if deleted; an existing one gets the tags of ``experiment_tags`` it lacks."""
    experiment = retry(mlflow_client.get_experiment_by_name, name)
    if experiment is None:
        try:
            tags = {"cdrepro.profile": name.split("/", 1)[-1]} | experiment_tags({})
            return retry(mlflow_client.create_experiment, name, artifact_location=artifacts, tags=tags)
        except Exception:
            experiment = retry(mlflow_client.get_experiment_by_name, name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        retry(mlflow_client.restore_experiment, experiment.experiment_id)
    _tag_experiment(mlflow_client, experiment)
    return experiment.experiment_id


def _tag_experiment(mlflow_client, experiment) -> None:
    """Set the tags ``experiment_tags`` says it lacks; one that a concurrent job set meanwhile
    (its insert then collides with ours) is no failure."""
    for key, value in experiment_tags(experiment.tags).items():
        try:
            retry(mlflow_client.set_experiment_tag, experiment.experiment_id, key, value)
        except Exception:
            now = retry(mlflow_client.get_experiment, experiment.experiment_id)
            if key in experiment_tags(now.tags):
                raise


def runs_page(experiment_id: str) -> str:
    """The UI's address (after the server's) of the experiment's runs table with our columns."""
    return f"#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}&{TRAINING_SIDE}"


def ui_address(uri: str, page: str) -> str:
    """Where a browser finds ``page``: on the tracking server, else on ``cdrepro ui`` (its
    default port) serving the SQLite store."""
    server = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{server}/{page}"


def init_store(params: dict[str, Any]) -> tuple[str, str, str]:
    """Create the store and the profile's experiment; return (uri, experiment name, id)."""
    uri, name, _, experiment_id = open_experiment(params)
    return uri, name, experiment_id


def open_experiment(params: dict[str, Any]) -> tuple[str, str, Any, str]:
    """(uri, experiment name, an MlflowClient, experiment id) of the profile's experiment,
    created with its store if new."""
    uri = tracking_uri(ProfilePaths.from_params(params))
    name = experiment_name(params["profile"])
    mlflow_client = client(uri)
    return uri, name, mlflow_client, ensure_experiment(mlflow_client, name, artifact_location(uri))


def find_run(mlflow_client, experiment_id: str, rid: str, digest: str | None = None):
    """The latest MLflow run of run id ``rid`` (and settings digest ``digest``), or None."""
    query = f"tags.`{RUN_ID_TAG}` = '{rid}'"
    if digest is not None:
        query += f" and tags.`{HASH_TAG}` = '{digest}'"
    found = retry(
        mlflow_client.search_runs, [experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1
    )
    return found[0] if found else None


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def epoch_metrics(row: dict[str, float]) -> dict[str, float]:
    """A curves.csv row's per-epoch metrics by MLflow name (see the module docstring)."""
    return {EPOCH_RENAMED.get(column, column): float(value) for column, value in row.items() if column != "epoch"}


def flat_params(prefix: str, section: dict[str, Any]) -> dict[str, str]:
    """A params section as MLflow params, nested blocks by dotted name (``evaluate.knn.k``)."""
    flat: dict[str, str] = {}
    for key, value in section.items():
        if isinstance(value, dict):
            flat.update(flat_params(f"{prefix}.{key}", value))
        else:
            flat[f"{prefix}.{key}"] = str(value)
    return flat


def final_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """``<stage>_<score>`` of every stage and score of a metrics.json record."""
    return {
        f"{stage}_{score}": float(value)
        for stage, scores in metrics["stages"].items()
        for score, value in scores.items()
    }


def final_stage_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """``final_<score>``: the final stage's scores of a metrics.json record, whatever the stage."""
    scores = metrics["stages"][metrics["final_stage"]]
    return {f"{FINAL_PREFIX}_{score}": float(value) for score, value in scores.items()}


# --------------------------------------------------------------------------- the tracker


class Tracker:
    """One MLflow run of one training run. No method raises: the first failure is logged as a
    warning and tracking stops for the rest of this tracker's life."""

    def __init__(
        self,
        params: dict[str, Any],
        paths: ProfilePaths,
        settings: RunSettings,
        active: bool | None = None,
        extra_tags: dict[str, str] | None = None,
    ) -> None:
        self.params, self.paths, self.settings = params, paths, settings
        self.active = enabled() if active is None else active
        # What this job adds about itself (the GPU slots it held: train_gpu_slots, evaluate_gpu_slots).
        self.extra_tags = extra_tags or {}
        self.client: MlflowClient | None = None  # set by _open, with mlflow_run_id
        self.mlflow_run_id: str | None = None
        self.created = False  # whether this tracker opened a new MLflow run
        self.logged_epochs: set[int] = set()

    # ------------------------------------------------------------------ failure handling

    def _guard(self, what: str, call: Callable[[], Any]) -> Any:
        if not self.active:
            return None
        try:
            return call()
        except Exception as exc:  # anything: tracking must never stop training
            self.active = False
            rid = self.settings.run_id
            log.debug("MLflow tracking of %s failed", rid, exc_info=True)  # --verbose: the traceback
            log.warning(
                "MLflow tracking of %s stopped while %s: %s. Training and evaluation go on (their "
                "numbers are in %s); once fixed, log them with: cdrepro sync --run %s",
                rid,
                what,
                store_problem(exc, tracking_uri(self.paths)),
                self.paths.run_dir(rid),
                rid,
            )
            return None

    # ------------------------------------------------------------------ opening the run

    def _open(self, reuse: bool) -> None:
        """Find (if ``reuse``) or else create the MLflow run, then log whatever of its params
        and tags it lacks. Sets ``mlflow_run_id``."""
        if self.mlflow_run_id is not None:
            return
        settings, uri = self.settings, tracking_uri(self.paths)
        self.client = client(uri)
        experiment_id = ensure_experiment(self.client, experiment_name(self.params["profile"]), artifact_location(uri))
        existing = find_run(self.client, experiment_id, settings.run_id, settings.digest()) if reuse else None
        if existing is None:
            run = retry(self.client.create_run, experiment_id, run_name=tracking_name(parse_run_id(settings.run_id)))
            have_params: dict[str, str] = {}
            self.created = True
        else:
            run = existing
            have_params = run.data.params
            history = retry(self.client.get_metric_history, run.info.run_id, "loss")
            self.logged_epochs = {int(m.step) for m in history}
        self.mlflow_run_id = run.info.run_id
        self._log_settings(have_params)

    def _log_settings(self, have_params: dict[str, str]) -> None:
        from mlflow.entities import Param, RunTag

        settings = self.settings
        commit, dirty = git_commit()
        rid = settings.run_id
        tags = {
            RUN_ID_TAG: rid,
            HASH_TAG: settings.digest(),
            "dataset": settings.dataset,
            "batch_size": str(settings.batch_size),
            "method": settings.method,
            "variant": settings.variant,
            "seed": str(settings.seed),
            # The name tables show ("CDC (reconstructed)"), and which tables the run is for, so
            # that one filter (tags.targets LIKE '%compare_methods%') gives the methods table's runs.
            "method_label": METHODS[settings.method].label if settings.method in METHODS else settings.method,
            "targets": ",".join(targets_of(self.params, rid)),
            "profile": self.params["profile"],
            "git_commit": commit,
            "git_dirty": str(dirty).lower(),
            "mlflow.source.git.commit": commit,
            # checkpoints by reference, never copied
            "run_dir": str(self.paths.run_dir(rid).resolve()),
            "checkpoint_path": str(self.paths.checkpoint(rid).resolve()),
            "model_path": str(self.paths.model(rid).resolve()),
        } | self.extra_tags
        # "method" too: to_dict leaves CD's out, so that the digests of CD runs stay as they were.
        flat = settings.to_dict() | {"method": settings.method}
        params = {k: str(v) for k, v in flat.items() if k not in have_params}
        batch = [Param(k, v) for k, v in params.items()]
        assert self.client is not None  # called by _open, which sets it
        for i, chunk in enumerate(_chunks(batch, 100) or [[]]):
            retry(
                self.client.log_batch,
                self.mlflow_run_id,
                params=chunk,
                tags=[RunTag(k, v) for k, v in tags.items()] if i == 0 else [],
            )

    # ------------------------------------------------------------------ training

    def start(self, history: list[dict[str, float]]) -> None:
        """Called by train() once the run's state is known: a fresh run (empty ``history``)
        gets a new MLflow run; a resumed one continues its latest MLflow run, and the epochs
        that run lacks are logged from ``history``."""
        self._guard("starting the run", lambda: self._open(reuse=bool(history)))
        self.log_epochs(history)

    def log_epochs(self, rows: list[dict[str, float]]) -> None:
        """Per-epoch losses, lr and speed, step = epoch; epochs already logged are skipped."""
        rows = [r for r in rows if int(r["epoch"]) not in self.logged_epochs]
        if rows:
            self._guard(f"logging epoch {int(rows[-1]['epoch'])}", lambda: self._log_epochs(rows))

    def log_epoch(self, row: dict[str, float]) -> None:
        self.log_epochs([row])

    def _log_epochs(self, rows: list[dict[str, float]]) -> None:
        from mlflow.entities import Metric

        if self.mlflow_run_id is None:
            return
        assert self.client is not None  # _open set it with mlflow_run_id
        now = int(time.time() * 1000)
        metrics = [
            Metric(name, value, now, int(row["epoch"])) for row in rows for name, value in epoch_metrics(row).items()
        ]
        for chunk in _chunks(metrics, 1000):
            retry(self.client.log_batch, self.mlflow_run_id, metrics=chunk)
        self.logged_epochs.update(int(r["epoch"]) for r in rows)

    def end(self, status: str = "FINISHED") -> None:
        """Attach the run's files that exist (curves.csv, train.json, metrics.json) and close
        the MLflow run with ``status`` (FINISHED, FAILED or KILLED)."""
        self._guard("closing the run", lambda: self._end(status))

    def _end(self, status: str) -> None:
        if self.mlflow_run_id is None:
            return
        self._log_files()
        assert self.client is not None  # _open set it with mlflow_run_id
        retry(self.client.set_terminated, self.mlflow_run_id, status)

    def _log_files(self) -> None:
        rid = self.settings.run_id
        for path in (self.paths.curves(rid), self.paths.train_summary(rid), self.paths.metrics(rid)):
            if path.is_file():
                assert self.client is not None  # called once the run is open (by _open)
                retry(self.client.log_artifact, self.mlflow_run_id, str(path))

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.end("FINISHED")
        else:
            self.end("KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")

    # ------------------------------------------------------------------ evaluation, sync

    def log_evaluation(self, metrics: dict[str, Any]) -> None:
        """Every stage's NMI/ARI/ACC and held-out accuracies (``<stage>_knn``, ``backbone_linear``,
        ``final_knn``), and the metrics file, into the run's latest MLflow run; a run trained
        without tracking gets one created."""
        self._guard("logging the evaluation", lambda: self._log_evaluation(metrics))

    def _log_evaluation(self, metrics: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        self._open(reuse=True)
        assert self.client is not None  # _open set it
        now = int(time.time() * 1000)
        scores = final_metrics(metrics) | final_stage_metrics(metrics)
        finals = [Metric(name, value, now, 0) for name, value in scores.items()]
        have = retry(self.client.get_run, self.mlflow_run_id).data.params
        evaluate = flat_params("evaluate", self.params["evaluate"])
        retry(
            self.client.log_batch,
            self.mlflow_run_id,
            metrics=finals,
            params=[Param(k, v) for k, v in evaluate.items() if k not in have],
            tags=[RunTag(FINAL_STAGE_TAG, metrics["final_stage"]), RunTag("evaluated", "true")],
        )
        self._log_files()
        if self.created:  # trained without tracking: this run is complete now
            retry(self.client.set_terminated, self.mlflow_run_id, "FINISHED")

    def sync(self, curves: list[dict[str, float]], metrics: dict[str, Any] | None) -> bool:
        """Log a finished run from its files: params, tags, the epochs MLflow lacks, the final
        metrics and the files. Unlike training, a failure here raises: syncing is the point."""
        self.active = True
        self._open(reuse=True)
        self._log_epochs([r for r in curves if int(r["epoch"]) not in self.logged_epochs])
        if metrics is not None:
            self._log_evaluation(metrics)
        else:
            self._log_files()
            if self.created and self.paths.train_summary(self.settings.run_id).is_file():
                assert self.client is not None  # _open set it
                retry(self.client.set_terminated, self.mlflow_run_id, "FINISHED")
        return True


class _Off(Tracker):
    """The tracker train() uses when given none: every call does nothing."""

    def __init__(self) -> None:  # noqa: D107 - deliberately without settings
        self.active = False
        self.extra_tags = {}
        self.mlflow_run_id = None
        self.created = False
        self.logged_epochs = set()


OFF = _Off()


# --------------------------------------------------------------------------- reading back


def _final_columns(metric_names: Iterable[str]) -> list[str]:
    """The final metrics among MLflow metric names, ``<stage>_<score>``: the backbone's first,
    then by stage name; scores in nmi, ari, acc, knn, linear order (``results.ALL_SCORES``)."""
    from cdrepro.results import ALL_SCORES, BACKBONE_ROLE

    names = set(metric_names)
    stages = {name.rsplit("_", 1)[0] for name in names if "_" in name and name.rsplit("_", 1)[1] in ALL_SCORES}
    stages.discard(FINAL_PREFIX)  # final_<score> repeats the run's own final stage
    ordered = sorted(stages, key=lambda stage: (stage != BACKBONE_ROLE, stage))
    return [f"{stage}_{score}" for stage in ordered for score in ALL_SCORES if f"{stage}_{score}" in names]


def runs_table(params: dict[str, Any]):
    """Every MLflow run of the profile's experiment as a pandas table: one row per run id (its
    latest MLflow run), columns run_id, dataset, batch_size, method, variant, seed,
    final_stage, every ``<stage>_<score>`` any run has (NaN where a run has not), status and
    mlflow_run_id."""
    import pandas as pd

    paths = ProfilePaths.from_params(params)
    uri = tracking_uri(paths)
    try:
        mlflow_client = client(uri)
        experiment = retry(mlflow_client.get_experiment_by_name, experiment_name(params["profile"]))
        runs = [] if experiment is None else _all_runs(mlflow_client, experiment.experiment_id)
    except Exception as exc:
        raise TrackingError(f"cannot read the MLflow store {uri}: {str(exc).splitlines()[0]}") from exc
    latest: dict[str, Any] = {}
    for run in runs:  # newest first: keep each run id's latest
        rid = run.data.tags.get(RUN_ID_TAG)
        if rid is not None and rid not in latest:
            latest[rid] = run
    finals = _final_columns(name for run in latest.values() for name in run.data.metrics)
    rows = [_table_row(rid, run, finals) for rid, run in latest.items()]
    columns = [
        "run_id",
        "dataset",
        "batch_size",
        "method",
        "variant",
        "seed",
        FINAL_STAGE_TAG,
        *finals,
        "status",
        "mlflow_run_id",
    ]
    return pd.DataFrame(rows, columns=columns)


def _table_row(rid: str, run, finals: list[str]) -> dict[str, Any]:
    tags, metrics = run.data.tags, run.data.metrics
    # MLflow runs logged before there were methods have no method tag: they are CD's.
    row = {
        "run_id": rid,
        "dataset": tags.get("dataset"),
        "batch_size": int(tags.get("batch_size", 0)),
        "method": tags.get("method", SETTINGS_ADDED_LATER["method"]),
        "variant": tags.get("variant"),
        "seed": int(tags.get("seed", 0)),
        FINAL_STAGE_TAG: tags.get(FINAL_STAGE_TAG, ""),
    }
    row.update({name: metrics.get(name, float("nan")) for name in finals})
    return row | {"status": run.info.status, "mlflow_run_id": run.info.run_id}


@dataclass
class Comparison:
    """``cdrepro compare``: the params' runs as MLflow has them (``runs_table`` plus ``check``:
    ok, differs: <what>, or no metrics.json), and what disagrees with the run's files."""

    table: Any  # a pandas DataFrame
    problems: list[str]

    def text(self) -> str:
        """The table as the command prints it: grouped by method, then variant (``by_method``)."""
        import pandas as pd

        shown = self.table.drop(columns=["run_id", "mlflow_run_id"]).dropna(axis=1, how="all")
        shown = shown.set_index(["method", "variant", "dataset", "batch_size", "seed"])
        with pd.option_context(
            "display.width", 200, "display.max_columns", None, "display.float_format", "{:.4f}".format
        ):
            return shown.to_string() if len(shown) else "(no runs in MLflow yet)"


def _differences(row: dict[str, Any], saved: dict[str, Any]) -> list[str]:
    """What MLflow's row says otherwise than the run's metrics.json (``method`` and the final
    metrics, to 1e-9)."""
    differs = ["method"] if row["method"] != saved["method"] else []
    return differs + [
        name for name, value in final_metrics(saved).items() if not abs(row.get(name, float("nan")) - value) <= 1e-9
    ]


def by_method(table, params: dict[str, Any]):
    """``table``'s rows grouped by method (the registry's order: cd, simclr, cc, cld, cdc; any
    other after, by name), then by variant (the params' order), then in the params' run order,
    as the methods table groups its rows."""
    from cdrepro.methods import METHODS
    from cdrepro.run_settings import runs_of

    methods = {name: i for i, name in enumerate(METHODS)}
    variants = {name: i for i, name in enumerate(params["variants"])}
    runs = {run_id(run): i for i, run in enumerate(runs_of(params))}

    def key(row: dict[str, Any]) -> tuple:
        method = str(row["method"])
        return (
            methods.get(method, len(methods)),
            method,
            variants.get(row["variant"], len(variants)),
            str(row["variant"]),
            runs.get(row["run_id"], len(runs)),
        )

    records = table.to_dict("records")
    return table.iloc[sorted(range(len(records)), key=lambda i: key(records[i]))]


def compare_with_files(params: dict[str, Any]) -> Comparison:
    """The params' runs in MLflow, grouped by method then variant (``by_method``), each checked
    against its metrics.json; an evaluated run MLflow lacks is a problem too (``cdrepro sync``
    logs it)."""
    from cdrepro.results import read_metrics
    from cdrepro.run_settings import runs_of

    paths = ProfilePaths.from_params(params)
    wanted = [run_id(run) for run in runs_of(params)]
    table = runs_table(params)
    table = by_method(table[table["run_id"].isin(wanted)], params).reset_index(drop=True)
    checks, problems = [], []
    for row in table.to_dict("records"):
        path = paths.metrics(row["run_id"])
        differs = _differences(row, read_metrics(path)) if path.is_file() else None
        checks.append(
            "no metrics.json" if differs is None else "ok" if not differs else "differs: " + ",".join(differs)
        )
        if differs:
            problems.append(f"{row['run_id']} ({', '.join(differs)})")
    table["check"] = checks
    missing = [rid for rid in wanted if rid not in set(table["run_id"]) and paths.metrics(rid).is_file()]
    if missing:
        problems.append(f"evaluated but not in MLflow: {', '.join(missing)} (cdrepro sync)")
    return Comparison(table, problems)


def sync_run(params: dict[str, Any], rid: str) -> tuple[int, bool] | None:
    """Log run ``rid``'s files to MLflow (``Tracker.sync``). None if it is not trained yet, else
    (the epochs in its curves.csv, whether it had a metrics.json). A failure raises."""
    from cdrepro.results import read_curves, read_metrics
    from cdrepro.run_settings import find_run, resolve_run

    paths = ProfilePaths.from_params(params)
    settings = resolve_run(params, find_run(params, rid))
    if not paths.curves(rid).is_file():
        return None
    curves = read_curves(paths.curves(rid))
    metrics = read_metrics(paths.metrics(rid)) if paths.metrics(rid).is_file() else None
    try:
        Tracker(params, paths, settings).sync(curves, metrics)
    except Exception as exc:
        raise RuntimeError(f"{rid}: {store_problem(exc, tracking_uri(paths))}") from exc
    return len(curves), metrics is not None


def _all_runs(mlflow_client, experiment_id: str) -> list:
    runs, token = [], None
    while True:
        page = retry(
            mlflow_client.search_runs,
            [experiment_id],
            "",
            order_by=["attributes.start_time DESC"],
            max_results=1000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs
