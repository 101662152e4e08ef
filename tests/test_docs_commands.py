"""Every shell command in the documentation runs as written, or is skipped for a stated reason.

The commands are read from the code blocks of the README and of every page under ``docs/``:
fenced Markdown blocks labelled ``bash``, ``sh``, ``shell`` or ``console`` (in a ``console``
block only the ``$ `` lines are commands) and reST ``code-block`` directives with the same
labels. A block with no label that starts with a command is an error: label it, so that it is
checked.

Each command must match one of ``RULES`` (the first that matches decides): ``RUN`` commands
are cheap (``--help``, ``--version``, short runs with tiny flags) and run here, in the order
the pages give them, from a fresh environment: a new empty working folder holding only the
checkout's ``configs/``, a new ``HOME``, a ``PATH`` with the installed toolkit's commands and
the system's, and nothing else of this process's environment (no virtual environment
activated, no ``LD_PRELOAD``). Every other command is skipped with the reason its rule gives.
A new command in the docs that matches no rule fails the first test until it gets one.
Commands in a block marked ``% guide: run`` (the fine-tuning guide's) are run in order by
``tests/test_guide.py`` from a fresh wheel install, and skipped here for that reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHELL_LABELS = {"bash", "sh", "shell", "console"}
# Words that start a command: an unlabelled block starting with one is an error.
COMMAND_WORDS = ("mlx-schedules", "mlx-fastblas", "mlx.launch", "python", "pip", "bash",
                 "sudo", "apt-get", "git", "tensorboard", "mlflow", "PYTHONPATH=", "LD_PRELOAD=")
RUN = None  # the reason of a rule whose commands are run
GUIDE_MARK = "% guide: run"
GUIDE_REASON = "run as written, in page order, by tests/test_guide.py from a fresh wheel install"

# (pattern matched against the whole command, None to run it or the reason it is skipped)
RULES: list[tuple[str, str | None]] = [
    (r"mlx-schedules( [\w-]+)? --help", RUN),
    (r"mlx-schedules --version", RUN),
    (r"mlx-schedules plot .*--text( .*)?", RUN),
    (r"mlx-schedules plot --schedule \S+( --param \S+)* --out \S+\.png", RUN),
    (r"mlx-schedules train --steps \d{1,2} .*", RUN),  # a tiny run: at most 99 steps
    (r"mlx-schedules audit runs/\S+", RUN),
    (r".*(\.\.\.|<[a-z_ ]+>|\bRUN_DIR\b|\bCHECKPOINT\b).*",
     "a pattern, not a command: '...' or a placeholder stands for the user's own values"),
    (r"bash scripts/dev\.sh .*", "creates .venv and runs the main job or the whole suite: "
                                 "minutes; CI runs 'dev.sh test' itself"),
    (r"(sudo )?(apt-get|pip|python -m pip) install .*",
     "installs packages into the system or the environment under test"),
    (r"python3 -m venv \.venv|source \.venv/bin/activate",
     "makes or activates the environment; this test runs in the environment made so"),
    (r"mlx\.launch .*", "starts several processes or reaches other Macs, running the reader's "
                        "own training script; tests/trainers/test_distributed.py launches "
                        "two ranks itself"),
    (r"(mlx-fastblas )?mlx-schedules compare(-lm)?( .*)?",
     "the comparisons train dozens of runs (minutes); tests/scripts/test_compare*.py run "
     "them with tiny budgets"),
    (r"(mlx-fastblas )?mlx-schedules (train|train-lm|range-test|download|lora|tiny-model|"
     r"example-data)( .*)?",
     "a full-length run, a download or a model build; tests/scripts/ run each subcommand "
     "with tiny settings"),
    (r"(mlx-fastblas )?mlx-schedules (plot|audit)( .*)?",
     "writes a full gallery or audits a run directory the reader made; "
     "tests/scripts/test_plot_script.py and test_audit_script.py cover them"),
    (r"(LD_PRELOAD=.* )?(mlx-fastblas )?python scripts/bench_\w+\.py.*",
     "a benchmark: minutes, and its timings mean nothing on a shared machine"),
    (r"(mlx-fastblas )?python -m pytest .*", "runs part of the test suite: this suite"),
    (r"(tensorboard|mlflow) .*", "starts a web server for the tracker's UI"),
    (r"mlx-fastblas .*", "re-runs the user's own command with OpenBLAS preloaded; "
                         "tests/trainers/test_blas.py checks it"),
]


@dataclass(frozen=True)
class Command:
    text: str
    page: str
    line: int
    guide: bool = False  # in a block marked '% guide: run'

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def pages() -> list[Path]:
    found = [ROOT / "README.md"]
    for path in sorted((ROOT / "docs").rglob("*")):
        parts = path.relative_to(ROOT / "docs").parts
        if path.suffix in (".md", ".rst") and not {"_build", "_generated"} & set(parts):
            found.append(path)
    return found


def code_blocks(text: str, suffix: str):
    """(label, first line number, lines, marked) of each fenced or ``code-block`` block;
    ``marked`` when the line above it is the guide's ``% guide: run``."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^(\s*)(`{3,}|~{3,})\s*\{?([\w-]*)\}?\s*(\S*)", lines[i])
        directive = re.match(r"^(\s*)\.\. (?:code-block|code|sourcecode)::\s*(\S*)", lines[i])
        if fence and suffix == ".md":
            indent, marks = len(fence.group(1)), fence.group(2)
            label = fence.group(4) if fence.group(3) in ("code-block", "code") else fence.group(3)
            body, j = [], i + 1
            while j < len(lines) and not re.match(rf"^\s*{re.escape(marks[0])}{{{len(marks)},}}"
                                                  r"\s*$", lines[j]):
                body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
                j += 1
            marked = i > 0 and lines[i - 1].strip() == GUIDE_MARK
            yield label.lower(), i + 2, body, marked
            i = j + 1
        elif directive:
            indent = len(directive.group(1))
            body, j = [], i + 1
            while j < len(lines) and (not lines[j].strip()
                                      or len(lines[j]) - len(lines[j].lstrip()) > indent):
                body.append(lines[j])
                j += 1
            content = [line for line in body if not re.match(r"^\s*:\w[\w-]*:", line)]
            width = min((len(x) - len(x.lstrip()) for x in content if x.strip()), default=0)
            yield directive.group(2).lower(), i + 2, [x[width:] for x in content], False
            i = j
        else:
            i += 1


def strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (a ``#`` inside quotes is kept)."""
    quote = None
    for k, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k].rstrip()
    return line.rstrip()


def block_commands(label: str, body: list[str]) -> list[tuple[int, str]]:
    """(offset in the block, command) for each command, continuation lines joined."""
    found, pending, start = [], "", 0
    for k, raw in enumerate(body):
        line = raw.strip()
        if not pending:
            if label == "console":
                if not line.startswith("$ "):
                    continue  # output
                line = line[2:]
            elif line.startswith("$ "):
                line = line[2:]
            start = k
        line = strip_comment(line)
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        command = (pending + line).strip()
        pending = ""
        if command:
            found.append((start, " ".join(command.split())))
    return found


def docs_commands() -> tuple[list[Command], list[str]]:
    """Every command of the docs, and the unlabelled blocks that look like commands."""
    commands, unlabelled = [], []
    for path in pages():
        page = str(path.relative_to(ROOT))
        for label, line, body, marked in code_blocks(path.read_text(encoding="utf-8"),
                                                     path.suffix):
            first = next((x.strip() for x in body if x.strip()), "")
            if not label and first.lstrip("$ ").startswith(COMMAND_WORDS):
                unlabelled.append(f"{page}:{line}: {first}")
            if label in SHELL_LABELS:
                commands += [Command(text, page, line + offset, marked)
                             for offset, text in block_commands(label, body)]
    return commands, unlabelled


def rule_for(command: Command) -> tuple[str, str | None] | None:
    if command.guide:
        return GUIDE_MARK, GUIDE_REASON
    for pattern, reason in RULES:
        if re.fullmatch(pattern, command.text):
            return pattern, reason
    return None


COMMANDS, UNLABELLED = docs_commands()
TO_RUN = [c for c in COMMANDS if (r := rule_for(c)) is not None and r[1] is RUN]


def test_the_extraction_reads_fences_directives_prompts_and_continuations():
    md = ("text\n```bash\n$ mlx-schedules --help   # the overview\nmlx-schedules train \\\n"
          "  --steps 5\n```\n```console\n$ mlx-schedules --version\nmlx-schedules 0.1.0\n```\n")
    blocks = list(code_blocks(md, ".md"))
    assert [(b[0], b[1], b[3]) for b in blocks] == [("bash", 3, False), ("console", 8, False)]
    assert block_commands(blocks[0][0], blocks[0][2]) == [(0, "mlx-schedules --help"),
                                                         (1, "mlx-schedules train --steps 5")]
    assert block_commands(blocks[1][0], blocks[1][2]) == [(0, "mlx-schedules --version")]
    (marked,) = code_blocks("% guide: run\n```bash\nmlx-schedules --help\n```\n", ".md")
    assert marked[3] is True
    rst = "Intro\n\n.. code-block:: bash\n   :caption: x\n\n   pip install -e .  # here\n\nEnd\n"
    (label, _, body, _), = code_blocks(rst, ".rst")
    assert label == "bash" and block_commands(label, body) == [(1, "pip install -e .")]
    assert strip_comment("echo '# kept' # cut") == "echo '# kept'"


def test_every_docs_command_is_run_or_skipped_with_a_reason():
    assert len(COMMANDS) >= 20, [str(c) for c in COMMANDS]  # the extraction finds them
    assert UNLABELLED == [], ("code blocks that start with a command but have no label "
                              f"(write ```bash so the command is checked): {UNLABELLED}")
    unmatched = [str(c) for c in COMMANDS if rule_for(c) is None]
    assert unmatched == [], f"commands with no rule in RULES (run it or give a reason): " \
                            f"{unmatched}"
    # The docs name the installed command, not a checkout's script (benchmarks excepted),
    # and state the environment step once (the Install page), not before every command.
    scripts = [str(c) for c in COMMANDS if re.search(r"python scripts/(?!bench_)", c.text)]
    assert scripts == [], f"write 'mlx-schedules SUBCOMMAND' instead: {scripts}"
    activations = [str(c) for c in COMMANDS if "bin/activate" in c.text]
    assert len(activations) == 1, activations
    assert len(TO_RUN) >= 5, [str(c) for c in TO_RUN]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A new working folder (with the checkout's configs/) and a minimal environment."""
    work = tmp_path_factory.mktemp("fresh")
    shutil.copytree(ROOT / "configs", work / "configs")
    home = work / ".home"
    home.mkdir()
    bin_dir = Path(sys.executable).parent
    path = [str(bin_dir)]
    if not (bin_dir / "mlx-schedules").exists():
        if os.environ.get("CI"):
            pytest.fail(f"no installed mlx-schedules command in {bin_dir}: pip install -e .")
        # An environment installed before the command existed: the same entry point.
        shim = work / ".bin" / "mlx-schedules"
        shim.parent.mkdir()
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m trainers.cli "$@"\n')
        shim.chmod(0o755)
        path.insert(0, str(shim.parent))
    env = {"PATH": os.pathsep.join(path + ["/usr/local/bin", "/usr/bin", "/bin"]),
           "HOME": str(home), "LANG": "C.UTF-8", "MPLBACKEND": "Agg",
           # the checkout under test, as an editable install of it would give
           "PYTHONPATH": str(ROOT)}
    return work, env


@pytest.mark.slow  # end to end: each command a process of its own (about 20 s in all)
@pytest.mark.parametrize("command", TO_RUN, ids=[f"{c.page}:{c.line}" for c in TO_RUN])
def test_cheap_docs_command_runs_as_written(command: Command, fresh):
    work, env = fresh
    result = subprocess.run(["bash", "-c", command.text], cwd=work, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    if command.text.endswith("--help"):
        assert result.stdout.startswith("usage: mlx-schedules"), result.stdout[:300]
    if command.text.endswith("--version"):
        import trainers

        assert result.stdout.strip() == f"mlx-schedules {trainers.__version__}"
    out = re.search(r"--out (\S+)", command.text)
    if out:
        assert (work / out.group(1)).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_subcommand_has_a_row_on_the_command_line_page():
    from trainers.cli import SUBCOMMANDS

    page = (ROOT / "docs" / "command-line.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `mlx-schedules ([\w-]+)", page, re.M))
    assert len(rows) >= 5, rows  # the table is found
    assert set(SUBCOMMANDS) - rows == set(), f"subcommands missing from the command-line " \
                                             f"page's table: {set(SUBCOMMANDS) - rows}"
    helped = {c.text.split()[1] for c in COMMANDS
              if c.page == "docs/command-line.md" and re.fullmatch(r"mlx-schedules \S+ --help",
                                                                    c.text)}
    assert set(SUBCOMMANDS) - helped == set(), f"no '--help' line on the command-line page " \
                                               f"for: {set(SUBCOMMANDS) - helped}"
