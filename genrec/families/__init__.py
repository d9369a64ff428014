"""Each model family's story above the engine: its tasks (registered by decorator), the stages it reads and the
artifacts it leaves. Importing this package imports every family module, so every family task is registered;
genrec.pipeline, genrec.api and the command line import it. Nothing here imports the pipeline or the API."""

from genrec.registry import import_all

import_all(__name__)
