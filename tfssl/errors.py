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
