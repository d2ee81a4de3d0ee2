"""Experiment tracking: ``report_to`` goes from the notebook parameters to the trainer, and TensorBoard files appear in the run."""

from dataclasses import replace

from aims_kit.core.params import RunParams
from aims_kit.notebook import experiments
from aims_kit.training.common import TrainSettings, trainer_kwargs


def test_report_to_defaults_to_none_and_reaches_the_trainer_arguments(tmp_path):
    assert trainer_kwargs(TrainSettings(), tmp_path)["report_to"] == ["none"]
    settings = experiments.train_settings(RunParams(report_to="tensorboard, mlflow"), "label_only")
    assert trainer_kwargs(settings, tmp_path)["report_to"] == ["tensorboard", "mlflow"]


def test_two_sft_steps_with_tensorboard_write_event_files_in_the_run_folder(tmp_path):
    from aims_kit.training.sft import train_sft

    splits = experiments.load_splits("", 22)
    settings = experiments.train_settings(RunParams(report_to="tensorboard", max_steps=2, batch_size=4, eval_steps=1), "label_only")
    settings = replace(settings, max_length=128)
    train_sft("tiny-random", splits.train.head(8), splits.val.head(4), condition="label_only", settings=settings, run_dir=tmp_path)
    events = list(tmp_path.glob("checkpoints/runs/*/events.out.tfevents.*"))
    assert events and all(path.stat().st_size > 0 for path in events)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    assert "train/loss" in scalars and "eval/loss" in scalars
