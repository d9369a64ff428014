"""TensorBoard event files read back the way TensorBoard reads them, with tensorboardX's protos alone (no
tensorflow, no tensorboard): every record's CRCs checked, a run's files in name order, and a restart marker
(SessionLog.START at step s, what `SummaryWriter(purge_step=s)` writes) hiding the events written before it at
steps >= s (TensorBoard's EventAccumulator with purge_orphaned_data, its default)."""

from __future__ import annotations

import struct
from pathlib import Path

from tensorboardX.proto import event_pb2
from tensorboardX.record_writer import masked_crc32c


def records(path: Path):
  data, pos = path.read_bytes(), 0
  while pos < len(data):
    header = data[pos : pos + 8]
    (length,) = struct.unpack("<Q", header)
    assert struct.unpack("<I", data[pos + 8 : pos + 12])[0] == masked_crc32c(header), f"{path}: bad header CRC"
    body = data[pos + 12 : pos + 12 + length]
    assert struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])[0] == masked_crc32c(body), path
    yield event_pb2.Event.FromString(body)
    pos += 16 + length


def events(folder: Path, *, purge: bool = True) -> list:
  """The events of one run folder (not its subfolders), restarts applied unless purge=False."""
  out = []
  for path in sorted(folder.glob("events.out.tfevents.*")):
    for event in records(path):
      if purge and event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
        out = [e for e in out if e.step < event.step]
      out.append(event)
  return out


def scalars(folder: Path, *, purge: bool = True) -> dict[str, list[tuple[int, float]]]:
  """{tag: [(step, value), ...]} in the order written."""
  out: dict[str, list] = {}
  for event in events(folder, purge=purge):
    for value in event.summary.value:
      if value.HasField("simple_value"):
        out.setdefault(value.tag, []).append((event.step, value.simple_value))
  return out


def plugin_values(folder: Path, plugin: str) -> dict[str, object]:
  """{tag: Summary.Value} of the summaries a TensorBoard plugin ("text", "hparams") reads."""
  return {
    value.tag: value
    for event in events(folder)
    for value in event.summary.value
    if value.metadata.plugin_data.plugin_name == plugin
  }
