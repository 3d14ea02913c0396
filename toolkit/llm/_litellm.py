"""The one place that imports and configures litellm.

litellm takes seconds to import and, unless ``LITELLM_LOCAL_MODEL_COST_MAP`` is set first,
fetches its cost map from the network at import time. So it is imported lazily, once, under a
lock, and configured once: telemetry and litellm's own cache off, no debug banners, and our
custom providers (``fake/...`` and ``local/...``) registered. No other module imports litellm.
"""

from __future__ import annotations

import logging
import os
import threading
from types import ModuleType
from typing import Any

from toolkit.llm.redact import RedactingFilter

_lock = threading.Lock()
_litellm: ModuleType | None = None
_local_import_error: str | None = None

# litellm's own loggers: secrets it might log (request headers, keys in error text) are
# redacted on the way out.
_LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm")


def get_litellm() -> ModuleType:
    """Return the litellm module, importing and configuring it on first use (thread-safe)."""
    global _litellm
    if _litellm is not None:
        return _litellm
    with _lock:
        if _litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm

            _configure(litellm)
            _litellm = litellm
    return _litellm


class _LoopChangeFilter(logging.Filter):
    """Drop litellm's "LoggingWorker: event loop changed" warning.

    Each blocking call (``run_sync``) runs its own event loop by design, so litellm's logging
    worker moves its queue to the next loop at every evolve stage; it carries the pending
    tasks over and runs them there, and its warning about that reads like a fault to users.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("LoggingWorker: event loop changed")


def local_provider_error() -> str | None:
    """Why the ``local/`` provider is unavailable, or None when it is registered."""
    get_litellm()
    return _local_import_error


def _configure(litellm: ModuleType) -> None:
    global _local_import_error
    litellm.telemetry = False
    litellm.cache = None  # we keep our own content-addressed disk cache
    litellm.suppress_debug_info = True
    litellm.set_verbose = False
    # Unknown OpenAI params for a provider are dropped rather than failing the call.
    litellm.drop_params = True
    # Our gateway retries; litellm must not retry underneath it.
    litellm.num_retries = 0
    for name in _LITELLM_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
    loop_logger = logging.getLogger("LiteLLM")
    if not any(isinstance(f, _LoopChangeFilter) for f in loop_logger.filters):
        loop_logger.addFilter(_LoopChangeFilter())

    from toolkit.llm.fake import make_fake_handler

    providers: list[dict[str, Any]] = [
        {"provider": "fake", "custom_handler": make_fake_handler(litellm)}
    ]
    try:
        from toolkit.llm.local import LocalLLM

        providers.append({"provider": "local", "custom_handler": LocalLLM()})
        _local_import_error = None
    except Exception as exc:  # the embedded model is an optional extra
        _local_import_error = f"{type(exc).__name__}: {exc}"
    ours = ("fake", "local")
    existing = [p for p in litellm.custom_provider_map if p.get("provider") not in ours]
    litellm.custom_provider_map = existing + providers
    # litellm reads custom_provider_map into its provider lists on each call via this helper.
    setup = getattr(litellm.utils, "custom_llm_setup", None)
    if setup is not None:
        setup()
