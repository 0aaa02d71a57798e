"""The `tuneline` command: parses arguments, runs flows, prints results, maps errors to exit codes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from tasks.core import collector

# Quiet, offline-friendly defaults before Prefect and transformers are imported.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# Prefect's 20 s wait for its temporary server is too short on a busy machine (tasks.services.prefect_api).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

app = typer.Typer(
    name="tuneline",
    help="Declarative fine-tuning recipes run as Prefect flows and registered in MLflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Declarative fine-tuning recipes run as Prefect flows and registered in MLflow."""
    import warnings

    # Renames inside transformers 5 that trl still calls by the old name; nothing a user can act on.
    warnings.filterwarnings("ignore", message=".*is deprecated and will be removed in v6")
    sys.excepthook = _redacting_excepthook


out = Console()


class _HideUserErrorTracebacks(logging.Filter):
    """Prefect logs a task's or flow's exception with its traceback; a user mistake gets none."""

    def filter(self, record: logging.LogRecord) -> bool:
        from tasks.core.errors import TunelineError

        if record.exc_info and isinstance(record.exc_info[1], TunelineError):
            record.exc_info = None
            record.exc_text = None
        return True


def _writable_home() -> None:
    """A read-only TUNELINE_HOME is one line now, not a traceback from the first write."""
    from tasks.core import settings

    settings.home()


def _start_prefect_api() -> None:
    """Begin starting the temporary Prefect server now (when one will be needed), so that it
    comes up while the command loads what it needs; `_prefect_api` waits for it."""
    from tasks.services.prefect_api import start_in_background

    start_in_background()


def _prefect_api() -> None:
    """The Prefect API the next flow needs: PREFECT_API_URL answering, or a temporary server."""
    from tasks.services.prefect_api import ensure_api

    ensure_api()


def _install_log_filter() -> None:
    from tasks.core.secrets import install_log_redaction

    hide = _HideUserErrorTracebacks()
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", ""):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(hide)
    install_log_redaction()


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a `TunelineError` into one clear block on stderr and its exit code."""
    from tasks.core.errors import TunelineError

    try:
        yield
    except TunelineError as exc:
        from tasks.core.secrets import redact

        err.print(
            f"[bold red]error:[/] {redact(exc.message)}",
            highlight=False,
            markup=True,
            soft_wrap=True,
        )
        raise typer.Exit(exc.exit_code) from None


INTERRUPT_GRACE_S = 5.0


@contextlib.contextmanager
def runs_end_on_interrupt() -> Iterator[None]:
    """Ctrl-C while a recipe runs ends its MLflow run KILLED (a failure: FAILED) and exits 1
    within seconds. After Ctrl-C, Prefect reports the crash to its API server; when that does not
    answer, Prefect retries for minutes: a watchdog gives it `INTERRUPT_GRACE_S`, then leaves.
    Checkpoints are complete or ignored, so the next run resumes from the last.

    The `KeyboardInterrupt` is raised wherever the main thread happens to be; when that is a
    finaliser (`__del__`, a weakref callback), Python cannot raise it out and prints it as
    "Exception ignored" instead. Such a lost interrupt is not shown and is raised again as soon
    as the finaliser returns, so Ctrl-C stops the run wherever it lands."""
    import _thread
    import signal
    import threading

    from tasks.services import tracking

    lock = threading.RLock()  # a second Ctrl-C may land while the first is being handled
    said: list[bool] = []
    swallowed = threading.Event()  # a finaliser took the interrupt
    lost: list[bool] = []  # ... and it is on its way again
    reached = threading.Event()  # the interrupt got out to this block

    def end_runs() -> None:
        with lock:
            if said:
                return
            said.append(True)
        ended = tracking.end_open_runs("KILLED")
        runs = f"; MLflow run {', '.join(ended)} marked KILLED" if ended else ""
        err.print(
            f"[bold red]interrupted[/]{runs}. Run the recipe again to resume from its last "
            "checkpoint.",
            highlight=False,
            soft_wrap=True,
        )

    def leave() -> None:
        end_runs()
        with contextlib.suppress(Exception):
            from tasks.services.prefect_api import stop_background_start

            stop_background_start()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    def watchdog() -> None:
        import time

        deadline = time.monotonic() + INTERRUPT_GRACE_S
        while (left := deadline - time.monotonic()) > 0:
            if swallowed.wait(left):  # a finaliser took it: raise it again once that is over
                swallowed.clear()
                lost.append(True)
                _thread.interrupt_main()
        leave()

    def on_interrupt(signum: int, frame: Any) -> None:
        if lost:
            lost.clear()
            raise KeyboardInterrupt  # the same Ctrl-C again, out of the finaliser now
        if said or any(t.name == "tuneline-interrupt" for t in threading.enumerate()):
            leave()  # a second Ctrl-C: leave now
        threading.Thread(target=watchdog, name="tuneline-interrupt", daemon=True).start()
        raise KeyboardInterrupt

    hook = sys.unraisablehook

    def on_unraisable(unraisable: Any) -> None:
        interrupted = any(t.name == "tuneline-interrupt" for t in threading.enumerate())
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and interrupted:
            if not reached.is_set():
                swallowed.set()  # the watchdog raises it again, from outside the finaliser
            return
        hook(unraisable)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    sys.unraisablehook = on_unraisable
    try:
        yield
    except KeyboardInterrupt:
        reached.set()
        end_runs()
        raise typer.Exit(1) from None
    except Exception:
        tracking.end_open_runs("FAILED")
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = hook


def _metrics_table(
    metrics: dict[str, float],
    base: dict[str, float],
    baselines: dict[str, dict[str, float]] | None = None,
) -> Table:
    baselines = baselines or {}
    table = Table(title="held-out evaluation")
    table.add_column("metric")
    table.add_column("base model", justify="right")
    for name in baselines:
        table.add_column(name, justify="right")
    table.add_column("fine-tuned", justify="right")
    table.add_column("change", justify="right")
    for name, value in metrics.items():
        before = base.get(name)
        others = [baselines[b].get(name) for b in baselines]
        table.add_row(
            name,
            "-" if before is None else f"{before:.4f}",
            *["-" if v is None else f"{v:.4f}" for v in others],
            f"{value:.4f}",
            "-" if before is None else f"{value - before:+.4f}",
        )
    return table


def _finetune(parsed: Any) -> Any:
    from flows.finetune import finetune, unchanged_outcome

    _install_log_filter()
    outcome: Any = None
    if not os.environ.get("PREFECT_API_URL"):
        # No server to show the run on: a retrain with nothing new is answered without
        # starting a temporary Prefect server (seconds instead of ten).
        outcome = unchanged_outcome(parsed)
        if outcome is not None:
            from tasks.services.prefect_api import stop_background_start

            stop_background_start()
    if outcome is None:
        from flows.ahead import caches_ahead

        _prefect_api()
        # forked before the flow starts Prefect's threads
        with caches_ahead(parsed), runs_end_on_interrupt():
            collector.resume()
            outcome = finetune(parsed)
    return outcome


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a recipe key, e.g. --set train.epochs=1 (repeatable)."
        ),
    ] = None,
    json_: Annotated[
        bool, typer.Option("--json", help="Print the outcome as JSON on the last line of stdout.")
    ] = False,
) -> None:
    """Run a recipe end to end: validate, tokenize, train, evaluate, register.

    Exit codes: 0 done, 2 data contract failed, 3 trained but not promoted, 1 other errors.
    """
    with user_errors(), collector.paused():  # until the flow starts: imports, nothing to collect
        from flows.recipe import load_recipe
        from tasks.data.load import check_sources

        parsed = load_recipe(recipe, set_ or [])
        check_sources(parsed.data)
        _writable_home()
        _start_prefect_api()
        outcome = _finetune(parsed)
    _report_outcome(outcome)
    if json_:
        sys.stdout.write(outcome.to_json() + "\n")
        sys.stdout.flush()
    raise typer.Exit(outcome.exit_code)


@app.command()
def plan(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a recipe key, e.g. --set train.epochs=1 (repeatable)."
        ),
    ] = None,
    json_: Annotated[
        bool, typer.Option("--json", help="Print the plan as JSON on the last line of stdout.")
    ] = False,
) -> None:
    """Show what a run of the recipe will do and cost, without training it: rows, tokens,
    optimiser steps, trainable parameters, time and peak memory measured from a few warm-up
    steps on this machine, and what the promotion gate will need. Nothing is registered.

    Exit codes: 0 planned, 1 errors (a bad recipe, data or model).
    """
    with user_errors():
        from flows.recipe import load_recipe
        from tasks.data.load import check_sources

        parsed = load_recipe(recipe, set_ or [])
        check_sources(parsed.data)
        _writable_home()
        from flows.plan import plan_recipe
        from tasks.planning.plan import plan_lines

        _install_log_filter()
        planned = plan_recipe(parsed)
    table = Table(
        title=f"plan for {planned.name} ({planned.method}): nothing trained or registered",
        show_header=False,
    )
    table.add_column("what")
    table.add_column("plan")
    for label, text in plan_lines(planned):
        table.add_row(label, text)
    out.print(table)
    if json_:
        sys.stdout.write(planned.to_json() + "\n")
        sys.stdout.flush()


@app.command()
def validate(
    recipe: Annotated[
        Path | None, typer.Argument(help="Recipe YAML file (its data and contract).")
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", help="Data to validate without a recipe.")
    ] = None,
    eval_: Annotated[str | None, typer.Option("--eval", help="Held-out data, with --data.")] = None,
    data_format: Annotated[
        str, typer.Option("--format", help="Data format, with --data.")
    ] = "classification",
    contract: Annotated[
        str | None,
        typer.Option("--contract", help="Contract name or YAML path (default: by format)."),
    ] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the report as JSON last.")] = False,
) -> None:
    """Check data against its data contract, without training. Exit 2 when an error check fails."""
    with user_errors():
        from data_contracts import ContractSpec
        from flows.recipe import load_recipe
        from tasks.core.errors import ContractFailed, RecipeError
        from tasks.data.load import DataSpec, check_sources

        if recipe is None and data is None:
            raise RecipeError("validate: name a RECIPE, or --data PATH (with --format, --contract)")
        kwargs: dict[str, Any]
        if recipe is not None:
            parsed = load_recipe(recipe, set_ or [])
            spec = parsed.contract if contract is None else ContractSpec(use=contract)
            kwargs = {
                "data": parsed.data,
                "contract": spec,
                "base_dir": parsed.base_dir,
                "method": parsed.method.name,
                "base_model": parsed.base_model,
                "max_length": parsed.tokenize.max_length,
                "seed": parsed.train.seed,
                "gate": parsed.registry.gate if parsed.registry.enabled else None,
                "generation_rows": parsed.evaluate.generation_rows,
            }
        else:
            try:
                data_spec = DataSpec(train=str(data), eval=eval_, format=data_format)  # type: ignore[arg-type]
            except ValueError as exc:
                raise RecipeError(f"--format: {exc.errors()[0]['msg']}") from None  # type: ignore[attr-defined]
            kwargs = {
                "data": data_spec,
                "contract": ContractSpec(use=contract),
                "base_dir": str(Path.cwd()),
            }
        check_sources(kwargs["data"])
        _writable_home()
        _start_prefect_api()
        from flows.validate import validate as validate_flow

        _install_log_filter()
        _prefect_api()
        try:
            result: Any = validate_flow(**kwargs)
        except ContractFailed as failed:
            if failed.report is not None:
                _print_report(failed.report.report_json, json_)
            raise
    _print_report(result.report_json, json_)


def _print_report(path: str, as_json: bool) -> None:
    from tasks.validation.cache import read_report

    report = read_report(Path(path).parent)
    table = Table(
        title=f"data contract '{report.contract}': {'passed' if report.passed else 'FAILED'}"
    )
    for column in ("check", "severity", "result", "observed", "threshold", "detail"):
        table.add_column(column)
    for check in report.checks:
        result = "pass" if check.passed else ("FAIL" if check.severity == "error" else "warn")
        observed = check.observed
        table.add_row(
            check.name,
            check.severity,
            result,
            f"{observed:.4g}" if isinstance(observed, float) else str(observed),
            str(check.threshold if check.threshold is not None else ""),
            check.message,
        )
    out.print(table)
    out.print(f"Report: {Path(path).with_suffix('.html')}", highlight=False)
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), default=str) + "\n")
        sys.stdout.flush()


@app.command()
def compare(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    methods: Annotated[
        str,
        typer.Option(
            "--methods",
            help="Comma-separated methods, e.g. probe,last_layers,full,lora. Default: every "
            "method that trains the recipe's task and data format.",
        ),
    ] = "",
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a recipe key (repeatable).")
    ] = None,
    json_: Annotated[
        bool, typer.Option("--json", help="Print the table as JSON on the last line of stdout.")
    ] = False,
) -> None:
    """Train several methods on the same data and tokenization; print a comparison table."""
    with user_errors():
        from flows.compare import compare as compare_flow
        from flows.compare import fitting_methods, method_settings, table_rows
        from flows.recipe import load_recipe
        from tasks.data.load import check_sources

        parsed = load_recipe(recipe, set_ or [])
        check_sources(parsed.data)
        chosen = [m.strip() for m in methods.split(",") if m.strip()] or fitting_methods(parsed)
        for name in chosen:
            method_settings(parsed, name)  # an unknown or unfitting method fails here, clearly

        _writable_home()
        _start_prefect_api()
        _install_log_filter()
        _prefect_api()
        result: Any = compare_flow(parsed, chosen)
    rows = table_rows(result.rows, result.base_metrics)
    table = Table(title=f"{parsed.name}: methods compared on the held-out split")
    columns = list(dict.fromkeys(k for row in rows for k in row))
    for column in columns:
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in rows:
        table.add_row(*[str(row.get(c, "")) for c in columns])
    out.print(table)
    out.print(f"MLflow parent run: {result.mlflow_run_id}", highlight=False)
    if json_:
        sys.stdout.write(result.to_json() + "\n")
        sys.stdout.flush()


@app.command()
def serve(
    recipes: Annotated[
        list[Path] | None, typer.Argument(help="Recipe files (default: every shipped recipe).")
    ] = None,
    watch_interval: Annotated[
        float, typer.Option("--watch-interval", help="Seconds between looks at the curated data.")
    ] = 30.0,
) -> None:
    """Serve the recipes as Prefect deployments (schedules, data-landed triggers) against the
    server in PREFECT_API_URL, and watch their data for new files. Runs until interrupted."""
    with user_errors():
        from deployments.build import serve as serve_deployments

        _writable_home()
        _install_log_filter()
        serve_deployments(list(recipes or []), watch_interval)


@app.command()
def promote(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version to make champion.")],
) -> None:
    """Make a version the champion (the current one keeps `previous-champion`)."""
    with user_errors():
        from tasks.registry.aliases import promote as promote_version

        out.print(promote_version(name, version), highlight=False)


@app.command()
def approve(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="The version awaiting approval (challenger).")],
    note: Annotated[str, typer.Option("--note", help="Why; kept on the version.")] = "",
    by: Annotated[
        str | None, typer.Option("--by", help="Who answers (default: your login).")
    ] = None,
) -> None:
    """Approve a version awaiting approval: it becomes champion (the current one keeps
    `previous-champion`), and the run waiting for the answer resumes."""
    with user_errors():
        from tasks.registry.approval import answer_from_terminal

        for line in answer_from_terminal(name, version, True, note, by):
            out.print(line, highlight=False, soft_wrap=True)


@app.command()
def reject(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="The version awaiting approval (challenger).")],
    note: Annotated[str, typer.Option("--note", help="Why (required); kept on the version.")] = "",
    by: Annotated[
        str | None, typer.Option("--by", help="Who answers (default: your login).")
    ] = None,
) -> None:
    """Reject a version awaiting approval: champion stays, the version is tagged rejected with
    the note, and the run waiting for the answer resumes."""
    with user_errors():
        from tasks.registry.approval import answer_from_terminal

        for line in answer_from_terminal(name, version, False, note, by):
            out.print(line, highlight=False, soft_wrap=True)


@app.command()
def rollback(name: Annotated[str, typer.Argument(help="Registered model name.")]) -> None:
    """Give `champion` back to the version holding `previous-champion`."""
    with user_errors():
        from tasks.registry.aliases import rollback as rollback_model

        out.print(rollback_model(name), highlight=False)


@app.command()
def models(
    name: Annotated[
        str | None, typer.Argument(help="Registered model name (default: all).")
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Registered versions with aliases, key metrics and data fingerprints."""
    with user_errors():
        from tasks.registry.aliases import list_versions

        rows = list_versions(name)
    if json_:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    table = Table(title="MLflow registry")
    for column in ("name", "version", "aliases", "method", "metrics", "data", "promotion"):
        table.add_column(column)
    for row in rows:
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(row["metrics"].items()))
        table.add_row(
            row["name"],
            row["version"],
            ", ".join(row["aliases"]),
            row["method"],
            metrics,
            row["data_fingerprint"][:12],
            row["promotion"],
        )
    out.print(table)


@app.command()
def predict(
    model_uri: Annotated[
        str, typer.Argument(help="MLflow model URI, e.g. models:/sentiment-minilm-lora@champion.")
    ],
    texts: Annotated[
        list[str] | None,
        typer.Argument(
            help="Texts to classify, requests to answer or texts to score; stdin when absent."
        ),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print predictions as JSON.")] = False,
) -> None:
    """Load any registered version and print its predictions, one per input line."""
    inputs = list(texts or []) or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    with user_errors():
        from tasks.models.serving import load_registered

        model = load_registered(model_uri)
    predictions = list(model.predict(inputs)) if inputs else []
    if json_:
        sys.stdout.write(json.dumps(predictions) + "\n")
        return
    for prediction, text in zip(predictions, inputs, strict=True):
        sys.stdout.write(f"{prediction}\t{text}\n")


@app.command()
def deploy(
    recipes: Annotated[
        list[Path] | None, typer.Argument(help="Recipe files (default: every shipped recipe).")
    ] = None,
    pool: Annotated[str, typer.Option(help="Prefect work pool whose workers run the recipes.")] = (
        "tuneline"
    ),
    image: Annotated[
        str | None,
        typer.Option(help="Image for a docker or kubernetes pool (none: run from this folder)."),
    ] = None,
    job_variable: Annotated[
        list[str] | None,
        typer.Option(
            "--job-variable",
            help="A pool job variable as key=value (YAML value), e.g. "
            "--job-variable 'env={CUDA_VISIBLE_DEVICES: \"0\"}' (repeatable).",
        ),
    ] = None,
    watch_interval: Annotated[
        float,
        typer.Option(
            min=5.0,
            help="Seconds between looks at the curated data of recipes that retrain on new data "
            "(the `watch` flow, deployed to the pool beside them).",
        ),
    ] = 60.0,
) -> None:
    """Register recipes as deployments of a Prefect work pool (PREFECT_API_URL): schedules and
    data-landed triggers as with `serve`, runs carried out by the pool's workers. Recipes with
    `deploy.on_new_data` also get the `watch` flow deployed to the pool, which looks for new data
    every `--watch-interval` seconds and starts their runs."""
    with user_errors():
        from deployments.build import WATCHER, deploy_to_pool
        from flows.recipe import parse_value
        from tasks.core.errors import RecipeError

        variables: dict[str, Any] = {}
        for item in job_variable or []:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise RecipeError(f"--job-variable '{item}': expected key=value")
            variables[key.strip()] = parse_value(value)
        ids, watcher = deploy_to_pool(
            list(recipes or []), pool, image, variables, watch_interval=watch_interval
        )
    out.print(f"{len(ids)} deployment(s) in work pool '{pool}'.", highlight=False)
    if watcher is not None:
        out.print(
            f"New curated data is looked for every {watch_interval:g} s by deployment "
            f"watch/{WATCHER}.",
            highlight=False,
        )
    out.print("Start a worker with:")
    out.print(f"  prefect worker start --pool {pool}", highlight=False)


@app.command()
def register(
    run_folder: Annotated[
        Path,
        typer.Argument(
            help="The run folder a failed registration named (holds registration.json)."
        ),
    ],
    json_: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Register a trained run whose registration could not reach MLflow (idempotent: a run
    already registered registers nothing again), applying the recipe's gate as the run would."""
    with user_errors():
        from flows.finetune import register_kept

        registered = register_kept(str(run_folder))
    if json_:  # the shape of `tuneline run --json`
        sys.stdout.write(registered.to_json() + "\n")
        raise typer.Exit(registered.exit_code)
    name, version = registered.model_name, registered.model_version
    if registered.status == "unchanged":
        out.print(f"{name} version {version} already registered.")
    else:
        role = {"promoted": "champion", "awaiting_approval": "challenger, awaiting approval"}
        out.print(
            f"Registered {name} version {version} ({role.get(registered.status, 'not promoted')})."
        )
    for reason in registered.reasons:
        out.print(f"  - {reason}", highlight=False)
    raise typer.Exit(registered.exit_code)


@app.command("tiny-model")
def tiny_model(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the model into.")],
    corpus: Annotated[
        list[Path] | None,
        typer.Option(help="Text files to train the tokenizer on (default: tuneline's own)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the weight initialisation.")] = 0,
) -> None:
    """Build a tiny causal LM (2 layers) and a tokenizer trained on local text, for smoke runs
    and tests. Recipes can also name `tiny:causal-lm`, built on first use."""
    with user_errors():
        from tasks.core.errors import ModelError
        from tasks.models import tiny

        texts = tiny.default_corpus()
        if corpus:
            try:
                texts = [p.read_text(encoding="utf-8") for p in corpus]
            except (OSError, UnicodeDecodeError) as exc:
                raise ModelError(f"--corpus: cannot read ({exc})") from None
        if out_dir.exists() and any(out_dir.iterdir()):
            raise ModelError(f"--out {out_dir}: folder exists and is not empty; name a new one")
        folder = tiny.build_tiny_causal_lm(out_dir, texts, seed)
    out.print(f"Tiny causal LM written to {folder}; name it as base_model.path in a recipe.")


def _report_outcome(outcome: Any) -> None:
    if outcome.init and outcome.status != "unchanged":  # where training started
        out.print(outcome.init, highlight=False, soft_wrap=True)
    if outcome.metrics:
        out.print(_metrics_table(outcome.metrics, outcome.base_metrics, outcome.baselines))
    if outcome.status == "unchanged":
        out.print(
            f"{outcome.model_name} version {outcome.model_version} already has this recipe, "
            "data and code: nothing trained."
        )
        for reason in outcome.reasons:
            if not reason.startswith("same recipe, data and code"):
                out.print(f"  - {reason}", highlight=False)
    elif outcome.model_version:
        role = "champion" if outcome.promoted else "not promoted"
        if outcome.status == "awaiting_approval":
            role = "challenger, awaiting approval"
        out.print(f"Registered {outcome.model_name} version {outcome.model_version} ({role}).")
        for reason in outcome.reasons:
            out.print(f"  - {reason}", highlight=False)
        if outcome.status == "awaiting_approval":
            answer = f"{outcome.model_name} {outcome.model_version} --note '...'"
            out.print(f"Answer with: tuneline approve {answer}  |  tuneline reject {answer}")
    if outcome.mlflow_run_id:
        out.print(f"MLflow run: {outcome.mlflow_run_id}", highlight=False)


def _redacting_excepthook(kind: Any, value: Any, traceback: Any) -> None:
    """A bug's traceback, with any secret it quotes (a tracking URI's password) masked."""
    import traceback as tb

    from tasks.core.secrets import redact

    sys.stderr.write(redact("".join(tb.format_exception(kind, value, traceback))))


def main() -> NoReturn:
    """The `tuneline` command (`python -m tuneline` too). Once the work is done it ends without the
    interpreter's teardown of every module it loaded, seconds of freeing objects nobody will use
    again once torch, transformers, MLflow and Great Expectations are loaded: what registered to
    run at exit runs as at any exit (Prefect's hooks, non-daemon threads, the temporary server's
    stop, logging's flush), the output is flushed, then the process ends with the command's exit
    status. An exception the command did not handle ends it the usual way, traceback and all.
    Commands that end when their work does collect garbage as `tasks.core.collector` says;
    `serve`, which runs until stopped, keeps Python's defaults."""
    if sys.argv[1:2] != ["serve"]:
        collector.keep_survivors()
    try:
        app()
    except SystemExit as done:
        _exit_without_teardown(done.code)
    _exit_without_teardown(0)


def _exit_without_teardown(code: Any) -> NoReturn:
    import atexit
    import threading

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): printed, status 1, as the interpreter does
        sys.stderr.write(f"{code}\n")
        status = 1
    # what the interpreter runs first at exit: threading's exit hooks (Prefect drains its log and
    # event workers there), then it joins the threads that are not daemons
    getattr(threading, "_shutdown")()  # noqa: B009 - private; not in the type stubs
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
