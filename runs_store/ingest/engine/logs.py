"""Reading a run's log file as the engine wrote it: its steps, tags and internal error.

The engine keeps each run's steps in a `file` row of its own (type FLOW_RUN_LOG), and has written
it three ways over the years: raw JSON, one zstd frame compressed in one shot, and (newest) one
zstd frame written as a stream, whose header holds no content size. Its own reader
(`file/file-compressor.ts`) goes by the bytes, not by the `compression` column, which can say NONE
over zstd bytes: zstd when they start with the zstd magic number, else raw JSON. So do we, and we
read every zstd frame as a stream, which also reads the frames that carry no size. What a log may
unpack to is bounded, so a small file cannot unpack to gigabytes.

Step outputs larger than the engine's slice threshold are files of their own (type
FLOW_RUN_LOG_SLICE) with a reference in the log; `slice_file_ids` finds those references, in loop
iterations too, and `with_slices` puts the outputs back (a reference that cannot be read is kept
without its url, which carries a read token). Pure functions: no database, no settings.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import simdjson
import zstandard

from runs_store.domain.bounded_json import MAX_JSON_DEPTH, TooDeep, exceeds_depth, loads_bounded

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
SLICE_OUTPUT_TYPE = "slice"  # the engine's StepOutputType.SLICE
SLICE_MARK = b'"outputType":"slice"'  # how a slice reference reads in compact JSON
_CHUNK = 1 << 20


class LogUnreadable(ValueError):
    """A log (or a slice) that cannot be read; str() says why in a few words."""


class LogTooLarge(LogUnreadable):
    """A log (or a slice) that unpacks to more than the bound it was read with."""


@dataclass(frozen=True)
class RunLog:
    steps: dict  # step name -> step output, in execution order ({} when given as steps_json)
    tags: list | None
    internal_error: Any  # the server's own error, when it rewrote the log; else None
    size: int  # bytes of JSON once unpacked
    steps_json: bytes | None = None  # the steps as JSON text, never made Python objects


def is_zstd(data: bytes) -> bool:
    return data[:4] == ZSTD_MAGIC


def unpack(data: bytes, limit: int) -> bytes:
    """The JSON bytes of a log or slice file; LogTooLarge past `limit` bytes unpacked."""
    if not is_zstd(data):
        if len(data) > limit:
            raise LogTooLarge(f"{len(data):,} bytes")
        return data
    return _unzstd(data, limit)


def _unzstd(data: bytes, limit: int) -> bytes:
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    chunks, size = [], 0
    try:
        while chunk := reader.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise LogTooLarge(f"more than {limit:,} bytes unpacked")
            chunks.append(chunk)
    except zstandard.ZstdError as error:
        raise LogUnreadable(f"bad zstd data ({error})") from None
    return b"".join(chunks)


def parse_json(data: bytes) -> Any:
    """JSON bytes as a value, within the store's depth bound."""
    try:
        return loads_bounded(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise LogUnreadable("not UTF-8 text") from None
    except TooDeep as error:
        raise LogUnreadable(str(error)) from None
    except json.JSONDecodeError as error:
        raise LogUnreadable(f"not JSON ({error.msg} at byte {error.pos})") from None


def decode_log(data: bytes, limit: int, steps_as_text: bool = False) -> RunLog:
    """A FLOW_RUN_LOG file's content: `{"version"?, "executionState": {"steps", "tags"},
    "internalError"?}`, whichever generation wrote it. With `steps_as_text` the steps of a usual
    log come as JSON text (`steps_json`), for a store that parses them itself."""
    text = unpack(data, limit)
    if steps_as_text:
        log = _log_with_steps_as_text(text)
        if log is not None:
            return log
    document = parse_json(text)
    state = document.get("executionState") if isinstance(document, dict) else None
    if not isinstance(state, dict) or not isinstance(state.get("steps"), dict):
        raise LogUnreadable("no executionState.steps in it")
    tags = state.get("tags")
    return RunLog(
        steps=state["steps"],
        tags=tags if isinstance(tags, list) else None,
        internal_error=document.get("internalError"),
        size=len(text),
    )


def _log_with_steps_as_text(text: bytes) -> RunLog | None:
    """The log with its steps re-written as compact JSON text by simdjson (in C: parsing a log into
    Python objects and writing it out again costs a pull most of its time). Only a usual log: no
    sliced output (those are put back by Python), within the depth bound, every number within 64
    bits and every string whole Unicode (simdjson refuses the others). None for any other log,
    which Python reads, with its reason when it cannot."""
    if _may_exceed_depth(text):
        return None
    try:
        document = simdjson.Parser().parse(text)
        if not isinstance(document, simdjson.Object):
            return None
        state = document.get("executionState")
        if not isinstance(state, simdjson.Object):
            return None
        steps = state.get("steps")
        if not isinstance(steps, simdjson.Object):
            return None
        steps_json: bytes = steps.mini  # type: ignore[assignment]  # bytes, whatever its stub says
        if SLICE_MARK in steps_json:
            return None
        tags = state.get("tags")
        internal_error = document.get("internalError")
        return RunLog(
            steps={},
            tags=tags.as_list() if isinstance(tags, simdjson.Array) else None,
            internal_error=_as_python(internal_error),
            size=len(text),
            steps_json=steps_json,
        )
    except (ValueError, RuntimeError):  # not JSON, or a number or string simdjson refuses
        return None


def _may_exceed_depth(text: bytes) -> bool:
    if text.count(b"{") + text.count(b"[") <= MAX_JSON_DEPTH:
        return False
    try:
        return exceeds_depth(text.decode("utf-8"))
    except UnicodeDecodeError:
        return True  # Python reads it, and says it is not UTF-8


def _as_python(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def decode_slice(data: bytes, limit: int) -> tuple[Any, int]:
    """A FLOW_RUN_LOG_SLICE file's content (one step's output) and its size unpacked."""
    text = unpack(data, limit)
    return parse_json(text), len(text)


# ---------------------------------------------------------------- sliced outputs


def slice_reference(step: Any) -> str | None:
    """The slice file id a step's output was moved to, or None when the output is inline."""
    if not isinstance(step, dict) or step.get("outputType") != SLICE_OUTPUT_TYPE:
        return None
    output = step.get("output")
    file_id = output.get("fileId") if isinstance(output, dict) else None
    return file_id if isinstance(file_id, str) else None


def loop_iterations(step: Any) -> list | None:
    """A loop step's iterations (each a step name -> step output map), or None."""
    output = step.get("output") if isinstance(step, dict) else None
    iterations = output.get("iterations") if isinstance(output, dict) else None
    return iterations if isinstance(iterations, list) else None


def slice_file_ids(steps: Mapping) -> Iterator[str]:
    """Every slice file the steps refer to, loop iterations included, in order."""
    for step in steps.values():
        file_id = slice_reference(step)
        if file_id is not None:
            yield file_id
            continue
        for iteration in loop_iterations(step) or ():
            if isinstance(iteration, Mapping):
                yield from slice_file_ids(iteration)


def with_slices(
    steps: dict, outputs: Mapping[str, Any], unread: Mapping[str, str] | None = None
) -> dict:
    """The steps with every slice reference found in `outputs` replaced by the output itself (and
    its `outputType` gone, as for an output that was never sliced). A reference named in `unread`
    (file id -> why, in a few words) keeps its `fileId` and `size` and says why in `notRead`; its
    `url`, which carries a signed read token, is dropped. Other references are kept. The given
    steps are left as they were."""
    return {name: _with_slice(step, outputs, unread or {}) for name, step in steps.items()}


def unread_reference(output: Mapping, why: str) -> dict:
    """A slice reference that could not be read, as it is kept: no url, and why not."""
    return {
        "fileId": output.get("fileId"),
        "size": output.get("size"),
        "notRead": f"sliced output not read ({why})",
    }


def _with_slice(step: Any, outputs: Mapping[str, Any], unread: Mapping[str, str]) -> Any:
    file_id = slice_reference(step)
    if file_id is not None:
        if file_id in outputs:
            return {
                key: outputs[file_id] if key == "output" else value
                for key, value in step.items()
                if key != "outputType"
            }
        if file_id in unread:
            return {**step, "output": unread_reference(step["output"], unread[file_id])}
        return step
    iterations = loop_iterations(step)
    if iterations is None:
        return step
    restored = [
        with_slices(iteration, outputs, unread) if isinstance(iteration, dict) else iteration
        for iteration in iterations
    ]
    return {**step, "output": {**step["output"], "iterations": restored}}
