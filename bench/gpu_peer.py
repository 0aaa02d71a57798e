"""tuneline against LLaMA-Factory on a CUDA GPU, on a model of real size:

    python bench/gpu_peer.py [--tuneline-site DIR] [--peer-site DIR] [--steps 100] [--repeats 2]
        [--part sft,dpo] [--out FILE]
    python bench/gpu_peer.py --cpu-smoke --peer-python VENV/bin/python --repeats 1   # on a CPU

bench/peer.py's comparison (its data, configurations and loss check, imported from it) on a
randomly initialised Llama of 0.5B parameters (hidden 1536, 18 layers, intermediate 4096, 12
heads; the tiny model's tokenizer, so no hub), saved once in bf16 as real checkpoints are, trained
in bf16 mixed precision by both tools. `--cpu-smoke` makes it a small fp32 model and 10 steps, to
check the whole path on a CPU, where the losses must agree exactly as in peer.py.

Each tool trains in a fresh process with its own libraries: tuneline's pins (transformers 5.23,
trl 1.16, peft 0.21, datasets 5.2), LLaMA-Factory 0.9.5's (transformers 5.6, trl 0.24, peft 0.18,
datasets 4.0). A stack is a folder first on the process's PYTHONPATH, shadowing the interpreter's
own packages (`--tuneline-site`, `--peer-site`: `pip install --target`), or another interpreter
(`--tuneline-python`, `--peer-python`: a venv's). Each process records the versions and files of
the libraries it imported, so the shadowing is checked, not assumed.

On a GPU machine whose Python already has torch, transformers, accelerate and the scientific
stack but nothing else, the two sites are `pip install --no-deps --target DIR` of these wheels
(downloaded elsewhere with `pip download --no-deps --only-binary=:all: --python-version 3.12
--platform manylinux2014_x86_64 ...`, about 41 MB in all):
- tuneline: transformers==5.23.0 trl==1.16.0 peft==0.21.2 datasets==5.2.0 tokenizers==0.23.3
  pydantic==2.14.3 pydantic-core==2.50.4 annotated-types typing-inspection typing-extensions
  dill==0.4.1 multiprocess==0.70.19 orjson fsspec==2026.9.0 regex;
- LLaMA-Factory: llamafactory==0.9.5 transformers==5.6.0 trl==0.24.0 peft==0.18.1
  datasets==4.0.0 accelerate==1.11.0 tokenizers==0.22.2 omegaconf dill==0.3.8
  multiprocess==0.70.16 fsspec==2025.3.0 regex (what its venv resolves; `train` imports no
  gradio, fire, tyro or modelscope).

tuneline's side calls the plain functions the finetune flow's tasks call, without Prefect or
MLflow: `tasks.data.load.load`, `tasks.tokenization.encoding.tokenize`, `tasks.training.launch.train`
(in one process, `train_causal`). Its recipe is the one peer.py writes, with `mixed_precision:
auto`; flows/recipe.py imports Prefect, so each section is validated by the model the recipe schema
uses for it (BaseModelSpec, DataSpec, TokenizeSpec, the method's config, TrainSpec). The peer runs
`llamafactory-cli train cfg.yaml` through its entry point `llamafactory.cli:main` (a `--target`
install has no console scripts) with peer.py's configuration and `bf16: true`, with gradient
checkpointing on (its default) and off; tuneline trains with it off (its default).

Recorded per run: the trainer's training time (tuneline's without its in-training held-out
evaluations; the peer's `train_runtime`), non-padding tokens/s (the peer's from tuneline's count,
as in peer.py), first and final training loss, the process's wall time and peak RSS, peak GPU
memory (the CUDA allocator's peak, read as each process exits), and the largest relative
difference between the logged losses: bf16 rounds differently in the two stacks, so they must
agree within `--bf16-tolerance`. Tools alternate order between repeats; ratios are tuneline /
LLaMA-Factory. JSON goes to `--out` (default `$OUT/gpu_peer.json` when OUT is set, else
bench/results/), rewritten after every comparison, with each process's log beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = (
    "torch", "transformers", "trl", "peft", "datasets", "accelerate", "tokenizers", "pandas", "pyarrow"
)  # fmt: skip
SIZES = {
    "gpu": {"hidden_size": 1536, "intermediate_size": 4096, "num_hidden_layers": 18, "heads": 12},
    "cpu-smoke": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "heads": 4},
}


# -- inside each tool's process -------------------------------------------------------------------


def where(module_file: str | None) -> str:
    """Which stack a module came from: the PYTHONPATH folder that holds it, or the interpreter's
    own packages (named as such, not by the machine's path)."""
    for folder in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        prefix = folder.rstrip("/") + "/"
        # a venv inside the repository is not the repository's own code
        inside = module_file and module_file.startswith(prefix)
        if folder and inside and "site-packages" not in module_file[len(prefix) :]:
            return folder
    return "the interpreter's own packages"


def process_report(path: str, figures: dict[str, Any]) -> None:
    """`figures` and what only the process knows: the CUDA allocator's peak and the libraries it
    imported (version and file)."""
    import torch

    cuda = torch.cuda.is_available()
    figures["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    figures["device"] = torch.cuda.get_device_name(0) if cuda else "cpu"
    figures["libraries"] = {
        name: [getattr(sys.modules[name], "__version__", "?"), where(sys.modules[name].__file__)]
        for name in LIBRARIES
        if name in sys.modules
    }
    Path(path).write_text(json.dumps(figures, default=str))


@contextlib.contextmanager
def profiled(report: str) -> Any:
    """With `--profile`, the block under cProfile, its statistics beside the report (`.prof`)."""
    if not os.environ.get("BENCH_PROFILE"):
        yield
        return
    import cProfile

    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        profile.dump_stats(str(Path(report).with_suffix(".prof")))


def tuneline_child(job_file: str) -> None:
    from dataclasses import asdict

    from tasks.data.load import DataSpec, load
    from tasks.models.base import BaseModelSpec
    from tasks.tokenization.encoding import TokenizeSpec, tokenize
    from tasks.training import METHODS, TrainSpec
    from tasks.training.launch import train

    job = json.loads(Path(job_file).read_text())
    raw = job["recipe"]
    base = BaseModelSpec.model_validate(raw["base_model"])
    tokenize_spec = TokenizeSpec.model_validate(raw["tokenize"])
    method = METHODS[raw["method"]["name"]].config.model_validate(raw["method"])
    spec = TrainSpec.model_validate(raw["train"])
    # As the flow chains its tasks: load_data -> tokenize_dataset -> train_model.
    data = load(DataSpec.model_validate(raw["data"]), spec.seed)
    tokenized = tokenize(data, base, tokenize_spec, method)
    out = Path(job["out_dir"])
    with profiled(job["report"]):
        result = train(
            tokenized, base, method, spec, out, out / "checkpoints", labels=list(data.labels),
            data_format=data.format, max_length=tokenize_spec.max_length, init=None,
        )  # fmt: skip
    history = json.loads((Path(result.path) / "history.json").read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    process_report(job["report"], {**asdict(result), "losses": losses})


def peer_child(arguments: list[str]) -> None:
    """`llamafactory-cli ARGS` as its console script runs it, then the process's report."""
    from llamafactory.cli import main

    sys.argv = ["llamafactory-cli", *arguments]
    try:
        with profiled(os.environ["BENCH_REPORT"]):
            main()
    finally:
        process_report(os.environ["BENCH_REPORT"], {})


# -- the harness ----------------------------------------------------------------------------------


def build_model(work: Path, size: str) -> tuple[Path, int]:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tasks.models.tiny import build_tiny_causal_lm, default_corpus

    tokenizer = AutoTokenizer.from_pretrained(
        str(build_tiny_causal_lm(work / "tiny", default_corpus()))
    )
    shape: dict[str, Any] = dict(SIZES[size])
    heads = shape.pop("heads")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        **shape,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)  # on the CPU: this process holds no CUDA context
    if size == "gpu":
        model = model.to(torch.bfloat16)
    target = work / "model"
    model.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    return target, sum(p.numel() for p in model.parameters())


def child_env(paths: list[Any], work: Path, profile: bool, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PREFECT_API_URL")}
    env.update(
        PYTHONPATH=os.pathsep.join(str(p) for p in paths if p),
        PYTHONNOUSERSITE="1",  # nothing between a stack and its interpreter
        HF_HOME=str(work / "hf-home"),  # the datasets and hub caches: this run's own
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        **extra,
    )
    if profile:
        env["BENCH_PROFILE"] = "1"
    return env


def finished(outside: dict[str, Any], report: Path, log: Path, what: str) -> dict[str, Any] | None:
    """The process's figures, or None (with the end of its log printed) when it failed: one
    failing configuration must not cost the others their time on the machine."""
    outside.pop("stdout", None)
    if outside["rc"] == 0 and report.is_file():
        return {**outside, **json.loads(report.read_text())}
    tail = log.read_text(errors="replace").splitlines()[-25:]
    print(f"FAILED {what} (exit {outside['rc']}); end of {log}:\n" + "\n".join(tail), flush=True)
    return None


def run_tuneline(o: Any, peer: Any, work: Path, part: str, tag: str) -> dict[str, Any] | None:
    import yaml

    raw = yaml.safe_load(peer.tuneline_recipe(work, o.model, o.files, part, o.steps).read_text())
    raw["train"]["mixed_precision"] = "auto"  # bf16 on a GPU that has it; ignored on a CPU
    report = o.logs / f"tuneline-{tag}.json"
    job = work / f"job-{tag}.json"
    job.write_text(json.dumps({"recipe": raw, "out_dir": str(work / tag), "report": str(report)}))
    # A fresh home, as in peer.py: nothing cached by an earlier run (data, tokenization).
    home = {"TUNELINE_HOME": str(work / f"home-{tag}"), "TUNELINE_CACHE_DIR": str(work / "cache")}
    env = child_env([o.tuneline_site, ROOT], work, o.profile, **home)
    log = o.logs / f"tuneline-{tag}.log"
    command = [o.tuneline_python, __file__, "--tuneline-child", str(job)]
    r = finished(peer.timed(command, env, log), report, log, f"tuneline {tag}")
    if r is None:
        return None
    r["peak_gpu_training_mb"] = r["extra"].get("peak_gpu_mb")  # tuneline's own, training only
    return {
        **r,
        **peer.step_figures(r),
        "first_loss": r["losses"][0] if r["losses"] else None,
        "final_loss": r["train_loss"],
    }


def run_peer(o: Any, peer: Any, work: Path, part: str, gc: bool, tag: str) -> dict | None:
    config = peer.peer_config(work, o.model, o.files, part, o.steps, gc, bf16=not o.cpu_smoke)
    report = o.logs / f"peer-{tag}.json"
    # The empty torchaudio first, as in peer.py (text training never uses it).
    env = child_env(
        [peer.torchaudio_stub(work), o.peer_site], work, o.profile,
        DISABLE_VERSION_CHECK="1", BENCH_REPORT=str(report),
    )  # fmt: skip
    log = o.logs / f"peer-{tag}.log"
    command = [o.peer_python, __file__, "--peer-child", "train", str(config)]
    r = finished(peer.timed(command, env, log), report, log, f"llamafactory {tag}")
    if r is None:
        return None
    return {**r, **peer.peer_figures(config)}


def compare(o: Any, peer: Any, ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """The peer's tokens/s from tuneline's count (same batches, same tokens), the loss agreement,
    the ratios."""
    theirs["non_padding_tokens_per_second"] = ours["non_padding_tokens"] / theirs["train_s"]
    pairs = [*zip(ours["losses"], theirs["losses"], strict=False)]
    pairs.append((ours["final_loss"], theirs["final_loss"]))
    worst = max(abs(a - b) / max(1.0, abs(b)) for a, b in pairs)
    theirs["max_relative_loss_difference"] = worst
    if o.cpu_smoke:  # fp32 on both sides: peer.py's exact check
        theirs["same_work"] = peer.same_work(ours, theirs)
    else:
        same = len(ours["losses"]) == len(theirs["losses"]) > 0
        theirs["same_work"] = same and worst <= o.bf16_tolerance
    keys = ("train_s", "non_padding_tokens_per_second", "wall_s", "peak_gpu_mb", "peak_rss_mb")
    return {k: ours[k] / theirs[k] if ours.get(k) and theirs.get(k) else None for k in keys}


ROWS = (
    ("train_s", "{:.2f} s"),
    ("non_padding_tokens_per_second", "{:,.0f}"),
    ("first_loss", "{:.4f}"),
    ("final_loss", "{:.4f}"),
    ("wall_s", "{:.1f} s"),
    ("peak_gpu_mb", "{:,.0f} MB"),
    ("peak_gpu_training_mb", "{:,.0f} MB"),
    ("peak_rss_mb", "{:,.0f} MB"),
)


def table(part: str, columns: dict[str, dict[str, Any]], ratios: dict[str, Any]) -> str:
    out = [f"{part}: " + " | ".join(columns)]
    for key, fmt in ROWS:
        cells = [fmt.format(c[key]) if c.get(key) is not None else "-" for c in columns.values()]
        out.append(f"  {key:<30} " + " | ".join(cells))
    for name, r in ratios.items():
        x = {k: f"{v:.2f}x" if v else "-" for k, v in r.items()}
        out.append(
            f"  tuneline / {name}: train {x['train_s']}, tokens/s "
            f"{x['non_padding_tokens_per_second']}, wall {x['wall_s']}, GPU memory "
            f"{x['peak_gpu_mb']}; losses agree: {'yes' if columns[name]['same_work'] else 'NO'} "
            f"(largest relative difference {columns[name]['max_relative_loss_difference']:.2e})"
        )
    return "\n".join(out)


def median_ratios(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    pooled: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for name, r in run["ratios"].items():
            for key, value in r.items():
                if value is not None:
                    pooled.setdefault(f"{run['part']}: tuneline / {name}", {}).setdefault(
                        key, []
                    ).append(value)
    return {n: {k: statistics.median(v) for k, v in r.items()} for n, r in pooled.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tuneline-site", help="tuneline's packages, first on its PYTHONPATH")
    parser.add_argument("--peer-site", help="LLaMA-Factory's packages, first on its PYTHONPATH")
    parser.add_argument("--tuneline-python", default=sys.executable)
    parser.add_argument("--peer-python", default=sys.executable)
    parser.add_argument("--steps", type=int, default=None, help="default 100 (10 with --cpu-smoke)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--part", default="sft", help="sft, dpo or sft,dpo")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--bf16-tolerance", type=float, default=0.02)
    parser.add_argument("--cpu-smoke", action="store_true", help="small fp32 model, no GPU needed")
    parser.add_argument(
        "--no-peer-gc",
        action="store_true",
        help="run the peer with checkpointing off only (its fastest), not also with its default",
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep the work folder here")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run each tool's training under cProfile (slower: for where the time goes, not for "
        "the ratios); statistics beside each process's report",
    )
    o = parser.parse_args()
    o.steps = o.steps or (10 if o.cpu_smoke else 100)
    if o.tuneline_site:  # the model and the data are built with tuneline's stack too
        sys.path.insert(0, o.tuneline_site)
    sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]
    import peer  # bench/peer.py
    import torch

    if not o.cpu_smoke and not torch.cuda.is_available():  # is_available makes no CUDA context
        raise SystemExit("no CUDA GPU here: this benchmark is for a GPU (--cpu-smoke on a CPU)")
    default = Path(os.environ["OUT"]) / "gpu_peer.json" if os.environ.get("OUT") else None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = o.out or default or ROOT / "bench" / "results" / f"gpu-peer-{stamp}.json"
    o.logs = out.parent / f"{out.stem}-logs"
    o.logs.mkdir(parents=True, exist_ok=True)
    size = "cpu-smoke" if o.cpu_smoke else "gpu"
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "settings": {**peer.SETTINGS, "steps": o.steps, "rows": o.rows, "size": SIZES[size]},
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = o.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        o.model, results["settings"]["parameters"] = build_model(work, size)
        print(f"model: {results['settings']['parameters'] / 1e6:.0f}M parameters, built in "
              f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
        eos = json.loads((o.model / "tokenizer_config.json").read_text())["eos_token"]
        o.files = peer.write_data(work, o.rows, eos)
        if not o.cpu_smoke:  # the driver and CUDA libraries loaded once, before either tool
            subprocess.run([sys.executable, "-c", "import torch; torch.ones(1, device='cuda')"])
        for repeat in range(o.repeats):
            for part in o.part.split(","):
                gc = [True, False] if part == "sft" and not o.no_peer_gc else [False]
                runs: list[Any] = ["tuneline", *gc]
                columns: dict[str, Any] = {}
                for entry in runs if repeat % 2 == 0 else runs[::-1]:
                    if entry == "tuneline":
                        name, ran = entry, run_tuneline(o, peer, work, part, f"{part}-{repeat}")
                    else:
                        tag = f"{part}-{'gc' if entry else 'nogc'}-{repeat}"
                        name = f"llamafactory{'' if entry else ' (checkpointing off)'}"
                        ran = run_peer(o, peer, work, part, entry, tag)
                    if ran is not None:
                        columns[name] = ran
                        print(f"{name} {part}: {ran['wall_s']:.1f} s", flush=True)
                ours = columns.pop("tuneline", None)
                ratios = {n: compare(o, peer, ours, p) for n, p in columns.items()} if ours else {}
                results["runs"].append(
                    {"repeat": repeat, "part": part, "tuneline": ours, "peers": columns,
                     "ratios": ratios}
                )  # fmt: skip
                if ours:
                    print(f"\nrepeat {repeat + 1}/{o.repeats}")
                    print(table(part, {"tuneline": ours, **columns}, ratios), flush=True)
                results["median_ratios"] = median_ratios(results["runs"])
                out.write_text(json.dumps(results, indent=2, default=str))  # kept if cut short
    print("\nmedian ratios over repeats:")
    for name, r in results["median_ratios"].items():
        print(f"  {name}: " + ", ".join(f"{k} {v:.2f}x" for k, v in r.items()))
    print(f"\nraw results: {out}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("--tuneline-child", "--peer-child"):
        del sys.path[0]  # bench/ (its peer.py, threads.py...) holds no library of either tool
        if sys.argv[1] == "--tuneline-child":
            tuneline_child(sys.argv[2])
        else:
            peer_child(sys.argv[2:])
    else:
        main()
