"""The bundled model configs: one YAML file per model (``<name>.yaml``) in this folder.

Reading the folder needs neither TensorFlow nor Keras, so the code location can list the
zoo's partitions without importing either; ``models.training.config`` parses the files.
"""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent


def config_names() -> list[str]:
    """Names of the bundled configs (file stems), sorted."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))
