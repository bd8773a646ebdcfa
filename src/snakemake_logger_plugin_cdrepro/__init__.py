"""cdrepro's Snakemake output: one line per job started and finished, naming its log file.

Snakemake's own output lists every job's inputs, outputs and reason: thousands of lines for
``make run``. This logger plugin (``--logger cdrepro``; the workflow's default profile,
profiles/default, selects it for every ``snakemake`` run in the repository) prints instead::

    Jobs to run: 8 (prepare 1, baseline 1, train 2, evaluate 2, tables 1, reproduce_tables 1)
            start  train digits-bs128-cd-s42   log: results/tiny/logs/train/digits-bs128-cd-s42.log
    [3/8]   done   train digits-bs128-cd-s42 (31 s)
            FAILED train digits-bs4096-cd-s42: cdrepro train: error: ...   log: results/...

Snakemake's other messages pass as they are (nothing to be done, warnings, errors, the path of
its complete log, which keeps every detail). A dry run (``-n``), ``--verbose`` and
``--debug-dag`` get Snakemake's usual output. A params file given with ``--configfile`` that
Snakemake cannot read is named in one line (``cdrepro.config.read_params_file``'s: the line and
column of a YAML error, the line of a byte that is not UTF-8), as is a target that
``--configfile`` took for one more params file.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, Protocol, TextIO, cast

from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.common import LogEvent
from snakemake_interface_logger_plugins.settings import OutputSettingsLoggerInterface

# Snakemake's narration of its own scheduling; the job lines say what happens instead.
NARRATION = (
    "Assuming unrestricted shared filesystem usage",
    "Building DAG of jobs",
    "Using shell:",
    "Conda environments: ignored",
    "Singularity containers: ignored",
    "Select jobs to execute",
)
SILENT_EVENTS = {
    LogEvent.WORKFLOW_STARTED,
    LogEvent.RESOURCES_INFO,
    LogEvent.JOB_STARTED,
    LogEvent.PROGRESS,
    LogEvent.RULEGRAPH,
}


# The fields Snakemake adds (logging's ``extra``) to the records of the job events read here.
class _JobInfoRecord(Protocol):  # LogEvent.JOB_INFO (snakemake.jobs.Job.log_info)
    created: float
    jobid: int
    rule_name: str
    wildcards: Mapping[str, Any]
    log: list[str]


class _JobFinishedRecord(Protocol):  # LogEvent.JOB_FINISHED (snakemake.scheduling.job_scheduler)
    created: float
    job_id: int


class _JobErrorRecord(Protocol):  # LogEvent.JOB_ERROR (snakemake.jobs.Job.get_log_error_info)
    jobid: int
    rule_name: str
    log: list[str]
    shellcmd: str | None


class LogHandler(LogHandlerBase):
    def __post_init__(self) -> None:
        settings = self.common_settings
        self.snakemake_handler = snakemake_stream_handler(settings)
        self.compact = not (settings.dryrun or settings.verbose or settings.debug_dag)
        self.names: dict[int, str] = {}  # job id -> "rule wildcards"
        self.started: dict[int, float] = {}
        self.total: int | None = None
        self.done = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            problem = config_file_problem(record)
            if problem:
                print(f"cdrepro: error: {problem}", file=sys.stderr, flush=True)
            elif self.compact:
                self.emit_compact(record)
            else:
                self.snakemake_handler.handle(record)
        except Exception:  # a record of unexpected shape: Snakemake's own words, never nothing
            self.snakemake_handler.handle(record)

    def emit_compact(self, record: logging.LogRecord) -> None:
        event = getattr(record, "event", None)
        own = {
            LogEvent.RUN_INFO: self.run_info,
            LogEvent.JOB_INFO: self.job_started,
            LogEvent.JOB_FINISHED: self.job_finished,
            LogEvent.JOB_ERROR: self.job_failed,
        }
        if event in own:
            own[event](record)
        elif event not in SILENT_EVENTS and not is_narration(record):
            self.snakemake_handler.handle(record)

    def run_info(self, record: logging.LogRecord) -> None:
        stats = dict(getattr(record, "stats", {}))
        self.total = stats.pop("total", None)
        counts = ", ".join(f"{rule} {count}" for rule, count in stats.items())
        self.write(f"Jobs to run: {self.total} ({counts})")

    def job_started(self, logged: logging.LogRecord) -> None:
        record = cast(_JobInfoRecord, logged)  # emit_compact passes it JOB_INFO records only
        values = "-".join(str(value) for _, value in record.wildcards.items())
        name = f"{record.rule_name} {values}".strip()
        self.names[record.jobid] = name
        self.started[record.jobid] = record.created
        if record.log:  # target rules (all, reproduce_tables) run nothing: only their end is shown
            self.write(f"{self.indent()}start  {name}   log: {shown_path(record.log[0])}")

    def job_finished(self, logged: logging.LogRecord) -> None:
        record = cast(_JobFinishedRecord, logged)  # emit_compact passes it JOB_FINISHED records only
        self.done += 1
        name = self.names.get(record.job_id, f"job {record.job_id}")
        took = duration(record.created - self.started.get(record.job_id, record.created))
        self.write(f"{self.counter():<{len(self.indent())}}done   {name} ({took})")

    def job_failed(self, logged: logging.LogRecord) -> None:
        record = cast(_JobErrorRecord, logged)  # emit_compact passes it JOB_ERROR records only
        name = self.names.get(record.jobid, record.rule_name)
        if record.log:
            said = last_line(record.log[0]) or "(its log is empty)"
            self.write(f"{self.indent()}FAILED {name}: {said}   log: {shown_path(record.log[0])}")
        else:
            self.write(f"{self.indent()}FAILED {name} (no log); the command: {record.shellcmd}")

    def counter(self) -> str:
        return f"[{self.done}/{self.total if self.total is not None else '?'}]"

    def indent(self) -> str:
        total = self.total if self.total is not None else 0
        return " " * (len(f"[{total}/{total}]") + 1)

    def write(self, line: str) -> None:
        stream = self.snakemake_handler.stream
        stream.write(line + "\n")
        stream.flush()

    @property
    def writes_to_stream(self) -> bool:
        return True

    @property
    def writes_to_file(self) -> bool:
        return False

    @property
    def has_filter(self) -> bool:
        return True

    @property
    def has_formatter(self) -> bool:
        return True

    @property
    def needs_rulegraph(self) -> bool:
        return False


def snakemake_stream_handler(settings: OutputSettingsLoggerInterface) -> logging.StreamHandler[TextIO]:
    """Snakemake's own terminal handler, as it is without a logger plugin: this plugin passes
    it what it does not print itself (and everything in a dry run)."""
    from snakemake.logging import ColorizingTextHandler, DefaultFilter, DefaultFormatter

    return ColorizingTextHandler(
        nocolor=settings.nocolor,
        stream=sys.stdout if settings.stdout else sys.stderr,
        formatter=DefaultFormatter(settings.quiet, settings.show_failed_logs),
        filter=DefaultFilter(
            settings.quiet, settings.debug_dag, settings.verbose, settings.dryrun, settings.printshellcmds
        ),
    )


def is_narration(record: logging.LogRecord) -> bool:
    message = str(record.msg)
    if getattr(record, "event", None) == LogEvent.ERROR and "CalledProcessError" in message:
        return True  # a job's command failed: its FAILED line says so, with its log
    return message.startswith(NARRATION)


def config_file_problem(record: logging.LogRecord) -> str | None:
    """What is wrong with the params file Snakemake could not read, in one line (Snakemake only
    says that some config file is not valid YAML), or None for any other record."""
    message = str(record.msg)
    if getattr(record, "event", None) != LogEvent.ERROR or not (
        "Config file" in message or "load_configfile" in message
    ):  # a file not found: a traceback
        return None
    from cdrepro.config import ParamsError, read_params_file

    argv = sys.argv[1:]
    for path in configfiles(argv) or ["params.yaml"]:
        try:
            read_params_file(path)  # a missing file, a folder, not UTF-8, not YAML: one line each
        except ParamsError as exc:
            return taken_target(path, argv) or str(exc)
    return None


def taken_target(path: str, argv: list[str]) -> str | None:
    """The line for a target that ``--configfile`` took for a params file: it takes every word
    that follows it (``--configfile f.yaml all``), or None if ``path`` looks meant as one: the
    option's first file, or a name ending in .yaml/.yml/.json."""
    given = configfile_words(argv)
    if path.endswith((".yaml", ".yml", ".json")) or (path, False) not in given or (path, True) in given:
        return None
    first = next(word for word, is_first in given if is_first)
    return (
        f"{path} was read as a params file, as it follows --configfile (which takes several files); "
        f"if it is a target, put it before --configfile (snakemake {path} --configfile {first}) or "
        f"end the files with -- (snakemake --configfile {first} -- {path})"
    )


def configfiles(argv: list[str]) -> list[str]:
    """The files given with --configfile/--configfiles (several may follow one option)."""
    return [word for word, _ in configfile_words(argv)]


def configfile_words(argv: list[str]) -> list[tuple[str, bool]]:
    """Each word that Snakemake reads as a config file, and whether it is its option's first."""
    words: list[tuple[str, bool]] = []
    taking = None  # after the option: None (not taking), "first", then "more"
    for arg in argv:
        option, _, value = arg.partition("=")
        if option in ("--configfile", "--configfiles"):
            words += [(value, True)] if value else []
            taking = None if value else "first"
        elif arg.startswith("-"):  # `--` too: what follows it is a target
            taking = None
        elif taking:
            words.append((arg, taking == "first"))
            taking = "more"
    return words


def shown_path(path: str) -> str:
    """A path relative to the working folder when inside it (shorter to read)."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def last_line(path: str, tail_bytes: int = 4096) -> str:
    """The last non-empty line of a log: cdrepro's one-line error, or a traceback's last line."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - tail_bytes))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
