"""Errors a user can act on: the CLIs print their message and exit without a traceback."""


class UserError(ValueError):
  """Bad input (name, path, config) detected before any long work starts."""


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN/Inf loss; the last good checkpoint is kept."""

  def __init__(self, step):
    self.step = int(step)
    super().__init__(
        f"Loss became non-finite (NaN or Inf) at step {self.step}. Training stopped; "
        "the newest checkpoint in the workdir is the last good one. Lower the learning "
        "rate (--config.learning_rate) or check the input data.")


class Preempted(RuntimeError):
  """The job was asked to stop (SIGTERM, a maintenance notice) and saved a checkpoint."""

  EXIT_CODE = 42  # what tf.distribute's PreemptionCheckpointHandler exits with: "restart me"

  def __init__(self, step, checkpoint):
    self.step = int(step)
    super().__init__(
        f"Preempted at step {self.step}: saved {checkpoint}. Run the same command again to "
        f"continue from there (exit code {self.EXIT_CODE} means exactly this).")
