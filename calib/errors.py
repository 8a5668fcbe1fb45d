"""One exception type for user-facing errors; the CLI prints these without a traceback.

Every layer raises CalibError for bad input, so the CLI, grids and Python callers
all get the same one-line message; nothing here imports the rest of calib.
"""


class CalibError(ValueError):
    """Bad input or an unusable artefact. The message names the bad value and the valid choices."""


def check_choice(kind: str, value, choices) -> None:
    """Raise CalibError unless ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise CalibError(f"unknown {kind} {value!r}; valid choices: {', '.join(map(str, choices))}")
