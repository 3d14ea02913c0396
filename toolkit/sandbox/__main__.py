"""``python -m toolkit.sandbox``: print which sandbox protections are available here."""

from __future__ import annotations

import sys

from toolkit.sandbox import check_protections


def main() -> int:
    """Print the protections report, then its JSON on the last line; exit 1 if any is missing."""
    report = check_protections()
    print(report.render())
    print(report.model_dump_json())
    return 0 if report.full else 1


if __name__ == "__main__":
    sys.exit(main())
