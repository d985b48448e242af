"""Prints the summary of a schemathesis run from its JSON report (--report json): operations,
test cases, and the failures grouped by kind with the operations they were found on.

    python summary.py REPORT.json
"""

import json
import sys


def main(path: str) -> int:
    with open(path, encoding="utf-8") as file:
        report = json.load(file)
    operations = report["operations"]
    cases = report["test_cases"]
    phases = ", ".join(f"{name} {phase['status']}" for name, phase in report["phases"].items())
    print(f"operations:    {operations['tested']} tested of {operations['total']} "
          f"({operations['errored']} errored, {operations['skipped']} skipped)")
    print(f"phases:        {phases}")
    print(f"test cases:    {cases['generated']} generated, {cases['with_failures']} with failures, "
          f"{cases['errored']} errored")
    failures = report.get("failures", [])
    if not failures:
        print("failures:      none")
    for failure in failures:
        print(f"failure:       {failure['code']} {failure['title']}: {failure['count']}")
        for operation in failure["operations"]:
            print(f"                 {operation}")
    for error in report.get("errors", []):
        print(f"error:         {json.dumps(error)[:300]}")
    return 0 if not failures and not cases["errored"] and not operations["errored"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
