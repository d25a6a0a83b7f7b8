"""Model prices per million tokens, for the cost figures of Insights' Agents view.

Prices change and differ by contract, so none is written here as a fact: the user names a TOML
file in RUNS_AGENT_PRICES (see docs/agents.md), one table per model, named as the Agents view
names a model, `provider/model`:

    [models."openai/gpt-4o"]
    input_per_million = 2.5
    output_per_million = 10.0

A file that cannot be used is refused whole with one line per mistake, each naming the file,
the model and the key, so every mistake is fixed in one go.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from runs_store import settings
from runs_store.domain.errors import StoreError

PRICE_KEYS = ("input_per_million", "output_per_million")


class PricesFileError(StoreError):
    """RUNS_AGENT_PRICES names a file that cannot be used; one line per mistake."""


@dataclass(frozen=True)
class ModelPrice:
    input_per_million: float
    output_per_million: float

    def cost(self, input_tokens: float | None, output_tokens: float | None) -> float | None:
        """The cost of these tokens; None when a count is missing."""
        if input_tokens is None or output_tokens is None:
            return None
        if math.isnan(input_tokens) or math.isnan(output_tokens):
            return None
        return (
            input_tokens * self.input_per_million + output_tokens * self.output_per_million
        ) / 1_000_000


def load_prices(path: Path | None = None) -> dict[str, ModelPrice]:
    """The prices of the file `path` names (default RUNS_AGENT_PRICES); {} when none is set."""
    path = path if path is not None else settings.current().agent_prices
    if path is None:
        return {}
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise PricesFileError(f"{path}: cannot read the prices file: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise PricesFileError(f"{path}: not a readable TOML file: {error}") from None
    return _prices(path, document)


def _prices(path: Path, document: dict) -> dict[str, ModelPrice]:
    models = document.get("models")
    if not isinstance(models, dict):
        raise PricesFileError(f'{path}: no [models."provider/model"] tables')
    problems: list[str] = []
    prices = {}
    for model, table in models.items():
        if not isinstance(table, dict):
            problems.append(f"{path}: model {model!r}: must be a table of prices")
            continue
        found = _price(path, model, table, problems)
        if found is not None:
            prices[model] = found
    if problems:
        raise PricesFileError("\n".join(problems))
    return prices


def _price(path: Path, model: str, table: dict, problems: list[str]) -> ModelPrice | None:
    values = []
    for key in PRICE_KEYS:
        value = table.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{path}: model {model!r}: {key} must be a number, got {value!r}")
        elif value < 0 or math.isnan(value) or math.isinf(value):
            problems.append(f"{path}: model {model!r}: {key} must be 0 or more, got {value!r}")
        else:
            values.append(float(value))
    for key in sorted(set(table) - set(PRICE_KEYS)):
        problems.append(
            f"{path}: model {model!r}: unknown key {key!r} (known: {', '.join(PRICE_KEYS)})"
        )
    return ModelPrice(*values) if len(values) == len(PRICE_KEYS) else None
