"""``ddkit app NAME ...``: one sub-command per registered application."""

from ddkit.apps.base import APPS, load_all
from ddkit.commands import Group, register_command

register_command(
    Group("app", "applications: continual learning, architecture search, federated learning, "
          "HCDC", APPS, load_all)
)  # fmt: skip
