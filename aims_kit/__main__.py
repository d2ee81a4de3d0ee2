"""Command line: ``python -m aims_kit run | data check | eval | classify | export | serve | train``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from aims_kit.core.params import PRECISIONS
from aims_kit.core.profiles import DEFAULT_PROFILE, PROFILES, parse_override
from aims_kit.datasets.formats import CONDITIONS
from aims_kit.datasets.prompt_formats import PROMPT_FORMATS
from aims_kit.evaluation.released import ROLES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m aims_kit", description="AIMS Kit: intent-aware safety classifiers")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run every notebook in order through papermill and write a report")
    run.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES))
    run.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="override a parameter")
    run.add_argument("--out", type=Path, default=None, help="parent folder of the new run folder (default outputs/)")
    run.add_argument("--only", action="append", default=None, metavar="NAME", help="run only notebooks whose name contains NAME")
    run.add_argument("--resume", type=Path, default=None, metavar="RUN_FOLDER", help="finish an interrupted run folder")

    data = sub.add_parser("data", help="data utilities")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    check = data_sub.add_parser("check", help="validate an AIMS-format file and print a summary")
    check.add_argument("path", nargs="?", default=None, help="CSV / parquet / JSONL file, dataset folder or hub id (default: the shipped sample)")

    ev = sub.add_parser("eval", help="evaluate a run (or an untrained model, or a released checkpoint) on benchmarks")
    who = ev.add_mutually_exclusive_group(required=True)
    who.add_argument("--run", type=Path, help="a run folder (trained adapter, encoder or zero-shot run)")
    who.add_argument("--model", help="hub id, local folder or tiny-random: evaluated zero-shot in a new run folder "
                                     "(one of the paper's released checkpoints gets its own prompt format and budget)")
    who.add_argument("--endpoint", metavar="URL", help="an OpenAI-compatible server (e.g. http://localhost:8000/v1): evaluated in a new run folder")
    ev.add_argument("--served-model", default=None, help="the model name the --endpoint server serves (required with --endpoint)")
    ev.add_argument("--condition", default=None, choices=CONDITIONS,
                    help="output format to prompt and parse with (--model and --endpoint; default: an exported folder's "
                         "aims_kit.json when the served name is one, else label_only)")
    ev.add_argument("--prompt-format", default=None, choices=PROMPT_FORMATS,
                    help="how prompts reach the model (--model and --endpoint): kit (chat + the kit's instruction, default), "
                         "raw (the prompt and a newline, no chat template), paper-student (the paper's student prompt), "
                         "chat-system (a chat with --system-prompt)")
    ev.add_argument("--system-prompt", default=None, metavar="FILE|TEXT|paper-grpo",
                    help="the chat-system format's system prompt: a file, the text itself, or paper-grpo (the paper's GRPO prompt)")
    ev.add_argument("--adapter-of", default=None, metavar="BASE",
                    help="--model holds only a LoRA adapter: load BASE (hub id or folder), then the adapter")
    ev.add_argument("--precision", default=None, choices=PRECISIONS,
                    help="how --model loads: auto (unquantized in the device policy's dtype, default), bf16, fp16 (CUDA), "
                         "fp32, or 4bit (NF4, evaluated with transformers)")
    ev.add_argument("--as", dest="role", default=None, choices=ROLES,
                    help="what --model is in the paper (its released SFT, DPO, distilled or GRPO checkpoint): recorded, "
                         "so the claims scoreboard pairs a folder of released checkpoints")
    ev.add_argument("--out", type=Path, default=None, help="where --model creates its run folder (default outputs/lab)")
    ev.add_argument("--benchmark", required=True, action="append", metavar="NAME",
                    help="registry name (e.g. xstest) or aims_test (the AIMS test split of --data-source); repeat it to "
                         "score several in one call, the model loaded once")
    ev.add_argument("--data-source", default="", metavar="SOURCE",
                    help="AIMS data for aims_test: hub id (Jazhyc/aims-safety-intents: the paper's test split), folder or "
                         "file (default: the sample shipped with the kit)")
    ev.add_argument("--path", type=Path, default=None, help="local upstream file or hub export of a single --benchmark (default: a file in the benchmark folders or shipped with the kit, else the hub)")
    ev.add_argument("--limit", type=int, default=0, help="evaluate a seeded, label-stratified sample of N rows (0: all)")
    ev.add_argument("--batch-size", type=int, default=64)
    ev.add_argument("--max-new-tokens", type=int, default=None,
                    help="answer budget for every output format (default: the one the run's config.json records, as its test split had)")
    ev.add_argument("--latency-sample", type=int, default=16, help="prompts timed one at a time for p50/p95 latency")
    ev.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the confidence intervals")
    ev.add_argument("--seed", type=int, default=22)
    ev.add_argument("--backend", default="auto", choices=["auto", "transformers", "vllm"],
                    help="generation engine: auto (vLLM on a CUDA GPU where it starts, else transformers), transformers or vllm")
    ev.add_argument("--gpu-memory-utilization", type=float, default=0.5, metavar="SHARE",
                    help="share of the GPU a vLLM engine may reserve (default 0.5)")
    ev.add_argument("--replace", action="store_true",
                    help="replace the run's earlier record of this benchmark (it moves to RUN/history/); without it a second eval is refused")

    cl = sub.add_parser("classify", help="label prompts with a run (trained adapter, encoder, zero-shot or served)")
    source = cl.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="a run folder")
    source.add_argument("--endpoint", metavar="URL", help="an OpenAI-compatible server (e.g. the URL `serve` prints)")
    cl.add_argument("--served-model", default=None, help="the model name the --endpoint server serves (required with --endpoint)")
    cl.add_argument("--condition", default=None, choices=CONDITIONS,
                    help="--endpoint's output format (default: the served folder's aims_kit.json, else label_only)")
    cl.add_argument("prompts", nargs="*", help="prompts to classify (or --input FILE)")
    cl.add_argument("--input", type=Path, default=None, help="a .jsonl or .csv file of prompts")
    cl.add_argument("--prompt-column", default="prompt", help="field / column holding the prompt (default: prompt)")
    cl.add_argument("--output", type=Path, default=None, help="write JSON Lines here (atomically) instead of stdout")
    cl.add_argument("--batch-size", type=int, default=32)
    cl.add_argument("--max-new-tokens", type=int, default=None, help="answer budget (default: the one the run's config.json records)")

    ex = sub.add_parser("export", help="merge a run's LoRA adapter into a standalone model folder with a model card")
    ex.add_argument("--run", type=Path, required=True, help="a run folder with an adapter")
    ex.add_argument("--out", type=Path, required=True, help="new folder (an existing non-empty one is refused)")

    sv = sub.add_parser("serve", help="serve an exported guard (or a run, exported first) on this machine with transformers serve")
    what = sv.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", type=Path, help="a run folder with an adapter: exported first (or its earlier export reused)")
    what.add_argument("--export", type=Path, metavar="FOLDER", help="a folder written by `export`")
    sv.add_argument("--out", type=Path, default=None, help="where --run is exported (default: RUN/export)")
    sv.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1: this machine only; the server has no authentication)")
    sv.add_argument("--port", type=int, default=0, help="listen port (default: a free one)")
    sv.add_argument("--continuous-batching", action="store_true", help="transformers' continuous batching (paged attention)")

    rp = sub.add_parser("report", help="rewrite a run folder's report.html (and claims.json); optionally its Markdown results page")
    rp.add_argument("run_folder", type=Path, help="a folder written by `run` (outputs/run-...)")
    rp.add_argument("--markdown", type=Path, default=None, metavar="FILE", help="also write the results page here (e.g. docs/results.md)")
    rp.add_argument("--workshop", type=Path, default=None, metavar="FILE",
                    help="also render the teacher's guide here from this run (e.g. docs/workshop.md; its values beside it)")
    rp.add_argument("--workshop-template", type=Path, default=None, metavar="FILE",
                    help="the guide's template (default: docs/workshop.template.md in the checkout)")

    tr = sub.add_parser("train", help="train one regime with its notebook's settings (also under torchrun / accelerate launch)")
    tr.add_argument("regime", choices=["sft", "dpo", "distill", "grpo"])
    tr.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES))
    tr.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="override a parameter the notebook declares")
    tr.add_argument("--out", type=Path, default=None, help="the notebook's out_dir: runs go to OUT/runs/ (default outputs/lab)")

    dr = sub.add_parser("doctor", help="device, dtype, memory, bitsandbytes / vLLM, the recommended profile and whether a profile fits")
    dr.add_argument("--profile", default=None, choices=sorted(PROFILES), help="profile to check (default: the recommended one)")
    dr.add_argument("--gpu-memory", type=float, default=None, metavar="GIB",
                    help="check against a GPU of this many GiB instead of this machine's (e.g. 16 for a T4)")
    return parser


def main_doctor(args: argparse.Namespace) -> int:
    """Print the doctor's findings; 1 when the chosen profile does not fit the GPU."""
    from aims_kit.notebook.doctor import diagnose

    finding = diagnose(args.profile, args.gpu_memory)
    print("\n".join(finding.lines))
    return 0 if finding.fits else 1


def main_report(args: argparse.Namespace) -> int:
    """Rewrite a run folder's report (and claims.json) from its records; write its Markdown page if asked."""
    from aims_kit.core.results import atomic_write_text, read_json
    from aims_kit.notebook.report import markdown_report, write_report

    folder = args.run_folder
    if not (folder / "parameters.json").is_file():
        print(f"error: {folder}: not a run folder (no parameters.json); give a folder written by `python -m aims_kit run`", file=sys.stderr)
        return 1
    print(write_report(folder, read_json(folder / "parameters.json")))
    if args.markdown:
        try:
            atomic_write_text(args.markdown, markdown_report(folder))
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(args.markdown)
    if args.workshop:
        from aims_kit.core.paths import REPO_DIR
        from aims_kit.notebook.workshop import TEMPLATE, WorkshopError, write_workshop

        try:
            print(write_workshop(folder, args.workshop, args.workshop_template or REPO_DIR / TEMPLATE))
        except (WorkshopError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    return 0


def main_train(args: argparse.Namespace) -> int:
    """Train like the regime's notebook would; print the run folders (main process only)."""
    from aims_kit.core import distributed
    from aims_kit.notebook.launch import regime_parameters, train

    try:
        overrides = dict(parse_override(item) for item in args.param)
        params = regime_parameters(args.regime, args.profile, {**overrides, "out_dir": str(args.out or "")})
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_dirs = train(args.regime, params)
    if distributed.is_main_process():
        print("\n".join(str(run_dir) for run_dir in run_dirs))
    return 0


def main_classify(args: argparse.Namespace) -> int:
    """Classify prompts given inline or in a file; one JSON line per input row, bad rows named by line."""
    from aims_kit.core.results import atomic_write_jsonl
    from aims_kit.serving.classifier import (
        Classifier,
        InputRow,
        classify_rows,
        read_prompt_rows,
    )

    if bool(args.prompts) == (args.input is not None):
        print("error: give prompts on the command line or --input FILE (one of the two)", file=sys.stderr)
        return 2
    if args.endpoint and not args.served_model:
        print("error: --endpoint needs --served-model NAME (the name the server serves the model under)", file=sys.stderr)
        return 2
    try:
        rows = read_prompt_rows(args.input, args.prompt_column) if args.input else [
            InputRow(i, p) if p.strip() else InputRow(i, error="empty prompt") for i, p in enumerate(args.prompts, start=1)
        ]
        if args.endpoint:
            classifier = Classifier.from_endpoint(args.endpoint, args.served_model, args.condition,
                                                  batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
        else:
            classifier = Classifier.from_run(args.run, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    from aims_kit.inference.endpoints import EndpointError

    try:
        out = classify_rows(classifier, rows)
    except EndpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.output:
        atomic_write_jsonl(args.output, out)
    else:
        print("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in out), end="")
    where = "" if args.input is None else f"{args.input}, "
    bad = [row for row in out if "error" in row]
    for row in bad:
        print(f"bad row: {where}line {row['line']}: {row['error']}", file=sys.stderr)
    if bad:
        print(f"{len(bad)} of {len(out)} rows were not classified (kept in the output with an error field)", file=sys.stderr)
    cut = [row["line"] for row in out if row.get("truncated")]
    if cut:
        print(f"{len(cut)} prompts were longer than the model reads and only their start was classified "
              f"(truncated: true; lines {', '.join(map(str, cut[:10]))}{' …' if len(cut) > 10 else ''})", file=sys.stderr)
    return 1 if bad else 0


#: ``eval`` options that make a new run (``--model``, and ``--endpoint`` for the first two): a run folder keeps its own.
_NEW_RUN_OPTIONS = {"prompt_format": "--prompt-format", "system_prompt": "--system-prompt", "role": "--as",
                    "adapter_of": "--adapter-of", "precision": "--precision"}


def _eval_option_error(args: argparse.Namespace) -> str | None:
    """Why these ``eval`` options do not go together (``None``: they do)."""
    given = [flag for name, flag in _NEW_RUN_OPTIONS.items() if getattr(args, name) is not None]
    if args.run is not None and (given or args.condition):
        return (f"{', '.join(given or ['--condition'])}: a --run folder keeps the settings it was created with; "
                "evaluate the model with --model (or --endpoint) to choose them")
    local_only = [flag for name, flag in _NEW_RUN_OPTIONS.items() if name in ("adapter_of", "precision") and getattr(args, name) is not None]
    if args.endpoint is not None and local_only:
        return f"{', '.join(local_only)}: the server decides how it loads the model; these are for --model"
    if args.endpoint is not None and not args.served_model:
        return "--endpoint needs --served-model NAME (the name the server serves the model under)"
    return None


def new_eval_run(args: argparse.Namespace) -> Path:
    """The run folder ``eval --model`` / ``--endpoint`` creates, with every setting it records.

    One of the paper's released checkpoints (:data:`aims_kit.evaluation.released.CHECKPOINTS`)
    takes its own prompt format, condition, budget and role where a flag does not say otherwise,
    announced in one line. Raises ``ValueError`` for settings that do not fit together.
    """
    from aims_kit.core.results import resolve_out_dir
    from aims_kit.datasets.prompt_formats import PromptFormat
    from aims_kit.evaluation import benchmarks as benchmark_eval
    from aims_kit.evaluation.released import by_repo

    known = by_repo(args.model) if args.model else None
    if known is not None:
        print(known.describe() + " (flags override it)", file=sys.stderr)
    name = args.prompt_format or ("chat-system" if args.system_prompt else None) or (known.prompt_format if known else None)
    system = args.system_prompt if args.system_prompt is not None else (known.system_prompt if known and not args.prompt_format else None)
    prompt_format = PromptFormat.named(name, system)
    condition = args.condition or (known.condition if known else None)
    budget = args.max_new_tokens or (known.max_new_tokens if known else None)
    role = args.role or (known.role if known else "")
    out = resolve_out_dir(args.out)
    if args.endpoint is not None:
        from aims_kit.inference.engines import served_condition

        condition = condition or served_condition(args.served_model) or "label_only"
        return benchmark_eval.served_run(out, args.endpoint, args.served_model, condition, prompt_format=prompt_format,
                                         role=role, max_new_tokens=budget)
    return benchmark_eval.zero_shot_run(out, args.model, condition or "label_only", prompt_format=prompt_format,
                                        adapter_of=args.adapter_of or (known.adapter_of if known else ""),
                                        precision=args.precision or "auto", role=role, max_new_tokens=budget)


def main_eval(args: argparse.Namespace) -> int:
    """Evaluate one run on one or more benchmarks, the model loaded once; print one JSON line of metrics per benchmark."""
    from aims_kit.datasets import benchmarks
    from aims_kit.evaluation import benchmarks as benchmark_eval
    from aims_kit.evaluation import runs

    from aims_kit.datasets.aims import AimsDataError

    problem = _eval_option_error(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        # no --path: a downloaded or shipped file first (XSTest ships with the kit), then the hub
        frames = benchmark_eval.eval_frames(args.benchmark, args.path, data_source=args.data_source, seed=args.seed)
    except (benchmarks.BenchmarkError, AimsDataError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        run_dir = args.run if args.run is not None else new_eval_run(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from aims_kit.core.results import is_evaluated, read_json

    earlier = [dataset for dataset, _ in frames if is_evaluated(Path(run_dir), dataset)]
    if earlier and not args.replace:
        record = read_json(Path(run_dir) / "results" / f"{earlier[0]}.json")
        print(f"error: {Path(run_dir).name} already has a record of {earlier[0]} (n={record.get('n')}, "
              f"benchmark_limit={record.get('benchmark_limit')}); a scoreboard may rest on it. Pass --replace to move it "
              "to the run's history/ folder and write the new one, or evaluate a copy of the run.", file=sys.stderr)
        return 1
    try:
        run = runs.load_run(run_dir)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    from aims_kit.core.params import BenchmarkParams

    if args.max_new_tokens:
        run.config = {**run.config, "max_new_tokens": args.max_new_tokens}
    params = BenchmarkParams(benchmark_limit=args.limit, eval_batch_size=args.batch_size, latency_sample=args.latency_sample,
                             n_boot=args.n_boot, seed=args.seed, backend=args.backend,
                             gpu_memory_utilization=args.gpu_memory_utilization)
    from aims_kit.inference.endpoints import EndpointError

    for dataset, frame in frames:
        try:
            record = benchmark_eval.evaluate_loaded(run, frame, dataset, params)
        except (EndpointError, ValueError) as err:
            print(f"error: {dataset}: {err}", file=sys.stderr)
            return 1
        print(json.dumps({k: v for k, v in record.items() if k != "config"}, default=str), flush=True)
    return 0


def main_serve(args: argparse.Namespace) -> int:
    """Serve an exported folder until Ctrl-C (or SIGTERM); print its URL and the commands that use it."""
    import shlex
    import signal

    from aims_kit.inference.engines import served_condition
    from aims_kit.serving.server import start_server

    try:
        if args.run:
            from aims_kit.serving.export import (
                export_for_serving,  # loads torch; serving an exported folder does not
            )

            folder = export_for_serving(args.run, args.out)
        else:
            folder = args.export
        print(f"starting transformers serve {folder} on {args.host} …", file=sys.stderr)
        server = start_server(folder, host=args.host, port=args.port, continuous_batching=args.continuous_batching)
    except (FileExistsError, FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    url, name = server.base_url, shlex.quote(server.served_model)
    condition = served_condition(server.served_model) or "label_only"
    print(f"serving {server.folder} at {url} (pid {server.process.pid}, {server.dtype} weights as local evaluation here, "
          f"log {server.log_path})")
    print(f"  python -m aims_kit eval --endpoint {url} --served-model {name} --condition {condition} --benchmark xstest")
    print(f"  python -m aims_kit classify --endpoint {url} --served-model {name} \"How do I stop a frozen program?\"")
    print("Ctrl-C stops it.", flush=True)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}  # also when started with SIGINT ignored (`&`)
    try:
        code = server.process.wait()
        print(f"error: the server exited by itself (code {code}); its log ends:\n{server.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping the server …", file=sys.stderr)
        return 0
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from aims_kit.notebook.runner import main_run

        try:
            overrides = dict(parse_override(item) for item in args.param)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return main_run(args.profile, overrides, args.out, args.only, args.resume)
    if args.command == "data":
        from aims_kit.datasets.aims import AimsDataError, load_aims, split_aims, summary

        try:
            frame = load_aims(args.path)
            splits = split_aims(frame)
        except AimsDataError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        report = summary(frame)
        report["splits"] = splits.sizes()
        report["splits_from"] = "the source's own train/validation/test" if splits.from_source else "re-split by the kit (seed 22)"
        print(json.dumps(report, indent=2))
        return 0
    if args.command == "eval":
        return main_eval(args)
    if args.command == "classify":
        return main_classify(args)
    if args.command == "train":
        return main_train(args)
    if args.command == "serve":
        return main_serve(args)
    if args.command == "report":
        return main_report(args)
    if args.command == "doctor":
        return main_doctor(args)
    if args.command == "export":
        from aims_kit.serving.export import export_run

        try:
            print(export_run(args.run, args.out))
        except (FileExistsError, FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
