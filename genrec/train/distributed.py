"""Multi-process start-up: the same `genrec train` on 1 CPU, 8 GPUs or a TPU pod.

JAX's own runtime (`jax.distributed.initialize`) joins the processes; after that every process runs the same
program over the global device mesh and reads only its rows of each batch. Where the process layout comes
from, first match wins:

  1. flags   `--coordinator HOST:PORT --num-processes N --process-id I`
  2. env     GENREC_COORDINATOR, GENREC_NUM_PROCESSES, GENREC_PROCESS_ID
  3. `--distributed auto`: JAX's cluster detection (SLURM, Open MPI, Cloud TPU pods, GKE)

`--local-devices N` simulates N devices on a CPU host (testing a mesh without accelerators). On CPU,
cross-process collectives go through gloo. Everything here must run before the first JAX operation.
"""

from __future__ import annotations

import dataclasses
import os

ENV = {"coordinator": "GENREC_COORDINATOR", "num_processes": "GENREC_NUM_PROCESSES", "process_id": "GENREC_PROCESS_ID"}


class LaunchError(ValueError):
  pass


@dataclasses.dataclass(frozen=True)
class Launch:
  coordinator: str = ""
  num_processes: int = 0
  process_id: int = -1
  auto: bool = False  # let JAX detect the cluster (SLURM, MPI, TPU pod)
  local_devices: int = 0  # CPU only: simulate this many devices in this process

  @property
  def multi_process(self) -> bool:
    return self.auto or self.num_processes > 1


def _int(value: str, what: str) -> int:
  try:
    return int(value)
  except ValueError:
    raise LaunchError(f"{what} must be an integer, got {value!r}") from None


def from_args(
  coordinator: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  auto: bool = False,
  local_devices: int = 0,
  environ=os.environ,
) -> Launch:
  """Flags win over GENREC_* environment variables; a partial explicit layout is an error naming what is
  missing."""
  coordinator = coordinator or environ.get(ENV["coordinator"], "")
  if num_processes is None and environ.get(ENV["num_processes"]):
    num_processes = _int(environ[ENV["num_processes"]], ENV["num_processes"])
  if process_id is None and environ.get(ENV["process_id"]):
    process_id = _int(environ[ENV["process_id"]], ENV["process_id"])
  explicit = {
    "--coordinator / GENREC_COORDINATOR": coordinator,
    "--num-processes / GENREC_NUM_PROCESSES": num_processes,
    "--process-id / GENREC_PROCESS_ID": process_id,
  }
  given = {k for k, v in explicit.items() if v not in (None, "")}
  if auto and given:
    raise LaunchError(f"--distributed auto detects the cluster itself; drop {sorted(given)}")
  if given and len(given) < 3:
    raise LaunchError(f"a multi-process launch needs all of {list(explicit)}; missing {sorted(set(explicit) - given)}")
  if local_devices < 0:
    raise LaunchError(f"--local-devices must be >= 0 (0 = the host's own devices), got {local_devices}")
  if not given:
    return Launch(auto=auto, local_devices=local_devices)
  if num_processes < 1 or not 0 <= process_id < num_processes:
    raise LaunchError(f"process id {process_id} is not in [0, {num_processes}) (num processes {num_processes})")
  if ":" not in coordinator:
    raise LaunchError(f"coordinator {coordinator!r} must be HOST:PORT, e.g. 10.0.0.1:1234")
  return Launch(coordinator, num_processes, process_id, local_devices=local_devices)


def initialize(launch: Launch) -> None:
  """Configures devices and joins the other processes. Call once, before any JAX operation."""
  import jax

  if launch.local_devices:
    jax.config.update("jax_num_cpu_devices", launch.local_devices)
  if not launch.multi_process:
    return
  if launch.local_devices or os.environ.get("JAX_PLATFORMS", "") == "cpu":
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if launch.auto:
    jax.distributed.initialize()
  else:
    jax.distributed.initialize(launch.coordinator, num_processes=launch.num_processes, process_id=launch.process_id)
