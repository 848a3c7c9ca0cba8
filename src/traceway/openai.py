"""``traceway.openai.autolog()``: trace every call of the official ``openai`` client.

Importing this module imports ``openai``; ``import traceway`` alone does not
(``traceway.openai`` is loaded on first access).  See
:mod:`traceway.integrations.openai` for what is traced and the supported versions.

>>> import traceway
>>> traceway.openai.autolog()
>>> traceway.openai.autolog(disable=True)
"""

from traceway.integrations.openai import SUPPORTED_OPENAI, autolog

__all__ = ["SUPPORTED_OPENAI", "autolog"]
