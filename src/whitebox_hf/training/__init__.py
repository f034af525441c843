"""What the training scripts in ``training/`` share; the top layer of the package, with the CLI (nothing else in
whitebox_hf imports it).

Modules (import from them directly; this package imports none of them, so ``import whitebox_hf.training.config``
stays cheap):

* `whitebox_hf.training.config`: `parse_config_args` (defaults < YAML ``--config`` < ``--key value``) and
  `RUN_DEFAULTS`, the run-management options every script accepts.
* `whitebox_hf.training.run`: `start_run` (threads, the Accelerator, the seed) and `create_accelerator`.
* `whitebox_hf.training.checkpointing`: `TrainingProgress`, `find_checkpoint`, `restore_checkpoint`,
  `save_checkpoint_if_due`, `resumable_batches`, `exit_if_interrupt_requested` (every checkpoint read and write:
  atomic, with a manifest of file hashes and the run's settings, refused when the settings differ).
* `whitebox_hf.training.state`: `write_state` / `read_state`, state dicts as JSON + safetensors (no pickle).
* `whitebox_hf.training.atomic`: `atomic_directory`, a folder written under a temporary name and renamed when
  complete (every script's final ``save_pretrained``).
* `whitebox_hf.training.optim`: `optimizer_step`, `build_optimizer`, `causal_lm_parameter_groups`.
* `whitebox_hf.training.builders`: the model families (`CAUSAL_LM_MODELS`, whose keys are what ``--model``
  takes) and the model and processor builders.
* `whitebox_hf.training.generative`: the loop, losses and outputs shared by the flow, DDPM and DreamBooth
  scripts.
* `whitebox_hf.training.plots`: `plot_training_curves`.

The image data sets (`DATASETS`, `load_image_dataset`, ...) are in `whitebox_hf.data`, since the evaluation and
the model cards read them too.
"""
