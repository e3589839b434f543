"""Registers the ``charngram`` backend with nextword.

This module is what the ``nextword`` entry point names. It stays light: it imports nothing but
nextword's public API, and the model code is imported only when a model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nextword import BackendSpec, Capabilities, OptionSpec, Support, hookimpl
from nextword_example.defaults import DEFAULT_CONTEXT, DEFAULT_MODEL, DEFAULT_ORDER

# --8<-- [start:declarations]

#: Every decoding option is honoured by nextword's shared decoding loop, which runs on top of
#: the model's next-token logits; the model itself implements none of them.
CAPABILITIES = Capabilities.all(Support.EMULATED)

OPTIONS = {
    "order": OptionSpec(
        int, "n-gram order: the model sees the last order-1 characters", default=DEFAULT_ORDER, minimum=1
    ),
    "context": OptionSpec(
        int, "context window in characters (prompt plus generated text)", default=DEFAULT_CONTEXT, minimum=16
    ),
}
# --8<-- [end:declarations]


# --8<-- [start:hook]
def _load(model: str, **options: Any) -> Any:
    from nextword_example.generator import CharNGramGenerator  # imported only when used

    return CharNGramGenerator(model, spec=SPEC, **options)


#: The backend's one declaration. The generator reports this name and these capabilities
#: because the loader hands it the spec; nextword checks they agree when it loads a model.
SPEC = BackendSpec(
    name="charngram",
    load=_load,
    default_model=DEFAULT_MODEL,
    description="character n-gram model trained at load time (the plugin guide's example)",
    options=OPTIONS,
    capabilities=CAPABILITIES,
)


@hookimpl
def register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Register the charngram backend."""
    register(SPEC)


# --8<-- [end:hook]
