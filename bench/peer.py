"""tuneline against LLaMA-Factory on the same model, data and settings, in one invocation:

    python bench/peer.py --peer-venv /path/to/venv [--steps 100] [--repeats 2] [--part sft,dpo]

LLaMA-Factory lives in its own virtual environment, never in tuneline's; create it with

    python3 -m venv /path/to/venv
    /path/to/venv/bin/pip install torch==2.13.0 llamafactory==0.9.5
    /path/to/venv/bin/pip uninstall -y torchvision   # CPU torch: see below

(if pip pulls another torch, add `-c constraints.txt` with the line `torch==2.13.0`). This script
installs nothing: it only runs `llamafactory-cli` from that venv. On a CPU torch, the torchaudio
and torchvision that llamafactory pulls from PyPI are CUDA builds that do not load: transformers
imports torchvision whenever it is installed (`operator torchvision::nms does not exist`), hence
the uninstall; LLaMA-Factory imports torchaudio at start-up but text training never uses it, so
the peer runs with an empty `torchaudio` package first on its PYTHONPATH (made here in a
temporary folder). LLaMA-Factory 0.9.5 brings its own transformers, trl and peft (5.6, 0.24 and
0.18 when this was written), not tuneline's.

What both tools get:
- model: the tiny causal LM (`tuneline tiny-model`, a 2-layer Llama with its own tokenizer),
  built once into the work folder and named by path in both configurations;
- data: 1,000 alpaca rows (and 100 held-out rows tuneline evaluates on) generated with the
  example-data generator the project ships (`deployments/data/make_assistant_data.py`, another
  seed); preference pairs for DPO are the same rows with a wrong answer as `rejected`;
- the same tokens: tuneline renders alpaca rows through its template; LLaMA-Factory is given that
  rendered prompt as the instruction with its `empty` template (no role markers, EOS after the
  answer), so both train on `prompt + answer + EOS` with the loss on the answer and EOS only;
- LoRA r=8, alpha=16, dropout 0, every linear layer but the head; batch 8, max length 256,
  lr 2e-4 linear decay without warm-up, seed 42, fp32, `--steps` optimiser steps;
- SFT: tuneline's `sft`; LLaMA-Factory's `sft` stage with its default (gradient checkpointing
  on) and with `disable_gradient_checkpointing: true`. DPO: tuneline's `dpo` (beta 0.1, sigmoid)
  against the `dpo` stage (`pref_beta` 0.1, `pref_loss: sigmoid`), checkpointing off.

Each configuration runs as a command a user would type, timed from the outside with a fresh
TUNELINE_HOME (and no PREFECT_API_URL) for tuneline: `tuneline run recipe.yaml --json` against
`llamafactory-cli train cfg.yaml`. Recorded per run: training time (the trainer's own, tuneline's
without its in-training held-out evaluations), non-padding training tokens/s, first and final
training loss, the whole command's wall time and peak memory: the process tree's summed RSS (so
tuneline's temporary Prefect server counts) and the command's own process's RSS, sampled every
0.1 s, and the tree's summed PSS (a page shared by several processes split among them: the pages
a forked process shares with the command count once, where the RSS sum counts them twice),
sampled every second. Reading PSS walks every page table of every process in the tree: at 10
reads a second it took enough of the 2 cores to slow both tools' steps by 12-37% (DPO, 2 runs
each, against no sampling); RSS is one read per process, and with PSS once a second no slowing
stood out from the runs' noise.
The peer's non-padding token count is tuneline's: when the first and final losses agree (checked,
with a warning otherwise) both trained the same batches. Configurations alternate within each repeat so background load hits both alike.
Ratios are tuneline / LLaMA-Factory. Raw JSON goes under bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "deployments" / "data"))

import make_assistant_data as assistant  # noqa: E402

from tasks.models.prompts import alpaca_prompt  # noqa: E402
from tasks.training.causal.sft import ALPACA_TEMPLATE  # noqa: E402

SETTINGS = {"r": 8, "alpha": 16, "batch": 8, "max_length": 256, "lr": 2e-4, "seed": 42}
DATA_SEED = 2024  # not the shipped examples' seed (7): fresh rows of the same kinds
LOGGING_STEPS = 5


# -- model and data ---------------------------------------------------------------------------------


def build_model(work: Path) -> Path:
    folder = work / "tiny-causal-lm"
    subprocess.run(
        [sys.executable, "-m", "tuneline", "tiny-model", "--out", str(folder)],
        check=True,
        env={**os.environ, "TUNELINE_HOME": str(work / "model-home")},
    )
    return folder


def rows(n_train: int, n_eval: int) -> tuple[list[tuple[str, str, str, str]], list[Any]]:
    """(instruction, input, answer, wrong answer) examples, distinct prompts across both splits."""
    rng = random.Random(DATA_SEED)
    seen: set[str] = set()
    return assistant.examples(rng, n_train, seen), assistant.examples(rng, n_eval, seen)


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def write_data(work: Path, n_train: int, eos: str) -> dict[str, Path]:
    train, held = rows(n_train, 100)
    folder = work / "data"

    def rendered(item: tuple[str, str, str, str]) -> str:
        return alpaca_prompt(ALPACA_TEMPLATE, item[0], item[1])

    files = {}
    for split, items in (("train", train), ("eval", held)):
        files[f"{split}_alpaca"] = write_jsonl(
            folder / f"{split}.alpaca.jsonl",
            [{"instruction": i, "input": g, "output": a} for i, g, a, _ in items],
        )
        files[f"{split}_preference"] = write_jsonl(
            folder / f"{split}.preference.jsonl",
            [{"prompt": rendered(x), "chosen": x[2], "rejected": x[3]} for x in items],
        )
    # The peer's copies: the prompt already rendered as tuneline renders it (its `empty` template
    # adds nothing around it), the same answers, and EOS written out: `empty` ends an answer with
    # nothing, where tuneline (and trl) end it with EOS, trained on. The tokenizer reads the text
    # as the EOS special token, so the ids are the same.
    peer = folder / "peer"
    write_jsonl(
        peer / "sft.json",
        [{"instruction": rendered(x), "input": "", "output": x[2] + eos} for x in train],
    )
    write_jsonl(
        peer / "dpo.json",
        [
            {"instruction": rendered(x), "input": "", "chosen": x[2] + eos, "rejected": x[3] + eos}
            for x in train
        ],
    )
    (peer / "dataset_info.json").write_text(
        json.dumps(
            {
                "bench_sft": {"file_name": "sft.json"},
                "bench_dpo": {
                    "file_name": "dpo.json",
                    "ranking": True,
                    "columns": {
                        "prompt": "instruction",
                        "query": "input",
                        "chosen": "chosen",
                        "rejected": "rejected",
                    },
                },
            },
            indent=2,
        )
    )
    files["peer_dir"] = peer
    return files


# -- configurations ---------------------------------------------------------------------------------


def tuneline_recipe(
    folder: Path, model: Path, files: dict[str, Path], part: str, steps: int, grouped: bool = False
) -> Path:
    s = SETTINGS
    if part == "sft":
        data = f"{{train: {files['train_alpaca']}, eval: {files['eval_alpaca']}, format: alpaca}}"
        method = "{name: sft, packing: false"
    else:
        data = (
            f"{{train: {files['train_preference']}, eval: {files['eval_preference']}, "
            "format: preference}"
        )
        method = "{name: dpo, beta: 0.1, loss_type: sigmoid"
    method += (
        f", weights: lora, r: {s['r']}, lora_alpha: {s['alpha']}, lora_dropout: 0.0, "
        "target_modules: all-linear}"
    )
    recipe = folder / f"tuneline-{part}.yaml"
    recipe.write_text(
        f"""name: bench-peer-{part}
task: causal-lm
base_model: {{path: "{model}"}}
data: {data}
tokenize: {{max_length: {s["max_length"]}}}
method: {method}
train: {{max_steps: {steps}, batch_size: {s["batch"]}, learning_rate: {s["lr"]}, seed: {s["seed"]}, warmup_ratio: 0.0, group_by_length: {str(grouped).lower()}, mixed_precision: "no", logging_steps: {LOGGING_STEPS}}}
register: {{gate: {{beat_base: false}}}}
"""
    )
    return recipe


def peer_config(
    folder: Path,
    model: Path,
    files: dict[str, Path],
    part: str,
    steps: int,
    checkpointing: bool,
    bf16: bool = False,
) -> Path:
    s = SETTINGS
    name = f"peer-{part}-{'gc' if checkpointing else 'nogc'}"
    config = {
        "model_name_or_path": str(model),
        "stage": part,
        "do_train": True,
        "finetuning_type": "lora",
        "lora_target": "all",
        "lora_rank": s["r"],
        "lora_alpha": s["alpha"],
        "lora_dropout": 0.0,
        "dataset": f"bench_{part}",
        "dataset_dir": str(files["peer_dir"]),
        "template": "empty",
        "cutoff_len": s["max_length"],
        "overwrite_cache": True,
        "output_dir": str(folder / name),
        "overwrite_output_dir": True,
        "logging_steps": LOGGING_STEPS,
        "logging_first_step": True,
        "save_strategy": "no",
        "plot_loss": False,
        "report_to": "none",
        "per_device_train_batch_size": s["batch"],
        "gradient_accumulation_steps": 1,
        "learning_rate": s["lr"],
        "max_steps": steps,
        "lr_scheduler_type": "linear",
        "warmup_ratio": 0.0,
        "weight_decay": 0.0,
        "bf16": bf16,
        "fp16": False,
        "seed": s["seed"],
        "data_seed": s["seed"],
        "disable_gradient_checkpointing": not checkpointing,
        "disable_tqdm": True,
    }
    if part == "dpo":
        config.update({"pref_beta": 0.1, "pref_loss": "sigmoid"})
    path = folder / f"{name}.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in config.items()))
    return path


# -- running ----------------------------------------------------------------------------------------


# RSS is read every 0.1 s, PSS every PSS_EVERY-th time (see the module docstring)
PSS_EVERY = 10


def timed(command: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run a command; its wall time, exit code, and the peak summed RSS of its process tree."""
    import psutil

    # the tree's summed RSS, the command's own process alone, the tree's summed PSS (each shared
    # page split among the processes sharing it: a forked process's pages count once)
    peak = [0, 0, 0]
    with log.open("w") as sink:
        started = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=sink, text=True)
        root = psutil.Process(proc.pid)
        done = threading.Event()

        def sample() -> None:
            count = 0
            while not done.is_set():
                with_pss = count % PSS_EVERY == 0
                count += 1
                try:
                    tree = [root, *root.children(recursive=True)]
                    rss = pss = 0
                    for p in tree:
                        with contextlib.suppress(psutil.Error):  # gone since listed
                            rss += p.memory_info().rss
                            if with_pss:
                                pss += p.memory_full_info().pss
                    peak[0] = max(peak[0], rss)
                    peak[1] = max(peak[1], root.memory_info().rss)
                    peak[2] = max(peak[2], pss)
                except psutil.Error:
                    pass
                done.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stdout, _ = proc.communicate()
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
    sink_text = stdout or ""
    with log.open("a") as more:
        more.write("\n--- stdout ---\n" + sink_text)
    return {
        "rc": proc.returncode,
        "wall_s": wall,
        "peak_rss_mb": peak[0] / 2**20,
        "peak_rss_main_mb": peak[1] / 2**20,
        "peak_pss_mb": peak[2] / 2**20,
        "stdout": sink_text,
    }


def step_figures(train: dict[str, Any]) -> dict[str, float]:
    """The timing figures of a tuneline training result (`run --json`'s `train`): `train_s` is the
    trainer's own timing of the steps (transformers' `train_runtime` less the held-out loss
    points), as LLaMA-Factory's `train_runtime`; `train_call_s` adds what train() does before the
    first step (data loader, optimiser) and after the last."""
    tokens = train["tokens_per_second"] * train["train_seconds"]
    loop = train["extra"].get("train_loop_seconds") or train["train_seconds"]
    return {
        "train_s": loop,
        "train_call_s": train["train_seconds"],
        "non_padding_tokens_per_second": tokens / loop,
        "non_padding_tokens": tokens,
    }


def run_tuneline(recipe: Path, home: Path, log: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL",)}
    env.update({"TUNELINE_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    # The user cache (an empty MLflow store to copy) is this invocation's own: its first tuneline
    # run starts without one, as on a new machine, and keeps one for the runs after it.
    env["TUNELINE_CACHE_DIR"] = str(home.parent / "user-cache")
    shutil.rmtree(home, ignore_errors=True)
    outside = timed([sys.executable, "-m", "tuneline", "run", str(recipe), "--json"], env, log)
    lines = [x for x in outside.pop("stdout").splitlines() if x.startswith("{")]
    # 0: registered and promoted; 3: registered, the gate said no (a tiny model trained for a
    # benchmark rarely earns a promotion): both ran every stage.
    if outside["rc"] not in (0, 3) or not lines:
        raise SystemExit(f"tuneline run {recipe} failed (exit {outside['rc']}); see {log}")
    outcome = json.loads(lines[-1])
    train = outcome["train"]
    history = json.loads((Path(outcome["artifact"]) / "history.json").read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    return {
        **outside,
        "status": outcome["status"],
        **step_figures(train),
        "steps": train["steps"],
        "padding_share": train["padding_share"],
        "first_loss": losses[0] if losses else None,
        "final_loss": train["train_loss"],
        "losses": losses,
    }


def torchaudio_stub(work: Path) -> Path:
    folder = work / "stub"
    (folder / "torchaudio").mkdir(parents=True, exist_ok=True)
    (folder / "torchaudio" / "__init__.py").write_text(
        '"""Empty stand-in: text training never uses torchaudio."""\n'
    )
    return folder


def run_peer(venv: Path, config: Path, stub: Path, log: Path) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.update(
        {
            "PYTHONPATH": str(stub),
            "HF_HUB_OFFLINE": "1",
            "DISABLE_VERSION_CHECK": "1",
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    outside = timed([str(venv / "bin" / "llamafactory-cli"), "train", str(config)], env, log)
    outside.pop("stdout")
    if outside["rc"] != 0:
        raise SystemExit(
            f"llamafactory-cli train {config} failed (exit {outside['rc']}); see {log} (a "
            "`torchvision::nms` error there: uninstall torchvision from the peer venv, see --help)"
        )
    return {**outside, **peer_figures(config)}


def peer_figures(config: Path) -> dict[str, Any]:
    """What LLaMA-Factory's trainer wrote of the run `config` configured (in its `output_dir`):
    training time, steps and losses."""
    out_dir = Path(
        next(
            line.split(":", 1)[1].strip().strip('"')
            for line in config.read_text().splitlines()
            if line.startswith("output_dir:")
        )
    )
    results = json.loads((out_dir / "train_results.json").read_text())
    state = json.loads((out_dir / "trainer_state.json").read_text())
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    return {
        "train_s": results["train_runtime"],
        "steps": state["global_step"],
        "first_loss": losses[0] if losses else None,
        "final_loss": results["train_loss"],
        "losses": losses,
    }


def same_work(ours: dict[str, Any], peer: dict[str, Any]) -> bool:
    """Every logged loss agrees (both log every LOGGING_STEPS steps and the first step): the first
    is the base model on the first batch (LoRA starts as a no-op), so it checks batches, tokens
    and masking; the later ones check the updates; and the final (mean) training loss."""

    def close(a: float, b: float, tolerance: float) -> bool:
        return abs(a - b) <= tolerance * max(1.0, abs(b))

    if not ours["losses"] or len(ours["losses"]) != len(peer["losses"]):
        return False
    curve = all(close(a, b, 1e-3) for a, b in zip(ours["losses"], peer["losses"], strict=True))
    return (
        close(ours["losses"][0], peer["losses"][0], 1e-4)
        and curve
        and close(ours["final_loss"], peer["final_loss"], 1e-3)
    )


def ratios(ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, float]:
    return {
        "train_s": ours["train_s"] / peer["train_s"],
        "non_padding_tokens_per_second": ours["non_padding_tokens_per_second"]
        / peer["non_padding_tokens_per_second"],
        "wall_s": ours["wall_s"] / peer["wall_s"],
        "peak_rss_mb": ours["peak_rss_mb"] / peer["peak_rss_mb"],
        "peak_pss_mb": ours["peak_pss_mb"] / peer["peak_pss_mb"],
        "final_loss_delta": ours["final_loss"] - peer["final_loss"],
    }


def table(part: str, ours: dict[str, Any], peers: dict[str, dict[str, Any]]) -> str:
    names = ["tuneline", *peers]
    columns = [ours, *peers.values()]
    out = [f"{part}: " + " | ".join(names)]
    for key, fmt in (
        ("train_s", "{:.2f} s"),
        ("train_call_s", "{:.2f} s"),
        ("non_padding_tokens_per_second", "{:,.0f}"),
        ("first_loss", "{:.4f}"),
        ("final_loss", "{:.4f}"),
        ("wall_s", "{:.1f} s"),
        ("peak_rss_mb", "{:,.0f} MB"),
        ("peak_rss_main_mb", "{:,.0f} MB"),
        ("peak_pss_mb", "{:,.0f} MB"),
    ):
        cells = [fmt.format(c[key]) if c.get(key) is not None else "-" for c in columns]
        out.append(f"  {key:<30} " + " | ".join(cells))
    for name, peer in peers.items():
        r = ratios(ours, peer)
        out.append(
            f"  tuneline / {name}: train {r['train_s']:.2f}x, tokens/s "
            f"{r['non_padding_tokens_per_second']:.2f}x, wall {r['wall_s']:.2f}x, "
            f"RSS {r['peak_rss_mb']:.2f}x, PSS {r['peak_pss_mb']:.2f}x, final loss {r['final_loss_delta']:+.6f}, same work "
            f"(every logged loss agrees): {'yes' if peer.get('same_work') else 'NO'}"
        )
    return "\n".join(out)


@contextlib.contextmanager
def background_load(processes: int) -> Any:
    """`processes` busy loops running (each wants a whole core) while the block runs."""
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)
    ]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--peer-venv", type=Path, required=True, help="LLaMA-Factory's venv")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--part", default="sft,dpo")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/peer-*.json")
    parser.add_argument(
        "--tuneline-grouped",
        action="store_true",
        help="tuneline with its default length-grouped batches (other batches than the peer's "
        "random ones: the losses no longer match exactly)",
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep the work folder here")
    parser.add_argument(
        "--background",
        type=int,
        default=0,
        help="busy-loop processes kept running beside both tools (the same background load for "
        "each, as when other jobs share the machine)",
    )
    options = parser.parse_args()
    cli = options.peer_venv / "bin" / "llamafactory-cli"
    if not cli.exists():
        raise SystemExit(
            f"--peer-venv {options.peer_venv}: no bin/llamafactory-cli; create it (see --help)"
        )
    try:
        import psutil  # noqa: F401
    except ImportError:
        raise SystemExit("psutil is needed to sample peak RSS (pip install psutil)") from None
    load = os.getloadavg()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average_at_start": load,
        "settings": {
            **SETTINGS,
            "steps": options.steps,
            "rows": options.rows,
            "tuneline_grouped": options.tuneline_grouped,
        },
        "runs": [],
        "background_processes": options.background,
    }
    with tempfile.TemporaryDirectory() as tmp, background_load(options.background):
        work = options.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(work / "user-cache", ignore_errors=True)  # a kept folder starts cold too
        model = (
            build_model(work) if not (work / "tiny-causal-lm").exists() else work / "tiny-causal-lm"
        )
        eos = json.loads((model / "tokenizer_config.json").read_text())["eos_token"]
        files = write_data(work, options.rows, eos)
        stub = torchaudio_stub(work)
        logs = work / "logs"
        logs.mkdir(exist_ok=True)
        for repeat in range(options.repeats):
            for part in options.part.split(","):
                recipe = tuneline_recipe(
                    work, model, files, part, options.steps, options.tuneline_grouped
                )
                variants = [True, False] if part == "sft" else [False]
                peers = {}
                for checkpointing in variants:
                    label = f"llamafactory{'' if checkpointing else ' (checkpointing off)'}"
                    tag = f"{part}-{'gc' if checkpointing else 'nogc'}-{repeat}"
                    config = peer_config(work, model, files, part, options.steps, checkpointing)
                    peers[label] = run_peer(
                        options.peer_venv, config, stub, logs / f"peer-{tag}.log"
                    )
                    print(
                        label,
                        part,
                        json.dumps({k: v for k, v in peers[label].items() if k != "losses"}),
                        flush=True,
                    )
                ours = run_tuneline(
                    recipe, work / f"home-{part}-{repeat}", logs / f"tuneline-{part}-{repeat}.log"
                )
                # Same batches, same masking: the trained token count is the same work; the
                # peer's tokens/s is that count over its own training time.
                for name, peer in peers.items():
                    peer["non_padding_tokens_per_second"] = (
                        ours["non_padding_tokens"] / peer["train_s"]
                    )
                    peer["same_work"] = same_work(ours, peer)
                    if not peer["same_work"]:
                        print(
                            f"WARNING {part}: losses of tuneline and {name} differ "
                            f"(logged {ours['losses']} / {peer['losses']}, final "
                            f"{ours['final_loss']} / {peer['final_loss']}): not the same work, "
                            "the ratios do not compare like with like",
                            flush=True,
                        )
                print(
                    "tuneline",
                    part,
                    json.dumps({k: v for k, v in ours.items() if k != "losses"}),
                    flush=True,
                )
                results["runs"].append(
                    {
                        "repeat": repeat,
                        "part": part,
                        "tuneline": ours,
                        "peers": peers,
                        "ratios": {name: ratios(ours, p) for name, p in peers.items()},
                    }
                )
                print(f"\nrepeat {repeat + 1}/{options.repeats}")
                print(table(part, ours, peers), flush=True)
    results["load_average_at_end"] = os.getloadavg()
    out = options.out or ROOT / "bench" / "results" / f"peer-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nraw results: {out}")


if __name__ == "__main__":
    main()
