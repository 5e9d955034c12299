"""Print the requirements of the installed nemo_beyond_nll whose package is not installed at all.

The Dockerfile installs the package with --no-deps (the image's torch / Megatron stack stays as it
is) and then only these, under a constraint file of every installed version, so that nothing the
image already has is upgraded or downgraded.
"""

import re
import sys
from importlib import metadata


def missing(requirements, installed) -> list:
    """Requirement strings (extras' requirements left out) whose distribution is not in `installed`."""
    out = []
    for requirement in requirements or []:
        if re.search(r"\bextra\s*==", requirement):
            continue
        name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
        if re.sub(r"[-_.]+", "-", name).lower() not in installed:
            out.append(requirement.split(";")[0].strip())
    return out


def installed_names() -> set:
    return {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() for d in metadata.distributions() if d.metadata["Name"]}


if __name__ == "__main__":
    for requirement in missing(metadata.requires(sys.argv[1] if len(sys.argv) > 1 else "nemo_beyond_nll"),
                               installed_names()):
        print(requirement)
